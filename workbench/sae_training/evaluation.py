"""Measuring an SAE on (held-out) text: explained variance, CE-loss recovered against zero
ablation, L0 and dead latents, with the SAE spliced in at positions 1.. only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from workbench.model.loading import LoadedModel
from workbench.sae_training.activations import SKIP_POSITIONS, padded_batches, site_module, token_mask
from workbench.sae_training.corpus import heldout_corpus

__all__ = ["evaluate_on_fresh_text", "evaluate_sae"]


@torch.no_grad()
def evaluate_sae(
    loaded_model: LoadedModel,
    sae: Any,
    site_name: str,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int = 256,
    skip_positions: int = SKIP_POSITIONS,
) -> dict[str, float | int]:
    """Quality of an SAE at a site on (held-out) texts, positions ``skip_positions``.. only.

    - ``explained_variance``: 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over tokens.
    - ``ce_loss_recovered``: (CE_zero - CE_sae) / (CE_zero - CE_clean), where CE_sae splices
      the reconstruction into the forward pass at the site and CE_zero puts zeros there (the
      same positions in both); next-token CE over the predictions made at those positions.
    - ``l0``: mean number of active latents per token; ``dead_fraction``: latents never
      active on these tokens; ``n_tokens``: tokens scored.
    """
    model = loaded_model.hf_model
    site = loaded_model.site(site_name)
    module = site_module(model, site)
    device = next(model.parameters()).device
    sae_dtype = sae.W_enc.dtype
    d_sae = int(sae.cfg.d_sae)

    state: dict[str, Any] = {"mode": "clean", "keep": None, "clean": None}

    def edit(value: torch.Tensor) -> torch.Tensor:
        keep = state["keep"].to(value.device)  # [batch, pos]
        if state["mode"] == "clean":
            state["clean"] = value.detach().float().cpu()
            return value
        if state["mode"] == "zero":
            replacement = torch.zeros_like(value)
        else:
            replacement = sae.decode(sae.encode(value.to(sae_dtype))).to(value.dtype)
        return torch.where(keep.unsqueeze(-1), replacement, value)

    if site.reads_input:
        def pre_hook(_m: Any, args: tuple, kwargs: dict) -> Any:
            if args:
                return (edit(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}

        handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        def hook(_m: Any, _args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (edit(output[0]), *output[1:])
            return edit(output)

        handle = module.register_forward_hook(hook)

    ce = {"clean": 0.0, "zero": 0.0, "sae": 0.0}
    n_ce = 0
    n_tokens = 0
    residual_sq = 0.0
    sum_x = torch.zeros(loaded_model.d_model, dtype=torch.float64)
    sum_sq = 0.0
    active_total = 0
    fired = torch.zeros(d_sae, dtype=torch.bool)
    try:
        for ids, mask, _ in padded_batches(loaded_model.tokenizer, texts, batch_size, max_length):
            keep = token_mask(mask, skip_positions)  # [batch, pos]
            state["keep"] = keep
            # predictions made at kept positions p, of token p+1, where p+1 is a real token
            scored = keep[:, :-1] & mask[:, 1:].bool()  # [batch, pos-1]
            targets = ids[:, 1:][scored]
            for mode in ("clean", "zero", "sae"):
                state["mode"] = mode
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
                picked = logits[:, :-1][scored.to(logits.device)].float()
                ce[mode] += torch.nn.functional.cross_entropy(picked, targets.to(picked.device), reduction="sum").item()
            n_ce += int(targets.numel())
            x = state["clean"][keep].double()  # [tokens, d_in]
            feats = sae.encode(x.to(sae_dtype)).float()  # [tokens, d_sae]
            recon = sae.decode(feats.to(sae_dtype)).double()
            residual_sq += (x - recon).pow(2).sum().item()
            sum_x += x.sum(0)
            sum_sq += x.pow(2).sum().item()
            active = feats > 0
            active_total += int(active.sum())
            fired |= active.any(0)
            n_tokens += x.shape[0]
    finally:
        handle.remove()
    if n_tokens == 0:
        raise ValueError("no tokens to evaluate on: give longer texts (the first position is skipped)")
    total_var = sum_sq - (sum_x.pow(2).sum().item() / n_tokens)
    ce_clean, ce_zero, ce_sae = (ce[m] / max(n_ce, 1) for m in ("clean", "zero", "sae"))
    denominator = ce_zero - ce_clean
    return {
        "explained_variance": 1.0 - residual_sq / total_var if total_var > 0 else float("nan"),
        "ce_loss_recovered": (ce_zero - ce_sae) / denominator if denominator != 0 else float("nan"),
        "ce_clean": ce_clean,
        "ce_with_sae": ce_sae,
        "ce_zero_ablation": ce_zero,
        "l0": active_total / n_tokens,
        "dead_fraction": 1.0 - fired.float().mean().item(),
        "n_tokens": n_tokens,
        "n_ce_tokens": n_ce,
        "n_texts": len(texts),
    }


def evaluate_on_fresh_text(loaded_model: LoadedModel, loaded_sae: Any, *, n_texts: int = 48,
                           n_scenario_texts: int = 48, seed: int = 1) -> dict[str, Any]:
    """:func:`evaluate_sae` of a loaded SAE (``workbench.model.saes.LoadedSAE``) at its site on fresh
    held-out text (:func:`~workbench.sae_training.corpus.heldout_corpus`), with what was measured on."""
    corpus = heldout_corpus(loaded_model, n_texts=n_texts, n_scenario_texts=n_scenario_texts, seed=seed)
    metrics = evaluate_sae(loaded_model, loaded_sae.sae, loaded_sae.site.name, corpus.texts)
    return {"sae": loaded_sae.spec.describe(), "site": loaded_sae.site.name, "model": loaded_model.spec.display_name,
            "heldout_texts": corpus.counts(), **metrics}
