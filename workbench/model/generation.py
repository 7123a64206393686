"""The one greedy decoder: batched greedy decoding with the key-value cache, through the tracing
helper, with an optional hook that edits a site inside every step's trace.

``greedy_decode`` runs right-padded prompts once, then one new token per row and step, each at its
own position (after its prompt and its answer so far), so padding never shifts a row's positions
and the result equals re-running the whole sequence at every step. ``generate_answers`` (responses,
knowledge checks, evals) is that decoder without an edit; ``causal.sweeps.edited_generate`` is the
same decoder with an edit passed through ``edit``.

Remote models (``spec.remote``, NDIF or its local simulation) take the other road to the same
tokens: every step re-runs each row's whole sequence (prompt and answer so far) without a cache. The
key-value cache would leave the server as a saved value after every token and travel back with the
next request, on the CPU (nnsight loads results there), where the model's layers cannot extend it;
token ids are all that crosses the network this way. Each new token is still one round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from workbench.core.errors import WorkbenchError
from workbench.model.loading import LoadedModel
from workbench.model.rendering import chat_prompt, pad_ids
from workbench.model.tracing import run_trace

StepEdit = Callable[[torch.Tensor], None]
"""Called inside each step's trace with the absolute position of every token of that pass
(``[rows, pos]`` long, ``-1`` for padding); it reads and writes sites with ``read_site`` /
``write_site`` (see ``causal.sweeps``)."""


def stop_ids(tokenizer: Any) -> set[int]:
    """Token ids that end an answer: end of sequence and the chat template's end of turn."""
    ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return {i for i in ids if isinstance(i, int) and i >= 0}


def _step_logits(model: LoadedModel, input_ids: torch.Tensor, attention: torch.Tensor, read: torch.Tensor,
                 positions: torch.Tensor, edit: StepEdit | None, *, keep_cache: bool = True,
                 **forward_kwargs: Any) -> tuple[torch.Tensor, Any]:
    """One traced pass: next-token logits at ``read`` (``[rows, vocab]``) and the key-value cache (None
    without ``keep_cache``: then only the logits are saved, and come back from a remote model)."""
    rows = torch.arange(len(input_ids))

    def body(_tracer: Any) -> Any:
        if edit is not None:
            edit(positions)
        # unembed only the position that is read ([rows, 1, d_model]): the full unembedding of a
        # large vocabulary is a sizeable part of a pass
        hidden = model.lm.lm_head.input
        model.lm.lm_head.input = hidden[rows, read][:, None]
        if not keep_cache:
            return model.lm.lm_head.output.save()
        return model.lm.output.save()  # one saved value (a tuple of saved values would not come back)

    output = run_trace(model, input_ids, attention, body, use_cache=keep_cache, **forward_kwargs)
    if not keep_cache:
        return output[:, 0], None
    logits = output.logits[:, 0]  # [rows, vocab]
    cache = output.cache if hasattr(output, "cache") else output.past_key_values
    return logits, cache


def next_token_logits(model: LoadedModel, input_ids: torch.Tensor, attention: torch.Tensor, read: torch.Tensor,
                      **forward_kwargs: Any) -> tuple[torch.Tensor, Any]:
    """One traced pass without an edit: next-token logits at each row's position ``read`` (``[rows, vocab]``)
    and the key-value cache (pass it back as ``cache=`` with ``position_ids`` to continue the rows)."""
    return _step_logits(model, input_ids, attention, read, torch.zeros_like(input_ids), None, **forward_kwargs)


def greedy_decode(
    model: LoadedModel,
    input_ids: torch.Tensor,  # [rows, width], right-padded
    attention_mask: torch.Tensor,  # [rows, width], 1 on each row's tokens, then 0
    *,
    max_new_tokens: int,
    stop: set[int] | None = None,
    edit: StepEdit | None = None,
) -> list[list[int]]:
    """Greedy new tokens of every row (without the stop token that ended it).

    The prompts run once, then each step runs one new token per row at its own position with the
    key-value cache (a remote model: each row's whole sequence again, without a cache). ``edit`` (if
    given) is called inside every pass's trace with the absolute positions of that pass's tokens: the
    whole prompt first, then each row's new token (or its whole sequence).
    """
    stop = stop_ids(model.tokenizer) if stop is None else stop
    n_rows = len(input_ids)
    lengths = attention_mask.sum(dim=1).long()
    positions, read = _padded_positions(lengths, input_ids.shape[1]), lengths - 1
    # remote models re-run the whole sequence at every step (see the module docstring)
    keep_cache = not model.spec.remote
    sequences = [input_ids[row, : int(lengths[row])].tolist() for row in range(n_rows)]
    generated: list[list[int]] = [[] for _ in range(n_rows)]
    finished = [False] * n_rows
    attention = attention_mask
    forward_kwargs: dict[str, Any] = {}
    for step in range(max_new_tokens):
        logits, cache = _step_logits(model, input_ids, attention, read, positions, edit, keep_cache=keep_cache,
                                     **forward_kwargs)
        if not torch.isfinite(logits).all():
            raise WorkbenchError("the model produced NaN or inf logits while generating; with an edit, lower "
                                 "the strength or check the SAE")
        next_tokens = logits.argmax(dim=-1)
        for row in range(n_rows):
            if finished[row]:
                continue
            token = int(next_tokens[row])
            if token in stop:
                finished[row] = True
            else:
                generated[row].append(token)
        if all(finished):
            break
        if not keep_cache:  # the next pass: every row's whole sequence, its new token last
            for row, sequence in enumerate(sequences):
                sequence.append(int(next_tokens[row]))
            input_ids, attention = pad_ids(sequences, model.tokenizer.pad_token_id)
            positions, read = _padded_positions(lengths + step + 1, input_ids.shape[1]), lengths + step
            continue
        # the next pass: each row's new token at its own position (after its prompt and answer so far)
        positions = (lengths + step)[:, None]
        forward_kwargs = {"cache": cache, "position_ids": positions}
        input_ids = next_tokens[:, None]
        attention = torch.cat([attention, torch.ones(n_rows, 1, dtype=attention.dtype)], dim=1)
        read = torch.zeros(n_rows, dtype=torch.long)
    return generated


def _padded_positions(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Absolute positions of right-padded rows of ``lengths`` tokens (``[rows, width]``, ``-1`` on padding)."""
    positions = torch.arange(width)[None].expand(len(lengths), width)
    return torch.where(positions < lengths[:, None], positions, torch.full_like(positions, -1))


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
    encoded = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    answers: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # similar lengths together: less padding
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    stop = stop_ids(tokenizer)
    for batch in tqdm(batches, desc="generating", disable=not progress, unit="batch"):
        input_ids, attention = pad_ids([encoded[i] for i in batch], tokenizer.pad_token_id)
        tokens = greedy_decode(model, input_ids, attention, max_new_tokens=max_new_tokens, stop=stop)
        for row, index in enumerate(batch):
            answers[index] = tokenizer.decode(tokens[row], skip_special_tokens=True).strip()
    return answers


def next_token_log_probs(
    model: LoadedModel,
    conversations: Sequence[Sequence[Any]],
    *,
    batch_size: int = 8,
) -> torch.Tensor:
    """Log-probabilities of the assistant's first token after each conversation (chat template applied,
    as ``generate_answers`` prompts it): ``[len(conversations), vocab]``. One traced pass per batch, so a
    scorer reads P(" Yes") without decoding."""
    tokenizer = model.tokenizer
    encoded = [tokenizer(chat_prompt(tokenizer, conv), add_special_tokens=False)["input_ids"] for conv in conversations]
    out: list[torch.Tensor | None] = [None] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        input_ids, attention = pad_ids([encoded[i] for i in batch], tokenizer.pad_token_id)
        lengths = attention.sum(dim=1).long()
        positions = _padded_positions(lengths, input_ids.shape[1])
        logits, _ = _step_logits(model, input_ids, attention, lengths - 1, positions, None, keep_cache=False)
        for row, index in enumerate(batch):
            out[index] = torch.log_softmax(logits[row].float(), dim=-1)
    return torch.stack([o for o in out if o is not None]) if out else torch.zeros(0)
