"""Interventions through nnsight: feature ablation (keeping the SAE's error), steering along a
direction, and activation patching, batched so a sweep of strengths over scenarios runs in few
forward passes.

Conventions:
- Ablation removes each chosen feature's decoder contribution, ``x - (a_f(x) - target) W_dec[f]``,
  with ``target`` 0 (zero ablation) or the feature's mean over a reference set (mean ablation).
  The SAE's reconstruction error is kept, so ablating an inactive feature changes nothing.
- Steering adds ``strength * scale * d`` where ``d`` is a unit vector (a feature's decoder row,
  normalised, or any direction such as a probe's). ``scale`` states the unit of ``strength``:
  ``unit`` (raw residual units), ``feature`` (the feature's typical activation times its decoder
  norm, so strength 1 adds one typical firing), or ``residual`` (the mean residual norm at the
  site, so strength 1 adds a vector as long as a typical activation).
- Positions follow the position rules of captures (``all``, ``system``, ``user``,
  ``last_prompt_token``, ``answer``, ``assistant``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from workbench.errors import WorkbenchError
from workbench.models import LoadedModel
from workbench.rendering import ROLE_INDEX, RenderedItem
from workbench.saes import LoadedSAE

INTERVENTION_POSITIONS = ("all", "system", "user", "last_prompt_token", "answer", "assistant")


def position_mask(item: RenderedItem, rule: str) -> torch.Tensor:
    """Which tokens of one rendered item a position rule selects ([n_tokens] bool)."""
    n = item.n_tokens
    positions = torch.arange(n)
    roles = torch.tensor(item.roles)
    if rule == "all":
        return torch.ones(n, dtype=torch.bool)
    if rule == "last_prompt_token":
        return positions == item.prompt_length - 1
    if rule == "answer":
        return positions >= item.prompt_length
    if rule in ("system", "user", "assistant"):
        return roles == ROLE_INDEX[rule]
    raise WorkbenchError(f"unknown position rule {rule!r}; choose one of {', '.join(INTERVENTION_POSITIONS)}")


@dataclass(frozen=True)
class Ablation:
    """Remove features' decoder contributions at the chosen positions."""

    features: tuple[int, ...]
    mode: Literal["zero", "mean"] = "zero"
    mean_values: tuple[float, ...] | None = None
    """Per feature, the value mean ablation sets it to (its mean over a reference condition)."""
    positions: str = "all"


@dataclass(frozen=True)
class Steering:
    """Add a multiple of a unit direction at the chosen positions (strength per batch row)."""

    direction: torch.Tensor  # [d_in], normalised on use
    scale: float = 1.0
    """Residual units per unit of strength (see the module docstring for the conventions)."""
    positions: str = "all"


def feature_direction(sae: LoadedSAE, features: Sequence[int]) -> torch.Tensor:
    """Unit vector along the sum of the features' decoder rows ([d_in])."""
    for feature in features:
        sae.check_feature(feature)
    direction = sae.sae.W_dec[list(features)].float().sum(0).detach()
    return direction / direction.norm().clamp(min=1e-8)


def ablate(acts: torch.Tensor, sae: LoadedSAE, ablation: Ablation, mask: torch.Tensor) -> torch.Tensor:
    """The activations with the ablation applied where ``mask`` is true.

    ``acts`` is ``[batch, pos, d_in]`` and ``mask`` ``[batch, pos]`` (bool).
    """
    features = list(ablation.features)
    for feature in features:
        sae.check_feature(feature)
    coefficients = sae.encode(acts)[..., features]  # [batch, pos, n_features]
    if ablation.mode == "mean":
        if ablation.mean_values is None or len(ablation.mean_values) != len(features):
            raise WorkbenchError("mean ablation needs one mean value per feature")
        target = torch.tensor(ablation.mean_values, dtype=coefficients.dtype)
    else:
        target = torch.zeros(len(features))
    change = (coefficients - target) * mask[..., None].to(coefficients.dtype)  # [batch, pos, n_features]
    decoder = sae.sae.W_dec[features].float().detach()  # [n_features, d_in]
    return acts - (change @ decoder).to(acts.dtype)


def steer(acts: torch.Tensor, steering: Steering, strengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``acts + strength[row] * scale * unit_direction`` where ``mask`` is true."""
    if not torch.isfinite(strengths).all():
        raise WorkbenchError("steering strengths must be finite numbers")
    direction = steering.direction.float() / steering.direction.float().norm().clamp(min=1e-8)
    added = (strengths[:, None, None] * steering.scale) * direction[None, None, :] * mask[..., None]
    return acts + added.to(acts.dtype)


def _pad(items: Sequence[RenderedItem], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(item.n_tokens for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        input_ids[row, : item.n_tokens] = torch.tensor(item.input_ids)
        attention[row, : item.n_tokens] = 1
    return input_ids, attention


def _masks(items: Sequence[RenderedItem], rule: str, width: int) -> torch.Tensor:
    masks = torch.zeros((len(items), width), dtype=torch.bool)
    for row, item in enumerate(items):
        masks[row, : item.n_tokens] = position_mask(item, rule)
    return masks


def last_prompt_logits(
    model: LoadedModel,
    items: Sequence[RenderedItem],
    *,
    sae: LoadedSAE | None = None,
    ablation: Ablation | None = None,
    steering: Steering | None = None,
    strengths: Sequence[float] = (0.0,),
    patch_from: Sequence[RenderedItem] | None = None,
    patch_site: str | None = None,
    batch_rows: int = 64,
) -> torch.Tensor:
    """Next-token logits at each item's last prompt token under an edit, for every strength.

    Returns ``[n_items, n_strengths, vocab]``. Rows (item x strength) are batched together,
    ``batch_rows`` per forward pass. Steering strengths multiply the edit; an ablation is
    applied with strength 1 (its rows repeat for each strength given). Patching copies the
    site's activation at the last prompt token from ``patch_from[i]`` into item ``i``.
    """
    strengths_t = torch.tensor(list(strengths), dtype=torch.float32)
    if strengths_t.numel() == 0:
        raise WorkbenchError("the strength sweep is empty: give at least one strength")
    if not torch.isfinite(strengths_t).all():
        raise WorkbenchError("steering strengths must be finite numbers")
    if (ablation or steering) and sae is None:
        raise WorkbenchError("ablation and steering need the SAE (for its site and decoder)")
    rows = [(i, s) for i in range(len(items)) for s in range(len(strengths_t))]
    pad_id = model.tokenizer.pad_token_id or 0
    out = torch.zeros(len(items), len(strengths_t), model.vocab_size)
    site = sae.site if sae is not None else (model.site(patch_site) if patch_site else None)
    source_acts = None
    if patch_from is not None:
        if site is None:
            raise WorkbenchError("patching needs a site")
        source_acts = _last_prompt_activations(model, site, patch_from)
    for start in range(0, len(rows), batch_rows):
        chunk = rows[start : start + batch_rows]
        chunk_items = [items[i] for i, _ in chunk]
        input_ids, attention = _pad(chunk_items, pad_id)
        last = torch.tensor([items[i].prompt_length - 1 for i, _ in chunk])
        row_strengths = strengths_t[[s for _, s in chunk]]
        with torch.no_grad(), model.lm.trace({"input_ids": input_ids, "attention_mask": attention},
                                             remote=model.spec.remote):
            if site is not None and (ablation or steering or source_acts is not None):
                envoy = model.envoy(site)
                acts = envoy.output[0] if isinstance(envoy.output, tuple) else envoy.output
                new = acts
                if ablation is not None:
                    new = ablate(new, sae, ablation, _masks(chunk_items, ablation.positions, input_ids.shape[1]))
                if steering is not None:
                    new = steer(new, steering, row_strengths, _masks(chunk_items, steering.positions, input_ids.shape[1]))
                if source_acts is not None:
                    new = new.clone()
                    new[torch.arange(len(chunk)), last] = source_acts[[i for i, _ in chunk]]
                if isinstance(envoy.output, tuple):
                    envoy.output = (new, *envoy.output[1:])
                else:
                    envoy.output = new
            logits = model.lm.lm_head.output[torch.arange(len(chunk)), last].save()
        for row, (i, s) in enumerate(chunk):
            out[i, s] = logits[row].float()
    return out


def _last_prompt_activations(model: LoadedModel, site, items: Sequence[RenderedItem]) -> torch.Tensor:
    """Activation at the site at each item's last prompt token ([n_items, d_in])."""
    from workbench.capture import read_sites  # noqa: F401  (same reading convention)

    pad_id = model.tokenizer.pad_token_id or 0
    input_ids, attention = _pad(items, pad_id)
    last = torch.tensor([item.prompt_length - 1 for item in items])
    with torch.no_grad(), model.lm.trace({"input_ids": input_ids, "attention_mask": attention},
                                         remote=model.spec.remote) as tracer:
        envoy = model.envoy(site)
        value = envoy.output[0] if isinstance(envoy.output, tuple) else envoy.output
        saved = value[torch.arange(len(items)), last].save()
        tracer.stop()
    return saved.detach()
