"""Interventions: identities, agreement with hand-written hooks, batching."""

from __future__ import annotations

import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.causal.interventions import Ablation, Steering, ablate, feature_direction, last_prompt_logits, position_mask
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


def test_no_edit_equals_plain_forward(tiny_model, items):
    got = last_prompt_logits(tiny_model, items)[:, 0]
    assert torch.allclose(got, plain_logits(tiny_model, items), atol=1e-4)


def test_zero_strength_steering_is_identity(tiny_model, tiny_sae, items):
    steering = Steering(direction=feature_direction(tiny_sae, [3]), scale=5.0)
    got = last_prompt_logits(tiny_model, items, sae=tiny_sae, steering=steering, strengths=[0.0, 2.0])
    plain = plain_logits(tiny_model, items)
    assert torch.allclose(got[:, 0], plain, atol=1e-4)
    assert not torch.allclose(got[:, 1], plain, atol=1e-3)


def test_ablating_an_inactive_feature_changes_nothing(tiny_sae):
    acts = torch.randn(2, 5, 64)
    codes = tiny_sae.encode(acts)
    inactive = int(torch.nonzero((codes > 0).sum((0, 1)) == 0)[0])
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert torch.equal(ablate(acts, tiny_sae, Ablation(features=(inactive,)), mask), acts)


def test_zero_ablation_removes_exactly_the_feature(tiny_sae):
    acts = torch.randn(1, 4, 64)
    codes = tiny_sae.encode(acts)
    feature = int(codes[0, 0].argmax())
    mask = torch.tensor([[True, False, True, True]])
    edited = ablate(acts, tiny_sae, Ablation(features=(feature,)), mask)
    expected = acts.clone()
    for pos in (0, 2, 3):
        expected[0, pos] -= codes[0, pos, feature] * tiny_sae.sae.W_dec[feature]
    assert torch.allclose(edited, expected, atol=1e-5)
    assert torch.equal(edited[0, 1], acts[0, 1])  # unmasked position untouched


def test_batched_sweep_equals_single_item_hooks(tiny_model, tiny_sae, items):
    direction = feature_direction(tiny_sae, [3, 7])
    strengths = [-2.0, 0.5, 4.0]
    steering = Steering(direction=direction, scale=1.5, positions="user")
    got = last_prompt_logits(tiny_model, items, sae=tiny_sae, steering=steering, strengths=strengths, batch_rows=4)
    for s_index, strength in enumerate(strengths):
        def hook(item, strength=strength):
            mask = position_mask(item, "user").clone()
            mask[0] = False  # the attention sink is never edited
            return lambda _m, _i, out: out + strength * 1.5 * direction * mask[None, :, None]
        expected = plain_logits(tiny_model, items, hook)
        assert torch.allclose(got[:, s_index], expected, atol=1e-4)


def test_patching_from_itself_is_identity_and_from_another_is_not(tiny_model, tiny_sae, items):
    plain = plain_logits(tiny_model, items)
    same = last_prompt_logits(tiny_model, items, patch_from=items, patch_site=tiny_sae.site.name)[:, 0]
    assert torch.allclose(same, plain, atol=1e-4)
    rotated = items[1:] + items[:1]
    other = last_prompt_logits(tiny_model, items, patch_from=rotated, patch_site=tiny_sae.site.name)[:, 0]
    assert not torch.allclose(other, plain, atol=1e-3)


def test_bad_sweeps_fail_before_compute(tiny_model, tiny_sae, items):
    steering = Steering(direction=feature_direction(tiny_sae, [3]))
    with pytest.raises(WorkbenchError, match="empty"):
        last_prompt_logits(tiny_model, items, sae=tiny_sae, steering=steering, strengths=[])
    with pytest.raises(WorkbenchError, match="finite"):
        last_prompt_logits(tiny_model, items, sae=tiny_sae, steering=steering, strengths=[1.0, float("nan")])
    with pytest.raises(WorkbenchError, match="out of range"):
        feature_direction(tiny_sae, [999])


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
    from workbench.causal.interventions import edited_generate

    direction = feature_direction(tiny_sae, [3])
    steering = Steering(direction=direction, scale=4.0, positions="all")
    answers = edited_generate(tiny_model, items, steering, sae=tiny_sae, strengths=[0.0, 2.0], max_new_tokens=4)

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
    from workbench.causal.interventions import edited_generate

    codes = tiny_sae.encode(torch.randn(64, 64) * 3)
    features = tuple(int(f) for f in torch.argsort((codes > 0).sum(0), descending=True)[:6])
    ablation = Ablation(features=features, positions="answer")
    answers = edited_generate(tiny_model, items, ablation, sae=tiny_sae, strengths=[-3.0], max_new_tokens=4)
    unedited = edited_generate(tiny_model, items, None, strengths=[0.0], max_new_tokens=4)
    assert answers != unedited, "the edit of the generated tokens should change some answer"
    stop = {tiny_tokenizer.convert_tokens_to_ids("<|im_end|>"), tiny_tokenizer.eos_token_id}
    for item, (got,) in zip(items, answers):
        def hook(_module, _args, output, item=item):
            hidden = output[0] if isinstance(output, tuple) else output
            mask = torch.zeros(hidden.shape[:2], dtype=torch.bool)
            mask[:, item.prompt_length :] = True
            edited = ablate(hidden, tiny_sae, ablation, mask, torch.tensor([-3.0]))
            return (edited, *output[1:]) if isinstance(output, tuple) else edited

        kept = []
        for token in hooked_greedy(tiny_model, item, hook, 4):
            if token in stop:
                break
            kept.append(token)
        assert got == tiny_tokenizer.decode(kept, skip_special_tokens=True).strip()
