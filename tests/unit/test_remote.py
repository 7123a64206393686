"""Every kind of trace the workbench runs works with nnsight's remote execution, simulated offline:
``ModelSpec(remote="local")`` makes each trace serialize as for NDIF and deserialize with the
project's modules and the packages an NDIF server lacks (sae-lens among them) hidden, so it fails
where a real remote run would. Each read-out here equals the same read-out of the same model run
locally."""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from tests.conftest import build_tiny_hf_model
from workbench.causal.edits import Ablation, PreparedEdit, Steering, Target
from workbench.causal.experiment import EditSettings, measure_edit, select_scenarios
from workbench.causal.sweeps import edited_generate, edited_logits
from workbench.core.errors import ModelLoadError
from workbench.features.capture import inputs_from_scenarios, read_sites, run_capture
from workbench.model.lens import true_token_ranks
from workbench.model.loading import ModelSpec, check_model_spec, load_model, wrap
from workbench.model.rendering import pad_batch, render_conversation
from workbench.model.saes import SAESpec, load_sae


@pytest.fixture(scope="module")
def remote_model(tiny_tokenizer):
    """The tiny model (the same weights as ``tiny_model``) with every trace on the simulated remote path.
    Its own identity, so captures are not served from the local model's cache."""
    return wrap(build_tiny_hf_model(tiny_tokenizer), tiny_tokenizer, ModelSpec(source="tiny-llama", remote="local"),
                identity="tiny-llama-remote")


@pytest.fixture(scope="module")
def remote_sae(remote_model, tiny_sae_dir):
    return load_sae(SAESpec(path=str(tiny_sae_dir)), remote_model)


@pytest.fixture(scope="module")
def lies(tiny_scenarios):
    return select_scenarios(tiny_scenarios, "lie", 3, seed=0)


@pytest.fixture(scope="module")
def items(tiny_tokenizer, lies):
    return [render_conversation(tiny_tokenizer, s.messages) for s in lies]


SIMULATED: list[int] = []
"""One entry per trace that took nnsight's simulated remote path."""


@pytest.fixture(autouse=True)
def _count_simulated_traces(monkeypatch):
    from nnsight.intervention.backends.local import LocalSimulationBackend

    simulate = LocalSimulationBackend.__call__

    def counted(self, tracer):
        SIMULATED.append(1)
        return simulate(self, tracer)

    monkeypatch.setattr(LocalSimulationBackend, "__call__", counted)


def both(tiny_model, tiny_sae, remote_model, remote_sae, run):
    """``run(model, sae)`` locally and through the simulated remote path (which it must have taken)."""
    local = run(tiny_model, tiny_sae)
    before = len(SIMULATED)
    remote = run(remote_model, remote_sae)
    assert len(SIMULATED) > before, "the remote run should go through nnsight's simulated remote path"
    return local, remote


# ----------------------------------------------------------------------------- the spec


def test_remote_takes_true_false_or_local(tiny_model_dir):
    check_model_spec(ModelSpec(source=str(tiny_model_dir), remote="local"))
    with pytest.raises(ModelLoadError, match="remote must be one of False, True, 'local'"):
        check_model_spec(ModelSpec(source=str(tiny_model_dir), remote="yes"))
    with pytest.raises(ModelLoadError, match="no adapter, GGUF or default"):
        check_model_spec(ModelSpec(remote="local"))  # NDIF serves no embedded default, so neither does its simulation
    loaded = load_model(ModelSpec(source=str(tiny_model_dir), remote="local"))
    assert loaded.spec.remote == "local" and loaded.hf_model.model.embed_tokens.weight.device.type != "meta"


# ----------------------------------------------------------------------------- reading


def test_capture_is_the_same_remotely(tiny_model, tiny_sae, remote_model, remote_sae, tiny_scenarios, items):
    input_ids, attention = pad_batch(items, tiny_model.tokenizer.pad_token_id)
    local, remote = both(tiny_model, tiny_sae, remote_model, remote_sae,
                         lambda m, s: read_sites(m, [s], input_ids, attention)[s.site.name])
    assert torch.allclose(local, remote, atol=1e-6)

    inputs = inputs_from_scenarios(tiny_scenarios[:4])
    local, remote = both(tiny_model, tiny_sae, remote_model, remote_sae,
                         lambda m, s: run_capture(m, [s], inputs, generate_responses=False).site(s.site.name))
    assert torch.equal(local.features, remote.features)
    assert torch.allclose(local.values, remote.values, atol=1e-5)


def test_logit_lens_is_the_same_remotely(tiny_model, remote_model, items, lies):
    token_ids = [tiny_model.tokenizer(f" {s.true_answer}", add_special_tokens=False)["input_ids"][0] for s in lies]
    local, remote = both(tiny_model, None, remote_model, None,
                         lambda m, _: true_token_ranks(m, items, token_ids, [0, 1, 2]))
    assert torch.equal(local, remote) and local.shape == (len(items), 3)


# ----------------------------------------------------------------------------- edits


@pytest.mark.parametrize(("settings", "target", "strengths"), [
    ({"kind": "ablate"}, Target(features=(1, 2, 5)), [1.0, -1.0]),
    ({"kind": "clamp", "scale": "unit"}, Target(features=(1, 2)), [3.0]),
    ({"kind": "steer", "scale": "unit"}, Target(direction=torch.linspace(-1, 1, 64)), [0.0, 2.0, 6.0]),
    ({"kind": "patch", "positions": "last_prompt_token"}, Target(), [1.0]),
], ids=["ablate", "clamp", "steer", "patch"])
def test_every_edit_kind_is_the_same_remotely(tiny_model, tiny_sae, remote_model, remote_sae, tiny_scenarios, lies,
                                              settings, target, strengths):
    (local_unedited, local), (remote_unedited, remote) = both(
        tiny_model, tiny_sae, remote_model, remote_sae,
        lambda m, s: measure_edit(m, s, lies, EditSettings(**settings), target, strengths, "p_true",
                                  pool=tiny_scenarios))
    assert torch.allclose(local_unedited, remote_unedited, atol=1e-6)
    assert torch.allclose(local, remote, atol=1e-6)
    if settings["kind"] != "steer" or any(strengths):
        assert not torch.allclose(local[:, -1], local_unedited, atol=1e-7), "the edit should change something"


def test_edited_generation_is_the_same_remotely(tiny_model, tiny_sae, remote_model, remote_sae, items):
    input_ids, attention = pad_batch(items, tiny_model.tokenizer.pad_token_id)
    codes = tiny_sae.encode(read_sites(tiny_model, [tiny_sae], input_ids, attention)[tiny_sae.site.name])
    active = tuple(int(f) for f in torch.argsort((codes > 0).sum((0, 1)), descending=True)[:6])

    def run(model, sae):
        ablation = Ablation(positions="all", sae=sae, features=active)
        steering = Steering(positions="all", direction=torch.linspace(-1, 1, 64), scale=3.0)
        return (edited_generate(model, items, ablation, site=sae.site, strengths=[0.0, -4.0], max_new_tokens=4),
                edited_generate(model, items, steering, site=sae.site, strengths=[2.0], max_new_tokens=4))

    local, remote = both(tiny_model, tiny_sae, remote_model, remote_sae, run)
    assert local == remote
    assert [row[0] for row in local[0]] != [row[1] for row in local[0]], "the ablation should change some answer"


# ----------------------------------------------------------------------------- the guard


@pytest.fixture
def restored_modules():
    """The simulation hides and re-imports modules; a failed deserialization can leave fresh copies of
    packages behind, which must not leak into other tests."""
    before = dict(sys.modules)
    yield
    for name in set(sys.modules) - set(before):
        del sys.modules[name]
    sys.modules.update(before)


def test_a_sae_lens_object_in_a_trace_fails_the_simulation(remote_model, remote_sae, items, restored_modules):
    """What the plain-torch encoder avoids: an edit that calls sae-lens inside the trace, as the edits
    once did, cannot be deserialized without sae-lens (the simulation hides it, as NDIF lacks it)."""

    @dataclass(frozen=True)
    class SaeLensAblation(PreparedEdit):
        sae: Any = None

        def apply(self, acts, mask, strengths, source=None):
            codes = self.sae.sae.encode(acts)[..., [1, 2]]
            return acts - (codes * mask[..., None]) @ self.sae.sae.W_dec[[1, 2]]

    with pytest.raises(Exception) as failure:
        edited_logits(remote_model, items, SaeLensAblation(positions="all", sae=remote_sae), site=remote_sae.site)
    frames = [frame.filename for frame in traceback.extract_tb(failure.value.__traceback__)]
    assert any("/sae_lens/" in name for name in frames), "deserializing the trace should need sae_lens"


def test_a_remote_load_checks_the_ndif_key_and_the_model_before_anything_loads(monkeypatch):
    import nnsight
    from nnsight import ndif

    from workbench.core.errors import ModelLoadError
    from workbench.model.loading import ModelSpec, load_model

    spec = ModelSpec(source="meta-llama/Llama-3.1-70B-Instruct", remote=True)
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", None)
    with pytest.raises(ModelLoadError, match="NDIF_API_KEY"):
        load_model(spec)
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", "key")
    asked = []
    monkeypatch.setattr(ndif, "is_model_running", lambda repo, revision="main": asked.append(repo) or False)
    with pytest.raises(ModelLoadError, match="does not run meta-llama/Llama-3.1-70B-Instruct"):
        load_model(spec)
    assert asked == ["meta-llama/Llama-3.1-70B-Instruct"]
