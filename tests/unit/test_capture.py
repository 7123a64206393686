"""Capture correctness, the sparse store, position rules and evidence."""

from __future__ import annotations

import pytest
import torch

from workbench.features.capture import (
    CaptureInput, inputs_from_scenarios, inputs_from_texts, read_capture, run_capture,
)
from workbench.core.errors import FeatureIndexError, WorkbenchError
from workbench.features.evidence import feature_evidence
from workbench.core.positions import ROLES
from workbench.model.rendering import render_conversation

TEXTS = ["The capital of France is Paris.", "quick brown fox", "Repeat after me: the capital of Spain is Rome."]


def hooked_features(model, sae, input_ids):
    """Reference: a plain forward hook on the HF module, then sae.encode."""
    captured = []
    handle = model.hf_model.get_submodule(sae.site.module_path).register_forward_hook(
        lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out)
    )
    with torch.no_grad():
        model.hf_model(input_ids=torch.tensor([input_ids]))
    handle.remove()
    return sae.sae.encode(captured[0][0])


@pytest.fixture
def small_capture(tiny_model, tiny_sae, tiny_scenarios):
    inputs = inputs_from_scenarios(tiny_scenarios[:9]) + inputs_from_texts(TEXTS)
    return run_capture(tiny_model, [tiny_sae], inputs, batch_size=4, max_new_tokens=4)


def test_capture_equals_direct_encode_of_hooked_forward(tiny_model, tiny_sae, small_capture):
    acts = small_capture.site(tiny_sae.site.name)
    for item in small_capture.items:
        span = slice(item.token_start, item.token_start + item.n_tokens)
        token_ids = small_capture.token_ids[span].tolist()
        expected = hooked_features(tiny_model, tiny_sae, token_ids)
        got = acts.dense_rows(torch.arange(item.token_start, item.token_start + item.n_tokens))
        assert torch.allclose(got[1:], expected[1:], atol=1e-5), item.item_id
        assert (got[0] == 0).all()  # position 0 (attention sink) is not stored


def test_batching_and_padding_do_not_change_activations(tiny_model, tiny_sae, tmp_path):
    inputs = inputs_from_texts(TEXTS)
    one = run_capture(tiny_model, [tiny_sae], inputs, batch_size=1, store_root=tmp_path / "a")
    many = run_capture(tiny_model, [tiny_sae], inputs, batch_size=3, store_root=tmp_path / "b")
    site = tiny_sae.site.name
    assert torch.equal(one.sites[site].row_ptr, many.sites[site].row_ptr)
    assert torch.equal(one.sites[site].features, many.sites[site].features)
    assert torch.allclose(one.sites[site].values, many.sites[site].values, atol=1e-5)


def test_store_round_trip_and_cache_hit(tiny_model, tiny_sae, small_capture, tiny_scenarios):
    again = read_capture(small_capture.path)
    site = tiny_sae.site.name
    assert again.meta == small_capture.meta
    for name in ("row_ptr", "features", "values"):
        assert torch.equal(getattr(again.sites[site], name), getattr(small_capture.sites[site], name))
    assert torch.equal(again.roles, small_capture.roles)
    inputs = inputs_from_scenarios(tiny_scenarios[:9]) + inputs_from_texts(TEXTS)
    cached = run_capture(tiny_model, [tiny_sae], inputs, batch_size=4, max_new_tokens=4)
    assert cached.meta.created_at == small_capture.meta.created_at  # read back, not recomputed
    different = run_capture(tiny_model, [tiny_sae], inputs[:-1], batch_size=4, max_new_tokens=4)
    assert different.meta.key != small_capture.meta.key


def test_sparse_store_holds_only_nonzeros(tiny_sae, small_capture):
    acts = small_capture.site(tiny_sae.site.name)
    assert (acts.values != 0).all()
    assert int(acts.row_ptr[-1]) == acts.values.numel() <= 8 * small_capture.n_tokens  # TopK k=8


def test_first_position_can_be_kept(tiny_model, tiny_sae, tmp_path):
    kept = run_capture(tiny_model, [tiny_sae], inputs_from_texts(TEXTS[:1]), first_position=0, store_root=tmp_path)
    expected = hooked_features(tiny_model, tiny_sae, kept.token_ids.tolist())
    assert torch.allclose(kept.site(tiny_sae.site.name).dense_rows(torch.arange(kept.n_tokens)), expected, atol=1e-5)


def test_responses_are_generated_and_marked(small_capture):
    scenario_items = [item for item in small_capture.items if item.kind == "scenario"]
    assert all(item.response is not None and item.response_generated for item in scenario_items)
    assert all(item.n_tokens >= item.prompt_length for item in scenario_items)


def test_roles_follow_the_turns(tiny_tokenizer):
    messages = [{"role": "system", "content": "You are a spy."}, {"role": "user", "content": "Capital of France?"}]
    rendered = render_conversation(tiny_tokenizer, messages, response="Paris.")
    roles = [ROLES[r] for r in rendered.roles]
    text = "".join(rendered.token_strings)
    assert text.startswith("<|im_start|>system\nYou are a spy.") and text.endswith("assistant\nParis.")
    first_user = roles.index("user")
    first_assistant = roles.index("assistant")
    assert set(roles[:first_user]) == {"system"}
    assert set(roles[first_user:first_assistant]) == {"user"}
    assert set(roles[first_assistant:]) == {"assistant"}
    assert "".join(rendered.token_strings[:first_user]).startswith("<|im_start|>system")
    assert "".join(rendered.token_strings[rendered.prompt_length:]) == "Paris."


def test_position_rules(small_capture):
    last = small_capture.position_mask("last_prompt_token")
    answer = small_capture.position_mask("answer")
    assistant = small_capture.position_mask("assistant")
    for index, item in enumerate(small_capture.items):
        tokens = small_capture.item_index == index
        assert int((last & tokens).sum()) == 1
        n_answer = item.n_tokens - item.prompt_length
        assert int((answer & tokens).sum()) == n_answer
        if item.kind == "scenario":
            assert int((assistant & tokens).sum()) > n_answer  # header + answer
    with pytest.raises(WorkbenchError, match="unknown position rule"):
        small_capture.position_mask("middle")


def test_subset_keeps_activations(tiny_sae, small_capture):
    texts_only = small_capture.subset(lambda item: item.kind == "text")
    assert [i.item_id for i in texts_only.items] == ["text-0", "text-1", "text-2"]
    site = tiny_sae.site.name
    original = small_capture.items[-1]
    start = original.token_start
    expected = small_capture.sites[site].dense_rows(torch.arange(start, start + original.n_tokens))
    sub_item = texts_only.items[-1]
    got = texts_only.sites[site].dense_rows(torch.arange(sub_item.token_start, sub_item.token_start + sub_item.n_tokens))
    assert torch.equal(got, expected)


def test_non_finite_activations_name_the_item(tiny_model, tiny_sae, monkeypatch):
    import workbench.features.capture as capture_module

    real = capture_module.read_sites

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        return {k: v.masked_fill(torch.ones_like(v, dtype=torch.bool), float("nan")) for k, v in out.items()}

    monkeypatch.setattr(capture_module, "read_sites", poisoned)
    with pytest.raises(WorkbenchError, match="non-finite activations .* text-0"):
        run_capture(tiny_model, [tiny_sae], inputs_from_texts(["hello"]), use_cache=False)


def test_bad_capture_requests(tiny_model, tiny_sae):
    with pytest.raises(WorkbenchError, match="empty"):
        run_capture(tiny_model, [tiny_sae], [])
    duplicate = [CaptureInput(item_id="x", kind="text", text="a"), CaptureInput(item_id="x", kind="text", text="b")]
    with pytest.raises(WorkbenchError, match="unique"):
        run_capture(tiny_model, [tiny_sae], duplicate)


def test_feature_evidence_shows_whole_items(tiny_model, tiny_sae, small_capture):
    site = tiny_sae.site.name
    acts = small_capture.site(site)
    feature = int(torch.mode(acts.features).values)  # the most frequent feature
    evidence = feature_evidence(small_capture, site, feature, top_k=3, model=tiny_model, sae=tiny_sae)
    values = acts.feature_values(feature)
    assert evidence.density.value == pytest.approx(float((values > 0).float().mean()))
    assert evidence.density.low <= evidence.density.value <= evidence.density.high
    assert sum(evidence.histogram.counts) == int((values != 0).sum())
    top = evidence.top_examples[0]
    item = small_capture.item(top.item_id)
    assert len(top.tokens) == len(top.values) == len(top.roles) == item.n_tokens  # the whole item
    assert top.max_value == pytest.approx(float(values.max()))
    assert top.values[top.max_position] == pytest.approx(top.max_value, abs=1e-4)
    maxima = [e.max_value for e in evidence.top_examples]
    assert maxima == sorted(maxima, reverse=True)
    assert sum(b.n_items for b in evidence.quantile_bins) == sum(
        1 for i in range(len(small_capture.items)) if values[small_capture.item_index == i].max() > 0
    )
    assert len(evidence.promoted) == 10 and evidence.promoted[0].value >= evidence.promoted[-1].value
    assert {c.condition for c in evidence.per_condition} == {"honest", "lie", "parrot"}
    with pytest.raises(FeatureIndexError):
        feature_evidence(small_capture, site, 10_000)


def test_probe_inputs_are_the_hooked_residual_at_the_last_prompt_token(tiny_model, tiny_sae, tiny_scenarios):
    from workbench.features.probes import residual_at_last_prompt_token

    items = [render_conversation(tiny_model.tokenizer, s.messages) for s in tiny_scenarios[:5]]
    got = residual_at_last_prompt_token(tiny_model, tiny_sae.site.name, items, batch_size=2)  # padded batches
    module = tiny_model.hf_model.get_submodule(tiny_sae.site.module_path)
    for row, item in enumerate(items):
        captured = []
        handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out))
        with torch.no_grad():
            tiny_model.hf_model(input_ids=torch.tensor([item.input_ids]))
        handle.remove()
        assert torch.allclose(got[row], captured[0][0, item.prompt_length - 1], atol=1e-5)


def test_run_trace_returns_what_the_body_saves(tiny_model, tiny_sae):
    from workbench.model.tracing import read_site, run_trace

    input_ids = torch.tensor([[1, 5, 9, 12]])
    saved = run_trace(tiny_model, input_ids, None, lambda tracer: {"site": read_site(tiny_model, tiny_sae.site).save()},
                      stop=True)
    assert set(saved) == {"site"} and saved["site"].shape == (1, 4, 64)


def test_traces_run_as_on_ndif(tiny_model, tiny_sae, tiny_scenarios):
    """nnsight's ``remote="local"`` serializes each trace as for NDIF (hiding this project's modules):
    the capture's and the probe's traces give the same activations through it."""
    import dataclasses

    from workbench.features.capture import read_sites
    from workbench.features.probes import residual_at_last_prompt_token
    from workbench.model.rendering import pad_batch

    remote = dataclasses.replace(tiny_model, spec=dataclasses.replace(tiny_model.spec, remote="local"))
    items = [render_conversation(tiny_model.tokenizer, s.messages) for s in tiny_scenarios[:3]]
    input_ids, attention = pad_batch(items, tiny_model.tokenizer.pad_token_id)
    site = tiny_sae.site.name
    here = read_sites(tiny_model, [tiny_sae], input_ids, attention)[site]
    assert torch.allclose(read_sites(remote, [tiny_sae], input_ids, attention)[site], here, atol=1e-5)
    assert torch.allclose(residual_at_last_prompt_token(remote, site, items),
                          residual_at_last_prompt_token(tiny_model, site, items), atol=1e-5)
