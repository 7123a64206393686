"""Greedy answers from a model, batched (used for responses, knowledge checks, evals)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from workbench.model.loading import LoadedModel
from workbench.model.rendering import chat_prompt


def generate_answers(
    model: LoadedModel,
    conversations: Sequence[Sequence[Any]],
    *,
    max_new_tokens: int = 20,
    batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Greedy-decode the assistant's answer to each conversation (chat template applied); after a
    prefill, the continuation alone (stripped)."""
    tokenizer = model.tokenizer
    prompts = [chat_prompt(tokenizer, conv) for conv in conversations]
    answers: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    stop_ids = [i for i in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")} if isinstance(i, int) and i >= 0]
    for batch in tqdm(batches, desc="generating", disable=not progress, unit="batch"):
        encoded = tokenizer([prompts[i] for i in batch], add_special_tokens=False, return_tensors="pt",
                            padding=True, padding_side="left")
        with torch.no_grad():
            if model.spec.remote:
                with model.lm.generate(dict(encoded), max_new_tokens=max_new_tokens, do_sample=False, remote=True):
                    output = model.lm.generator.output.save()
            else:
                output = model.hf_model.generate(
                    **encoded, max_new_tokens=max_new_tokens, do_sample=False,
                    eos_token_id=stop_ids or None, pad_token_id=tokenizer.pad_token_id,
                )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        for row, index in enumerate(batch):
            answers[index] = tokenizer.decode(new_tokens[row], skip_special_tokens=True).strip()
    return answers
