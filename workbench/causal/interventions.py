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
  ``last_prompt_token``, ``answer``, ``assistant``); position 0 (the attention sink) is never edited.
- Strength 0 is the unedited model for every edit: ablation scales the removal (1 = ablated,
  -1 = the sign-flipped edit), steering scales the added vector, patching interpolates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from workbench.core.errors import WorkbenchError
from workbench.model.loading import LoadedModel
from workbench.model.rendering import ROLE_INDEX, RenderedItem, pad_batch
from workbench.model.saes import LoadedSAE

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
class Patch:
    """Copy the site's activation from a paired item (same fact, other condition).

    ``positions`` is ``last_prompt_token`` (always aligned), or ``all`` / ``answer`` for pairs of
    equal length. A strength ``s`` interpolates: ``acts + s * (source - acts)``.
    """

    source: tuple[RenderedItem, ...]
    """One source item per edited item, in the same order."""
    positions: str = "last_prompt_token"


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


def ablate(acts: torch.Tensor, sae: LoadedSAE, ablation: Ablation, mask: torch.Tensor,
           strengths: torch.Tensor | None = None) -> torch.Tensor:
    """The activations with the ablation applied where ``mask`` is true.

    ``acts`` is ``[batch, pos, d_in]`` and ``mask`` ``[batch, pos]`` (bool). ``strengths``
    (``[batch]``, default 1) scales the removal: 1 ablates, 0 changes nothing, -1 is the
    sign-flipped edit (the features' contribution added once more).
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
    if strengths is not None:
        change = change * strengths.to(change.dtype)[:, None, None]
    decoder = sae.sae.W_dec[features].float().detach()  # [n_features, d_in]
    return acts - (change @ decoder).to(acts.dtype)


def steer(acts: torch.Tensor, steering: Steering, strengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``acts + strength[row] * scale * unit_direction`` where ``mask`` is true."""
    if not torch.isfinite(strengths).all():
        raise WorkbenchError("steering strengths must be finite numbers")
    direction = steering.direction.float() / steering.direction.float().norm().clamp(min=1e-8)
    added = (strengths[:, None, None] * steering.scale) * direction[None, None, :] * mask[..., None]
    return acts + added.to(acts.dtype)


def _masks(items: Sequence[RenderedItem], rule: str, width: int) -> torch.Tensor:
    """Edit masks ``[rows, width]``. Position 0 is never edited: it is the attention sink, where
    SAEs are not trained (captures skip it too) and an edit there says nothing about the prompt."""
    masks = torch.zeros((len(items), width), dtype=torch.bool)
    for row, item in enumerate(items):
        masks[row, : item.n_tokens] = position_mask(item, rule)
    masks[:, 0] = False
    return masks


Edit = Ablation | Steering | Patch


def _row_masks(items: Sequence[RenderedItem], rule: str, width: int) -> torch.Tensor:
    return _masks(items, rule, width)


def _site_for(model: LoadedModel, edit: Edit | None, sae: LoadedSAE | None, site: str | None):
    if edit is None:
        return None
    if isinstance(edit, Ablation) and sae is None:
        raise WorkbenchError("ablation needs the SAE (its encoder and decoder define the features)")
    if sae is not None:
        return sae.site
    if site is None:
        raise WorkbenchError("steering along a direction or patching needs a site (or an SAE, whose site is used)")
    return model.site(site)


def sweep_rows(items: Sequence[RenderedItem], n_strengths: int) -> list[tuple[int, int]]:
    """(item, strength) rows in the order sweeps batch them: items of similar length together (less
    padding), every strength of an item next to each other."""
    by_length = sorted(range(len(items)), key=lambda i: items[i].n_tokens)
    return [(item, strength) for item in by_length for strength in range(n_strengths)]


def check_strengths(strengths: Sequence[float]) -> torch.Tensor:
    """The sweep as a tensor; a clear error if it is empty or not finite."""
    values = torch.tensor([float(s) for s in strengths], dtype=torch.float32)
    if values.numel() == 0:
        raise WorkbenchError("the strength sweep is empty: give at least one strength")
    if not torch.isfinite(values).all():
        raise WorkbenchError(f"strengths must be finite numbers, got {list(strengths)}")
    return values


def _source_activations(model: LoadedModel, site, sources: Sequence[RenderedItem]) -> list[torch.Tensor]:
    """Each source item's activations at the site ([n_tokens, d_in] per item)."""
    out: list[torch.Tensor] = []
    pad_id = model.tokenizer.pad_token_id or 0
    for start in range(0, len(sources), 32):
        chunk = sources[start : start + 32]
        input_ids, attention = pad_batch(chunk, pad_id)
        with torch.no_grad(), model.lm.trace({"input_ids": input_ids, "attention_mask": attention},
                                             remote=model.spec.remote) as tracer:
            envoy = model.envoy(site)
            value = envoy.output[0] if isinstance(envoy.output, tuple) else envoy.output
            saved = value.save()
            tracer.stop()
        for row, item in enumerate(chunk):
            out.append(saved[row, : item.n_tokens].detach())
    return out


def _patch_sources(edit: Patch, items: Sequence[RenderedItem], source_acts: Sequence[torch.Tensor],
                   width: int) -> torch.Tensor:
    """The patching source of every row, aligned with the edited items (``[rows, width, d_in]``)."""
    source = torch.zeros(len(items), width, source_acts[0].shape[-1], dtype=source_acts[0].dtype)
    for row, item in enumerate(items):
        src = source_acts[row]
        if edit.positions == "last_prompt_token":
            source[row, item.prompt_length - 1] = src[-1]
        else:
            n = min(item.n_tokens, src.shape[0])
            source[row, :n] = src[:n]
    return source


def _edit_site(model: LoadedModel, site, edit: Edit, sae: LoadedSAE | None, mask: torch.Tensor,
               row_strengths: torch.Tensor, source: torch.Tensor | None) -> None:
    """Inside a trace: replace the site's output by its edited version (``mask`` ``[rows, pos]``)."""
    envoy = model.envoy(site)
    acts = envoy.output[0] if isinstance(envoy.output, tuple) else envoy.output
    if hasattr(edit, "apply"):
        new = edit.apply(acts, mask, row_strengths, source)
    elif isinstance(edit, Ablation):
        new = ablate(acts, sae, edit, mask, row_strengths)
    elif isinstance(edit, Steering):
        new = steer(acts, edit, row_strengths, mask)
    else:
        weight = (row_strengths[:, None, None] * mask[..., None]).to(acts.dtype)
        new = acts + weight * (source.to(acts.dtype) - acts)
    if isinstance(envoy.output, tuple):
        envoy.output = (new, *envoy.output[1:])
    else:
        envoy.output = new


def _edited_forward(
    model: LoadedModel,
    items: Sequence[RenderedItem],
    row_strengths: torch.Tensor,
    edit: Edit | None,
    sae: LoadedSAE | None,
    site,
    read_positions: torch.Tensor | None,
    source_acts: Sequence[torch.Tensor] | None = None,
    item_ids: Sequence[str] | None = None,
) -> torch.Tensor:
    """One batched forward pass with the edit applied row by row.

    Returns logits at ``read_positions`` (``[rows, vocab]``), or at every position
    (``[rows, width, vocab]``) when ``read_positions`` is None.
    """
    pad_id = model.tokenizer.pad_token_id or 0
    input_ids, attention = pad_batch(items, pad_id)
    width = input_ids.shape[1]
    rows = torch.arange(len(items))
    with torch.no_grad(), model.lm.trace({"input_ids": input_ids, "attention_mask": attention},
                                         remote=model.spec.remote):
        if edit is not None:
            source = _patch_sources(edit, items, source_acts, width) if _is_patch(edit) else None
            _edit_site(model, site, edit, sae, _masks(items, getattr(edit, "positions", "all"), width), row_strengths,
                       source)
        if read_positions is None:
            logits = model.lm.lm_head.output.save()
        else:
            # unembed only the positions that are read ([rows, 1, d_model], not [rows, width, d_model]):
            # the full unembedding was a fifth of the pass on a 49k vocabulary
            hidden = model.lm.lm_head.input
            model.lm.lm_head.input = hidden[rows, read_positions][:, None]
            logits = model.lm.lm_head.output[:, 0].save()
    logits = logits.float()
    finite = torch.isfinite(logits.reshape(len(items), -1)).all(dim=1)
    if not finite.all():
        bad = [item_ids[i] if item_ids else f"row {i}" for i in torch.nonzero(~finite).flatten().tolist()]
        raise WorkbenchError(f"the model produced NaN or inf logits under this edit for: {', '.join(bad)}; "
                             "lower the strength or check the SAE")
    return logits


def _is_patch(edit) -> bool:
    return isinstance(edit, Patch) or getattr(edit, "source", None) is not None


def _check_patch(edit: Edit | None, items: Sequence[RenderedItem]) -> None:
    if not _is_patch(edit):
        return
    if len(edit.source) != len(items):
        raise WorkbenchError(f"patching needs one source item per edited item ({len(edit.source)} vs {len(items)})")
    if edit.positions not in ("last_prompt_token", "all", "answer"):
        raise WorkbenchError("patching positions must be last_prompt_token, all or answer")
    if edit.positions != "last_prompt_token":
        for item, source in zip(items, edit.source):
            if item.n_tokens != source.n_tokens:
                raise WorkbenchError("patching all positions needs pairs of equal length; use last_prompt_token")


def edited_logits(
    model: LoadedModel,
    items: Sequence[RenderedItem],
    edit: Edit | None = None,
    *,
    sae: LoadedSAE | None = None,
    site: str | None = None,
    strengths: Sequence[float] = (1.0,),
    batch_rows: int = 64,
    item_ids: Sequence[str] | None = None,
    on_progress=None,
) -> torch.Tensor:
    """Next-token logits at each item's last prompt token under ``edit`` at every strength.

    Returns ``[n_items, n_strengths, vocab]``. All (item, strength) rows are batched together,
    ``batch_rows`` per forward pass, so a sweep of k strengths over n items costs about
    ``k * n / batch_rows`` passes. Strength 0 is the unedited model for every kind of edit.
    """
    strengths_t = check_strengths(strengths)
    site_obj = _site_for(model, edit, sae, site)
    _check_patch(edit, items)
    source_acts = _source_activations(model, site_obj, edit.source) if _is_patch(edit) else None
    rows = sweep_rows(items, len(strengths_t))
    out = torch.zeros(len(items), len(strengths_t), model.vocab_size)
    for start in range(0, len(rows), batch_rows):
        chunk = rows[start : start + batch_rows]
        logits = _edited_forward(
            model, [items[i] for i, _ in chunk], strengths_t[[s for _, s in chunk]], edit, sae, site_obj,
            torch.tensor([items[i].prompt_length - 1 for i, _ in chunk]),
            [source_acts[i] for i, _ in chunk] if source_acts is not None else None,
            [item_ids[i] for i, _ in chunk] if item_ids else None,
        )
        for row, (i, s) in enumerate(chunk):
            out[i, s] = logits[row]
        if on_progress:
            on_progress(min(start + batch_rows, len(rows)), len(rows))
    return out


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
    """``edited_logits`` with one of ablation / steering / patching given by keyword.

    Steering is applied at each given strength; ablation and patching at full strength
    (their rows repeat for each strength given).
    """
    check_strengths(strengths)
    if steering is not None:
        return edited_logits(model, items, steering, sae=sae, strengths=strengths, batch_rows=batch_rows)
    edit: Edit | None = ablation
    if patch_from is not None:
        edit = Patch(source=tuple(patch_from))
    logits = edited_logits(model, items, edit, sae=sae, site=patch_site, strengths=(1.0,), batch_rows=batch_rows)
    return logits.expand(-1, len(strengths), -1).clone()


def _stop_ids(tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    return {i for i in ids if isinstance(i, int) and i >= 0}


def edited_generate(
    model: LoadedModel,
    items: Sequence[RenderedItem],
    edit: Edit | None = None,
    *,
    sae: LoadedSAE | None = None,
    site: str | None = None,
    strengths: Sequence[float] = (1.0,),
    max_new_tokens: int = 6,
    batch_rows: int = 64,
    on_progress=None,
) -> list[list[str]]:
    """Greedy answers under the edit at every strength: ``answers[item][strength]``.

    The edit acts on the prompt and on every generated token its position rule selects (``answer``,
    ``assistant`` and ``all`` cover the generated tokens). Decoding uses the key-value cache: each
    step runs one new token per row.
    """
    strengths_t = check_strengths(strengths)
    site_obj = _site_for(model, edit, sae, site)
    _check_patch(edit, items)
    source_acts = _source_activations(model, site_obj, edit.source) if _is_patch(edit) else None
    stop = _stop_ids(model.tokenizer)
    rows = sweep_rows(items, len(strengths_t))
    answers = [[""] * len(strengths_t) for _ in items]
    for start in range(0, len(rows), batch_rows):
        chunk = rows[start : start + batch_rows]
        tokens = _generate_rows(
            model, [items[i] for i, _ in chunk], strengths_t[[s for _, s in chunk]], edit, sae, site_obj,
            [source_acts[i] for i, _ in chunk] if source_acts is not None else None, max_new_tokens, stop)
        for (i, s), generated in zip(chunk, tokens):
            answers[i][s] = model.tokenizer.decode(generated, skip_special_tokens=True).strip()
        if on_progress:
            on_progress(min(start + batch_rows, len(rows)), len(rows))
    return answers


def _generate_rows(model: LoadedModel, items: Sequence[RenderedItem], row_strengths: torch.Tensor, edit: Edit | None,
                   sae: LoadedSAE | None, site, source_acts: Sequence[torch.Tensor] | None, max_new_tokens: int,
                   stop: set[int]) -> list[list[int]]:
    """Greedy tokens of one batch of rows, with the key-value cache: the prompts run once (right
    padded), then one new token per row and step, at its own position. The edit acts on the prompt
    in the first pass and on each new token as it is generated, so the result equals re-running the
    whole sequence with the edit at every step."""
    pad_id = model.tokenizer.pad_token_id or 0
    input_ids, attention = pad_batch(items, pad_id)
    width = input_ids.shape[1]
    n_rows = len(items)
    lengths = torch.tensor([item.n_tokens for item in items])
    rule = getattr(edit, "positions", "all")
    generated: list[list[int]] = [[] for _ in items]
    finished = [False] * n_rows
    cache = None
    position_ids = None
    read = lengths - 1
    mask = _masks(items, rule, width) if edit is not None else None
    # whether the rule selects a generated token: the same for every step (an assistant token after the prompt)
    generated_selected = torch.stack([
        position_mask(RenderedItem(input_ids=item.input_ids + [0], token_strings=item.token_strings + [""],
                                   roles=item.roles + [ROLE_INDEX["assistant"]], prompt_length=item.prompt_length),
                      rule)[-1:] for item in items])  # [rows, 1]
    source = _patch_sources(edit, items, source_acts, width) if _is_patch(edit) else None
    for step in range(max_new_tokens):
        with torch.no_grad(), model.lm.trace({"input_ids": input_ids, "attention_mask": attention},
                                             position_ids=position_ids, cache=cache, use_cache=True,
                                             remote=model.spec.remote):
            if edit is not None and bool(mask.any()):
                _edit_site(model, site, edit, sae, mask, row_strengths, source)
            hidden = model.lm.lm_head.input
            model.lm.lm_head.input = hidden[torch.arange(n_rows), read][:, None]
            logits = model.lm.lm_head.output[:, 0].save()
            output = model.lm.output.save()
        if not torch.isfinite(logits).all():
            raise WorkbenchError("the model produced NaN or inf logits under this edit while generating; "
                                 "lower the strength or check the SAE")
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
        # the next pass: each row's new token at its own position (after its prompt and answer so far)
        cache = output.past_key_values
        position_ids = (lengths + step)[:, None]
        input_ids = next_tokens[:, None]
        attention = torch.cat([attention, torch.ones(n_rows, 1, dtype=attention.dtype)], dim=1)
        read = torch.zeros(n_rows, dtype=torch.long)
        if edit is not None:
            mask = generated_selected
            if source is not None:  # patching: only positions the source has
                covered = torch.tensor([int(lengths[row]) + step < len(source_acts[row]) for row in range(n_rows)])
                mask = mask & covered[:, None]
                source = torch.zeros(n_rows, 1, source.shape[-1], dtype=source.dtype)
                for row in range(n_rows):
                    if bool(mask[row, 0]):
                        source[row, 0] = source_acts[row][int(lengths[row]) + step]
    return generated


def all_position_log_probs(
    model: LoadedModel,
    items: Sequence[RenderedItem],
    edit: Edit | None = None,
    *,
    sae: LoadedSAE | None = None,
    site: str | None = None,
    strengths: Sequence[float] = (1.0,),
    batch_rows: int = 16,
) -> list[torch.Tensor]:
    """Log-probabilities of the next token at every position: per item ``[n_strengths, n_tokens, vocab]``
    (for side effects on neutral text)."""
    strengths_t = check_strengths(strengths)
    site_obj = _site_for(model, edit, sae, site)
    rows = [(i, s) for i in range(len(items)) for s in range(len(strengths_t))]
    out = [torch.zeros(len(strengths_t), item.n_tokens, model.vocab_size) for item in items]
    for start in range(0, len(rows), batch_rows):
        chunk = rows[start : start + batch_rows]
        logits = _edited_forward(model, [items[i] for i, _ in chunk], strengths_t[[s for _, s in chunk]],
                                 edit, sae, site_obj, None)
        for row, (i, s) in enumerate(chunk):
            out[i][s] = torch.log_softmax(logits[row, : items[i].n_tokens], dim=-1)
    return out
