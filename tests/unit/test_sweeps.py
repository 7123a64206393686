"""Sweeps: identities, agreement with hand-written hooks, batching, and the prefix-reuse path
against the full forward."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from workbench.causal import sweeps
from workbench.causal.edits import Ablation, Clamp, Patch, Steering, feature_direction
from workbench.causal.sweeps import all_position_log_probs, edited_generate, edited_logits
from workbench.core.errors import WorkbenchError
from workbench.core.positions import ROLE_INDEX
from workbench.model.rendering import render_conversation

CONVERSATIONS = [
    [{"role": "system", "content": "You are a spy."}, {"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Repeat after me: the capital of Spain is Rome."}],
    [{"role": "system", "content": "Answer with just the name."}, {"role": "user", "content": "quick brown fox"}],
]


@pytest.fixture(scope="module")
def items(tiny_tokenizer):
    return [render_conversation(tiny_tokenizer, c) for c in CONVERSATIONS]


def plain_logits(model, items, hook=None):
    outputs = []
    for item in items:
        handle = None
        if hook is not None:
            handle = model.hf_model.get_submodule("model.layers.1").register_forward_hook(hook(item))
        with torch.no_grad():
            logits = model.hf_model(input_ids=torch.tensor([item.input_ids])).logits[0, item.prompt_length - 1]
        if handle:
            handle.remove()
        outputs.append(logits)
    return torch.stack(outputs)


@contextmanager
def count_rows(model, layer: int):
    """The batch size of every pass that computes decoder layer ``layer`` (its MLP: a skipped layer
    runs nothing inside) while the block runs."""
    rows: list[int] = []
    module = model.hf_model.get_submodule(f"model.layers.{layer}.mlp")
    handle = module.register_forward_pre_hook(lambda _module, args: rows.append(int(args[0].shape[0])))
    try:
        yield rows
    finally:
        handle.remove()


def test_no_edit_equals_plain_forward(tiny_model, items):
    got = edited_logits(tiny_model, items, strengths=[0.0])[:, 0]
    assert torch.allclose(got, plain_logits(tiny_model, items), atol=1e-4)


def test_zero_strength_steering_is_identity(tiny_model, tiny_sae, items):
    steering = Steering(positions="all", direction=feature_direction(tiny_sae, [3]), scale=5.0)
    got = edited_logits(tiny_model, items, steering, site=tiny_sae.site, strengths=[0.0, 2.0])
    plain = plain_logits(tiny_model, items)
    assert torch.allclose(got[:, 0], plain, atol=1e-4)
    assert not torch.allclose(got[:, 1], plain, atol=1e-3)


def test_ablating_an_inactive_feature_changes_nothing(tiny_sae):
    acts = torch.randn(2, 5, 64)
    codes = tiny_sae.encode(acts)
    inactive = int(torch.nonzero((codes > 0).sum((0, 1)) == 0)[0])
    mask = torch.ones(2, 5, dtype=torch.bool)
    ablation = Ablation(positions="all", sae=tiny_sae, features=(inactive,))
    assert torch.equal(ablation.apply(acts, mask, torch.ones(2)), acts)


def test_zero_ablation_removes_exactly_the_feature(tiny_sae):
    acts = torch.randn(1, 4, 64)
    codes = tiny_sae.encode(acts)
    feature = int(codes[0, 0].argmax())
    mask = torch.tensor([[True, False, True, True]])
    edited = Ablation(positions="all", sae=tiny_sae, features=(feature,)).apply(acts, mask, torch.ones(1))
    expected = acts.clone()
    for pos in (0, 2, 3):
        expected[0, pos] -= codes[0, pos, feature] * tiny_sae.sae.W_dec[feature]
    assert torch.allclose(edited, expected, atol=1e-5)
    assert torch.equal(edited[0, 1], acts[0, 1])  # unmasked position untouched


def test_batched_sweep_equals_single_item_hooks(tiny_model, tiny_sae, items):
    direction = feature_direction(tiny_sae, [3, 7])
    strengths = [-2.0, 0.5, 4.0]
    steering = Steering(direction=direction, scale=1.5, positions="user")
    got = edited_logits(tiny_model, items, steering, site=tiny_sae.site.name, strengths=strengths, batch_rows=4)
    for s_index, strength in enumerate(strengths):
        def hook(item, strength=strength):
            mask = torch.tensor(item.roles) == ROLE_INDEX["user"]
            mask[0] = False  # the attention sink is never edited
            return lambda _m, _i, out: out + strength * 1.5 * direction * mask[None, :, None]
        expected = plain_logits(tiny_model, items, hook)
        assert torch.allclose(got[:, s_index], expected, atol=1e-4)


def test_patching_from_itself_is_identity_and_from_another_is_not(tiny_model, tiny_sae, items):
    plain = plain_logits(tiny_model, items)
    same = edited_logits(tiny_model, items, Patch(positions="last_prompt_token", source=tuple(items)),
                         site=tiny_sae.site.name)[:, 0]
    assert torch.allclose(same, plain, atol=1e-4)
    rotated = items[1:] + items[:1]
    other = edited_logits(tiny_model, items, Patch(positions="last_prompt_token", source=tuple(rotated)),
                          site=tiny_sae.site.name)[:, 0]
    assert not torch.allclose(other, plain, atol=1e-3)


def test_bad_sweeps_fail_before_compute(tiny_model, tiny_sae, items):
    steering = Steering(positions="all", direction=feature_direction(tiny_sae, [3]))
    with count_rows(tiny_model, 0) as rows:
        with pytest.raises(WorkbenchError, match="empty"):
            edited_logits(tiny_model, items, steering, site=tiny_sae.site, strengths=[])
        with pytest.raises(WorkbenchError, match="finite"):
            edited_logits(tiny_model, items, steering, site=tiny_sae.site, strengths=[1.0, float("nan")])
        with pytest.raises(WorkbenchError, match="needs a site"):
            edited_logits(tiny_model, items, steering, strengths=[1.0])
        with pytest.raises(WorkbenchError, match="one source item per edited item"):
            edited_logits(tiny_model, items, Patch(positions="last_prompt_token", source=tuple(items[:1])),
                          site=tiny_sae.site)
        with pytest.raises(WorkbenchError, match="at their SAE's site"):
            edited_logits(tiny_model, items, Ablation(positions="all", sae=tiny_sae, features=(3,)),
                          site="model.layers.2")
        with pytest.raises(WorkbenchError, match="empty"):
            edited_generate(tiny_model, items, steering, site=tiny_sae.site, strengths=[])
        with pytest.raises(WorkbenchError, match="out of range"):
            feature_direction(tiny_sae, [999])
    assert rows == [], "a bad sweep must fail before any forward pass"


def hooked_greedy(model, item, hook, n_tokens: int) -> list[int]:
    """Greedy decoding one token at a time, re-running the whole sequence with a hand-written hook."""
    ids = list(item.input_ids)
    out = []
    for _ in range(n_tokens):
        handle = model.hf_model.get_submodule("model.layers.1").register_forward_hook(hook) if hook else None
        with torch.no_grad():
            token = int(model.hf_model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        if handle:
            handle.remove()
        ids.append(token)
        out.append(token)
    return out


def test_edited_generation_matches_hand_written_greedy_decoding(tiny_model, tiny_sae, tiny_tokenizer, items):
    direction = feature_direction(tiny_sae, [3])
    steering = Steering(direction=direction, scale=4.0, positions="all")
    answers = edited_generate(tiny_model, items, steering, site=tiny_sae.site, strengths=[0.0, 2.0], max_new_tokens=4)

    def steer_hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        edited = hidden.clone()
        edited[:, 1:] += 2.0 * 4.0 * direction / direction.norm()  # every position but the attention sink
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    stop = {tiny_tokenizer.convert_tokens_to_ids("<|im_end|>"), tiny_tokenizer.eos_token_id}
    for item, (unedited, steered) in zip(items, answers):
        for hook, got in ((None, unedited), (steer_hook, steered)):
            tokens = hooked_greedy(tiny_model, item, hook, 4)
            kept = []
            for token in tokens:
                if token in stop:
                    break
                kept.append(token)
            assert got == tiny_tokenizer.decode(kept, skip_special_tokens=True).strip()
    assert any(a != b for a, b in answers), "the steering should change some answer"


def test_edited_generation_ablates_the_answer_tokens_as_they_are_generated(tiny_model, tiny_sae, tiny_tokenizer,
                                                                           items):
    codes = tiny_sae.encode(torch.randn(64, 64) * 3)
    features = tuple(int(f) for f in torch.argsort((codes > 0).sum(0), descending=True)[:6])
    ablation = Ablation(positions="answer", sae=tiny_sae, features=features)
    answers = edited_generate(tiny_model, items, ablation, site=tiny_sae.site, strengths=[-3.0], max_new_tokens=4)
    unedited = edited_generate(tiny_model, items, None, strengths=[0.0], max_new_tokens=4)
    assert answers != unedited, "the edit of the generated tokens should change some answer"
    stop = {tiny_tokenizer.convert_tokens_to_ids("<|im_end|>"), tiny_tokenizer.eos_token_id}
    for item, (got,) in zip(items, answers):
        def hook(_module, _args, output, item=item):
            hidden = output[0] if isinstance(output, tuple) else output
            mask = torch.zeros(hidden.shape[:2], dtype=torch.bool)
            mask[:, item.prompt_length :] = True
            edited = ablation.apply(hidden, mask, torch.tensor([-3.0]))
            return (edited, *output[1:]) if isinstance(output, tuple) else edited

        kept = []
        for token in hooked_greedy(tiny_model, item, hook, 4):
            if token in stop:
                break
            kept.append(token)
        assert got == tiny_tokenizer.decode(kept, skip_special_tokens=True).strip()


# ----------------------------------------------------------------------------- prefix reuse vs the full forward


def all_kinds(tiny_sae, items):
    codes = tiny_sae.encode(torch.randn(64, 64) * 3)
    features = tuple(int(f) for f in torch.argsort((codes > 0).sum(0), descending=True)[:4])
    rotated = tuple(items[1:] + items[:1])
    return {
        "ablate": Ablation(positions="all", sae=tiny_sae, features=features, targets=(0.0, 0.5, 0.0, 1.0)),
        "steer": Steering(positions="user", direction=feature_direction(tiny_sae, [3, 7]), scale=2.0),
        "patch": Patch(positions="last_prompt_token", source=rotated),
        "clamp": Clamp(positions="assistant", sae=tiny_sae, features=features[:2], units=(1.5, 0.5)),
    }


@pytest.mark.parametrize("kind", ["ablate", "steer", "patch", "clamp"])
def test_prefix_reuse_equals_the_full_forward(tiny_model, tiny_sae, items, kind, monkeypatch):
    edit = all_kinds(tiny_sae, items)[kind]
    strengths = [-2.0, 0.0, 1.0, 3.0]
    # batch_rows 5: some items' rows span two passes, so their prefix is reused across passes
    with count_rows(tiny_model, 0) as first_layer, count_rows(tiny_model, 2) as last_layer:
        fast = edited_logits(tiny_model, items, edit, site=tiny_sae.site, strengths=strengths, batch_rows=5)
        fast_all = all_position_log_probs(tiny_model, items, edit, site=tiny_sae.site, strengths=strengths,
                                          batch_rows=5)
    n_sources = len(items) if kind == "patch" else 0  # patch sources are read once per call, up to the site
    assert sum(first_layer) == 2 * (len(items) + n_sources), "layers before the site run once per item"
    assert sum(last_layer) == 2 * len(items) * len(strengths), "layers after the site run once per row"

    monkeypatch.setattr(sweeps, "_prefix_layer", lambda *args: None)  # the full forward of every row
    with count_rows(tiny_model, 0) as first_layer:
        full = edited_logits(tiny_model, items, edit, site=tiny_sae.site, strengths=strengths, batch_rows=5)
        full_all = all_position_log_probs(tiny_model, items, edit, site=tiny_sae.site, strengths=strengths,
                                          batch_rows=5)
    assert sum(first_layer) == 2 * (len(items) * len(strengths) + n_sources)
    assert torch.allclose(fast, full, atol=1e-4)
    for fast_item, full_item in zip(fast_all, full_all):
        assert torch.allclose(fast_item, full_item, atol=1e-4)
    if edit.identity_at_zero:
        assert torch.allclose(fast[:, 1], plain_logits(tiny_model, items), atol=1e-4)
    assert not torch.allclose(fast[:, 0], fast[:, 3], atol=1e-3), "the edit should change the logits"


def steer_hook(direction, strength, positions_from: int = 1):
    unit = direction / direction.norm()

    def hook(_module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        edited = hidden.clone()
        edited[:, positions_from:] += strength * unit
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    return hook


@pytest.mark.parametrize("site, module", [("model.layers.1.mlp", "model.layers.1.mlp"),
                                          ("blocks.2.hook_resid_pre", "model.layers.1")])
def test_sites_that_are_not_a_layer_output_run_the_full_forward(tiny_model, tiny_sae, items, site, module):
    """An MLP output, or a layer's input (= the previous layer's output here, where the reference
    hook edits it), cannot be replaced by skipping whole layers."""
    direction = feature_direction(tiny_sae, [5])
    steering = Steering(positions="all", direction=direction, scale=1.0)
    with count_rows(tiny_model, 0) as first_layer:
        got = edited_logits(tiny_model, items, steering, site=site, strengths=[0.0, 3.0])
    assert sum(first_layer) == len(items) * 2, "every row runs the full forward"
    for s_index, strength in enumerate((0.0, 3.0)):
        expected = []
        for item in items:
            handle = tiny_model.hf_model.get_submodule(module).register_forward_hook(steer_hook(direction, strength))
            with torch.no_grad():
                expected.append(tiny_model.hf_model(input_ids=torch.tensor([item.input_ids])).logits[
                    0, item.prompt_length - 1])
            handle.remove()
        assert torch.allclose(got[:, s_index], torch.stack(expected), atol=1e-4)


def test_patched_generation_matches_hand_written_greedy_decoding(tiny_model, tiny_sae, tiny_tokenizer, items):
    """Patching every position from a longer source: the generated tokens are patched too while the
    source has tokens there."""
    longer = [render_conversation(tiny_tokenizer, CONVERSATIONS[0], response="Paris, I think, is it.")]
    source_acts = sweeps._source_activations(tiny_model, tiny_sae.site, longer)[0]
    item = render_conversation(tiny_tokenizer, CONVERSATIONS[0], response="Rome, I think, is it.")
    assert item.n_tokens == len(source_acts)
    prompt = item  # generate after the whole (prompt + response) item
    patch = Patch(positions="answer", source=tuple(longer))
    (got,) = edited_generate(tiny_model, [prompt], patch, site=tiny_sae.site, strengths=[0.5], max_new_tokens=3)[0]

    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        edited = hidden.clone()
        n = min(hidden.shape[1], len(source_acts))
        sl = slice(item.prompt_length, n)
        edited[:, sl] += 0.5 * (source_acts[sl] - hidden[:, sl])
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    stop = {tiny_tokenizer.convert_tokens_to_ids("<|im_end|>"), tiny_tokenizer.eos_token_id}
    kept = []
    for token in hooked_greedy(tiny_model, prompt, hook, 3):
        if token in stop:
            break
        kept.append(token)
    assert got == tiny_tokenizer.decode(kept, skip_special_tokens=True).strip()


def test_a_site_whose_module_returns_a_tuple_is_not_prefix_reused(tiny_model, items):
    """Pass 1 says when the site's module returns a tuple (attention does; decoder layers of older
    transformers did): its output cannot be replaced by one tensor, so the sweep runs the full forward."""
    attention = tiny_model.site("model.layers.1.self_attn")
    assert sweeps._site_prefix(tiny_model, attention, items) is None
    values = sweeps._site_prefix(tiny_model, tiny_model.site("model.layers.1"), items)
    assert [len(v) for v in values] == [item.n_tokens for item in items]
