"""The scale study: one protocol over three tiny random Llama-style models of different width and depth,
saved to folders, end to end through the CLI; model specs; the pieces checked against hand computations."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.conftest import build_tiny_hf_model

SIZES = ((2, 32), (3, 64), (4, 96))  # (layers, width)


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory, tiny_tokenizer):
    """Three tiny random models saved as folders (config, weights, tokenizer with chat template)."""
    folders = []
    for n_layers, width in SIZES:
        folder = tmp_path_factory.mktemp(f"tiny-{n_layers}x{width}")
        build_tiny_hf_model(tiny_tokenizer, n_layers=n_layers, d_model=width).save_pretrained(folder)
        tiny_tokenizer.save_pretrained(folder)
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def study_scenarios(tmp_path_factory):
    """Honest, lie and parrot scenarios of 12 facts (train and held-out) as a file."""
    from workbench.scenarios import build_contrast_set, load_facts, write_scenarios

    facts = [f for f in load_facts() if f.relation == "capital"][:12]
    path = tmp_path_factory.mktemp("study") / "scenarios.jsonl"
    write_scenarios(path, build_contrast_set(facts, seed=0))
    return path


def test_model_specs_parse_and_bad_ones_say_what_to_fix():
    from workbench.core.errors import WorkbenchError
    from workbench.scale import parse_model_spec

    plain = parse_model_spec("default")
    assert plain.model.source == "default" and plain.model.adapter is None and plain.sae is None
    assert plain.label == "SmolLM2-135M"
    organism = parse_model_spec("default,adapter=smollm2-liar,sae=smollm2-liar-l15,label=liar")
    assert organism.model.adapter.endswith("smollm2-liar") and organism.sae.registry_name == "smollm2-liar-l15"
    assert organism.label == "liar" and organism.group == "organism" and plain.group == "base"
    assert organism.to_dict()["model"]["adapter"] == "smollm2-liar"  # the record names the organism, not a path
    remote = parse_model_spec("meta-llama/Llama-3.1-70B-Instruct,remote,sae-release=r,sae-id=x")
    assert remote.model.remote is True and remote.sae.release == "r" and remote.sae.sae_id == "x"
    assert parse_model_spec("some/model,remote=local").model.remote == "local"
    for bad, words in [("default,colour=red", "unknown key 'colour'"), ("default,adapter", "adapter needs a value"),
                       (",adapter=x", "names no model"), ("m,remote=maybe", "remote is true"),
                       ("m,sae=a,sae-path=b", "name one SAE"), ("m,sae-id=x", "sae-id needs sae-release")]:
        with pytest.raises(WorkbenchError, match=words):
            parse_model_spec(bad)


def test_probed_layers_are_fractions_of_depth():
    from workbench.core.errors import WorkbenchError
    from workbench.scale.study import probed_layers

    assert probed_layers(30, (0.0, 0.5, 1.0)) == [0, 14, 29]
    assert probed_layers(3, (0.0, 0.125, 0.25, 0.5, 1.0)) == [0, 1, 2]
    with pytest.raises(WorkbenchError, match="between 0 and 1"):
        probed_layers(10, (1.5,))


def test_last_token_residuals_equal_one_layer_at_a_time(tiny_model, tiny_scenarios):
    from workbench.features.probes import residual_at_last_prompt_token, residuals_at_last_prompt_token
    from workbench.model.rendering import render_conversation

    items = [render_conversation(tiny_model.tokenizer, s.messages) for s in tiny_scenarios[:7]]
    together = residuals_at_last_prompt_token(tiny_model, ["model.layers.0", "model.layers.2"], items, batch_size=3)
    for column, layer in enumerate([0, 2]):
        alone = residual_at_last_prompt_token(tiny_model, f"model.layers.{layer}", items)
        assert torch.allclose(together[:, column], alone, atol=1e-5)


def test_counterfactual_replaces_only_the_false_answer_in_the_span(tiny_scenarios):
    from workbench.scale.study import _replace_span

    parrot = next(s for s in tiny_scenarios if s.condition.value == "parrot" and s.falsehood_span is not None)
    swapped = _replace_span(parrot, "Atlantis")
    span = swapped.falsehood_span
    message = swapped.messages[span.message_index].content
    assert "Atlantis" in message[span.start : span.end] and parrot.false_answer not in message
    assert swapped.false_answer == "Atlantis" and swapped.true_answer == parrot.true_answer
    others = [m.content for i, m in enumerate(parrot.messages) if i != span.message_index]
    assert others == [m.content for i, m in enumerate(swapped.messages) if i != span.message_index]


def test_critical_layer_is_where_the_gap_to_honest_widens_most():
    from workbench.scale.study import _critical

    honest = torch.zeros(4, 5)
    lie = torch.tensor([[0.0, 0.1, 0.2, 2.0, 2.1]]).repeat(4, 1)  # the rank drops between layers 2 and 3
    assert _critical(lie, honest) == 3


def test_scale_runs_on_three_tiny_models_end_to_end(tiny_family, study_scenarios, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.scale import read_scale_record
    from workbench.scale.study import probed_layers

    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["scale", "--models", *map(str, tiny_family), "--scenarios",
                                      str(study_scenarios), "--out", str(out), "--depths", "0,0.5,1",
                                      "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    record = read_scale_record(out / "scale.json")
    from workbench.scenarios import read_scenarios

    scenarios = read_scenarios(study_scenarios)
    count = {c: sum(s.condition.value == c for s in scenarios) for c in ("honest", "lie", "parrot")}
    heldout = {c: sum(s.condition.value == c and s.split.value == "heldout" for s in scenarios) for c in count}
    assert [m.n_layers for m in record.models] == [n for n, _ in SIZES]
    assert [m.d_model for m in record.models] == [w for _, w in SIZES]
    params = [m.n_params for m in record.models]
    assert params == sorted(params) and len(set(params)) == 3
    for study in record.models:
        behaviour = study.behaviour
        assert (behaviour.honest_accuracy.n, behaviour.lie_rate.n, behaviour.parrot_rate.n) == (
            count["honest"], count["lie"], count["parrot"])
        layers = probed_layers(study.n_layers, (0.0, 0.5, 1.0))
        assert [p.layer for p in study.probes] == layers and study.probes[-1].depth == 1.0
        lie_vs_honest = [p.auroc["lie_vs_honest"] for p in study.probes]
        assert all(e is not None and 0.0 <= e.value <= 1.0 and e.low <= e.value <= e.high for e in lie_vs_honest)
        # random models know nothing: no lie+false vs lie+truth contrast, and the report says why
        assert all(p.auroc["lying_vs_resisting"] is None for p in study.probes)
        assert any("lying vs resisting" in note for note in study.notes)
        assert study.steering is not None and study.steering.effect.n == heldout["lie"]
        assert study.patching is not None and study.patching.effect.n + study.patching.skipped == heldout["parrot"]
        assert [t.layer for t in study.patching_by_layer] == layers
        assert study.copy_test is not None and study.copy_test.follow_rate.n + study.copy_test.skipped == count["parrot"]
        lens = {curve.condition: curve for curve in study.lens}
        assert set(lens) == {"honest", "lie", "parrot"} and len(lens["lie"].gap) == study.n_layers
        assert lens["honest"].critical_depth is None and 0.0 <= lens["lie"].critical_depth.value <= 1.0
    html = (out / "scale.html").read_text()
    assert "Lie vs parrot across model sizes" in html and all(m.label in html for m in record.models)
    markdown = (out / "scale.md").read_text()
    for section in ("Models", "Behaviour", "Probes across depth", "Causal tests", "Copy mechanism"):
        assert section in markdown
    assert json.loads((out / "scale.json").read_text())["kind"] == "scale"


def test_scale_with_an_sae_adds_the_feature_step(tiny_model_dir, tiny_sae_dir, study_scenarios, tmp_path):
    from workbench.scale import parse_model_spec, run_study
    from workbench.scenarios import read_scenarios

    spec = parse_model_spec(f"{tiny_model_dir},sae-path={tiny_sae_dir},label=tiny")
    record = run_study([spec], read_scenarios(study_scenarios), scenario_file=str(study_scenarios), depths=(0.0, 1.0),
                       max_new_tokens=2)
    feature = record.models[0].feature
    assert feature is not None and 0 <= feature.feature < 128 and feature.site == "model.layers.1"
    assert feature.auroc["lie_vs_honest"] is not None
    assert feature.ablation is not None and feature.ablation.effect.n == sum(
        s.condition.value == "lie" and s.split.value == "heldout" for s in read_scenarios(study_scenarios))
    assert math.isfinite(feature.ablation.gain.value)


def test_cross_validated_probe_scores_every_scenario_out_of_fold(tiny_scenarios):
    from workbench.scale.study import cross_validated_auroc, prepare_scenarios

    prepared = prepare_scenarios(tiny_scenarios, seed=0)
    lies = [i for i, s in enumerate(prepared.scenarios) if s.condition.value == "lie"]
    honest = [i for i, s in enumerate(prepared.scenarios) if s.condition.value == "honest"]
    acts = torch.randn(len(prepared.scenarios), 8)
    acts[lies, 0] += 10.0  # one direction separates them: every out-of-fold probe finds it
    separated = cross_validated_auroc(acts, lies, honest, prepared)
    assert separated.value == 1.0 and separated.n == len(lies) + len(honest)
    noise = cross_validated_auroc(torch.randn(len(prepared.scenarios), 8), lies, honest, prepared)
    assert 0.2 < noise.value < 0.8
    assert cross_validated_auroc(acts, lies[:2], honest, prepared) is None  # too few on one side


def test_a_scale_record_rerenders_through_report(tiny_model_dir, study_scenarios, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app
    from workbench.report.scale import write_scale_outputs
    from workbench.scale import parse_model_spec, run_study
    from workbench.scenarios import read_scenarios

    models = [parse_model_spec(f"{tiny_model_dir},label=tiny-base"),
              parse_model_spec(f"{tiny_model_dir},label=tiny-other,group=other")]
    record = run_study(models, read_scenarios(study_scenarios), scenario_file="s.jsonl", depths=(0.0, 1.0),
                       max_new_tokens=2)
    assert [m.group for m in record.models] == ["base", "other"]
    write_scale_outputs(record, tmp_path, figures=False)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "scale.json"), "--format", "html", "--out",
                                      str(tmp_path / "again.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "again.html").read_text()
    assert "Lie vs parrot across model sizes" in html and "(other)" in html  # one line per group in the figures
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "scale.json"), "--format", "json"])
    assert bad.exit_code != 0 and "html or md" in bad.output


def test_report_figures_have_stable_file_safe_names(tiny_model_dir, study_scenarios):
    from workbench.report.scale import build_scale_report
    from workbench.scale import parse_model_spec, run_study
    from workbench.scenarios import read_scenarios

    models = [parse_model_spec(f"{tiny_model_dir},label=a"), parse_model_spec(f"{tiny_model_dir},label=b,group=other")]
    record = run_study(models, read_scenarios(study_scenarios), scenario_file="s.jsonl", depths=(0.0, 1.0),
                       max_new_tokens=2)
    names = [figure.name for figure in build_scale_report(record).figures()]
    assert sorted(names) == sorted(["probe-depth", "patch-depth", "lens-gap"] + [
        f"{kind}-{axis}" for kind in ("behaviour", "probes", "causal", "critical") for axis in ("params", "capability")])
    for figure in build_scale_report(record).figures():
        assert figure.figure().data  # every figure draws


def test_the_whole_study_runs_through_the_simulated_remote_path(tiny_model_dir, tiny_sae_dir, study_scenarios):
    """Every trace of the study (generation, site reads, steering, patching, the logit lens, SAE ablation) through
    nnsight's offline NDIF simulation gives the numbers of the local run."""
    from workbench.scale import parse_model_spec, run_study
    from workbench.scenarios import read_scenarios

    scenarios = read_scenarios(study_scenarios)
    local, remote = (run_study([parse_model_spec(f"{tiny_model_dir},sae-path={tiny_sae_dir}{extra}")], scenarios,
                               scenario_file="s.jsonl", depths=(0.0, 1.0), max_new_tokens=2).models[0]
                     for extra in ("", ",remote=local"))
    assert remote.remote == "local" and local.remote is False
    assert remote.behaviour.model_dump_json() == local.behaviour.model_dump_json()  # NaN where nothing is known
    for a, b in zip(local.probes, remote.probes):
        for name in a.auroc:
            assert (a.auroc[name] is None) == (b.auroc[name] is None)
            if a.auroc[name] is not None:
                assert a.auroc[name].value == pytest.approx(b.auroc[name].value, abs=1e-6)
    for a, b in [(local.steering, remote.steering), (local.patching, remote.patching),
                 (local.feature.ablation, remote.feature.ablation)]:
        assert a.effect.value == pytest.approx(b.effect.value, abs=1e-6)
        assert a.control.value == pytest.approx(b.control.value, abs=1e-6)
    for a, b in zip(local.lens, remote.lens):
        assert a.condition == b.condition and a.gap == pytest.approx(b.gap, abs=1e-6)
    assert local.copy_test == remote.copy_test
