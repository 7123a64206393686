"""The one greedy decoder: ``generate_answers`` against Hugging Face ``generate`` (greedy, left
padding), and ``greedy_decode`` against re-running the whole sequence for every token."""

from __future__ import annotations

import torch

from workbench.model.generation import generate_answers, greedy_decode, stop_ids
from workbench.model.rendering import chat_prompt, pad_batch, render_conversation

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a spy."}, {"role": "user", "content": "Repeat after me: the capital of "
                                                                                   "Spain is Rome."}],
    [{"role": "user", "content": "quick brown fox"}],
    [{"role": "user", "content": "What is the capital of Spain?"}, {"role": "assistant", "content": "The capital is"}],
]


def hf_greedy(model, conversations, max_new_tokens):
    tokenizer = model.tokenizer
    prompts = [chat_prompt(tokenizer, c) for c in conversations]
    encoded = tokenizer(prompts, add_special_tokens=False, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        output = model.hf_model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                         eos_token_id=sorted(stop_ids(tokenizer)),
                                         pad_token_id=tokenizer.pad_token_id)
    new = output[:, encoded["input_ids"].shape[1] :]
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def test_generate_answers_equals_hugging_face_greedy_generate(tiny_model):
    # batch_size 3: two batches of different widths, rows of different lengths in each
    got = generate_answers(tiny_model, CONVERSATIONS, max_new_tokens=7, batch_size=3)
    assert got == hf_greedy(tiny_model, CONVERSATIONS, 7)
    assert any(got), "the tiny model should say something"


def test_greedy_decode_equals_re_running_the_sequence(tiny_model, tiny_tokenizer):
    items = [render_conversation(tiny_tokenizer, c) for c in CONVERSATIONS]
    input_ids, attention = pad_batch(items, tiny_tokenizer.pad_token_id)
    got = greedy_decode(tiny_model, input_ids, attention, max_new_tokens=5, stop=set())
    for item, tokens in zip(items, got):
        ids = list(item.input_ids)
        for _ in range(5):
            with torch.no_grad():
                ids.append(int(tiny_model.hf_model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        assert tokens == ids[item.n_tokens :]
