"""Reading a site's activations for SAE training and evaluation: tokenising texts, a private
work copy of the model in a faster dtype, and :func:`collect_activations`, which stops each
forward pass at the site. Position 0 of every text (the attention sink) is left out."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from workbench.model.loading import LoadedModel
from workbench.model.sites import Site

__all__ = ["SKIP_POSITIONS", "collect_activations", "count_tokens", "encode_text", "work_model"]

#: Positions at the start of every text left out of training and metrics (attention sink).
SKIP_POSITIONS = 1


def encode_text(tokenizer: Any, text: str, max_length: int | None = None) -> list[int]:
    """Token ids of a text; no second BOS when the text (a rendered chat) already starts with it."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and text.startswith(bos))
    ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    return list(ids[:max_length] if max_length else ids)


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> int:
    return sum(len(encode_text(tokenizer, text)) for text in texts)


def work_model(loaded_model: LoadedModel, work_dtype: str | None) -> torch.nn.Module:
    """The model as loaded, or a private copy in ``work_dtype`` (the shared model is never mutated)."""
    model = loaded_model.hf_model
    if work_dtype is None or next(model.parameters()).dtype == getattr(torch, work_dtype):
        return model
    return copy.deepcopy(model).to(getattr(torch, work_dtype)).eval()


# ---------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised by the capture hook once the site is read, so later layers never run."""


def site_module(model: torch.nn.Module, site: Site) -> torch.nn.Module:
    return model.get_submodule(site.module_path)


def _first(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value


def padded_batches(
    tokenizer: Any, texts: Sequence[str], batch_size: int, max_length: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[int]]]:
    """(input_ids [batch, pos], attention_mask [batch, pos], text indices), right-padded,
    texts sorted by length so batches waste little padding."""
    encoded = [encode_text(tokenizer, t, max_length) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in index)
        ids = torch.full((len(index), width), pad, dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i], dtype=torch.long)
            mask[row, : len(encoded[i])] = 1
        yield ids, mask, index


def token_mask(mask: torch.Tensor, skip: int) -> torch.Tensor:
    """Positions that count: real tokens (not padding), after the first ``skip`` of each text."""
    keep = mask.bool().clone()  # [batch, pos]
    keep[:, :skip] = False
    return keep


@torch.no_grad()
def collect_activations(
    loaded_model: LoadedModel,
    site_name: str,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    max_length: int = 256,
    skip_positions: int = SKIP_POSITIONS,
    model: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Activations at a site for every real token of every text after the first
    ``skip_positions`` ones: ``[n_tokens, d_in]`` float32. Stops each forward pass at the site."""
    model = model if model is not None else loaded_model.hf_model
    site = loaded_model.site(site_name)
    module = site_module(model, site)
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []

    def read(value: torch.Tensor) -> None:
        captured.append(value)
        raise _StopForward

    if site.reads_input:
        handle = module.register_forward_pre_hook(
            lambda _m, args, kwargs: read(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
        )
    else:
        handle = module.register_forward_hook(lambda _m, _args, output: read(_first(output)))
    chunks: list[torch.Tensor] = []
    try:
        for ids, mask, _ in padded_batches(loaded_model.tokenizer, texts, batch_size, max_length):
            captured.clear()
            try:
                model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            except _StopForward:
                pass
            acts = captured[0].float().cpu()  # [batch, pos, d_in]
            chunks.append(acts[token_mask(mask, skip_positions)])
    finally:
        handle.remove()
    return torch.cat(chunks) if chunks else torch.zeros((0, loaded_model.d_model))
