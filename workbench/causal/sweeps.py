"""Batched edited forward passes: a prepared edit (``causal.edits``) at a site, over items and a
sweep of strengths, in as few passes as the rows allow. The experiment engine calls these.

Every (item, strength) pair is one *row*; rows are batched ``batch_rows`` per pass, items of similar
length together and every strength of an item next to each other (``sweep_rows``). Edits act only
through ``edit.apply(acts, mask, strengths, source)``; the mask comes from the position rule
(``core.positions``), which never selects the attention sink.

Prefix reuse: the layers before the edit site compute the same thing for every strength of an item.
When the site is the output of a decoder layer ``L`` and the sweep has more than one strength, a
chunk of rows runs in two passes: pass 1 runs the chunk's distinct items up to the site and stops
(``n`` rows through layers ``0..L``); pass 2 runs the rows with layers ``0..L`` skipped (nnsight's
``Envoy.skip``), layer ``L`` returning the stored activation repeated per strength and edited, so
only the embedding and layers ``L+1..`` run per row (``n * k`` rows). Other sites (an attention or
MLP submodule, a layer's input) and remote models (where the activations would cross the network
twice) run the full forward with the edit written at the site. Both paths give the same logits
within float rounding (tested).

The lm head runs only at the positions that are read (the full unembedding of a large vocabulary was
a fifth of a pass).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from nnsight import save

from workbench.causal.edits import Patch, PreparedEdit
from workbench.core.errors import WorkbenchError
from workbench.core.positions import ROLE_INDEX, select_positions
from workbench.model.generation import greedy_decode, stop_ids
from workbench.model.loading import LoadedModel
from workbench.model.rendering import RenderedItem, pad_batch
from workbench.model.sites import Site
from workbench.model.tracing import read_site, run_trace, write_site

Progress = Callable[[int, int], None]
"""``on_progress(rows done, rows in all)``."""


# ----------------------------------------------------------------------------- rows and checks


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


def _resolve_site(model: LoadedModel, edit: PreparedEdit | None, site: str | Site | None) -> Site | None:
    """The edit's site as a ``Site``; ``None`` without an edit."""
    if edit is None:
        return None
    if site is None:
        raise WorkbenchError("an edit needs a site: pass site= (a site name such as 'model.layers.15', or the "
                             "SAE's site for a feature edit)")
    resolved = model.site(site) if isinstance(site, str) else site
    sae_site = getattr(edit, "sae_site", None)  # feature edits: the site their SAE reads
    if sae_site is not None and sae_site.module_path != resolved.module_path:
        raise WorkbenchError(f"the edit's SAE reads {sae_site.name} but the edit is at {resolved.name}: "
                             "edit features at their SAE's site")
    return resolved


def _check_patch(edit: PreparedEdit | None, items: Sequence[RenderedItem]) -> None:
    if not isinstance(edit, Patch):
        return
    if edit.source is None or len(edit.source) != len(items):
        n_sources = 0 if edit.source is None else len(edit.source)
        raise WorkbenchError(f"patching needs one source item per edited item ({n_sources} vs {len(items)})")
    if edit.positions != "last_prompt_token":
        for item, source in zip(items, edit.source):
            if item.n_tokens != source.n_tokens:
                raise WorkbenchError(f"patching {edit.positions} positions needs pairs of equal length (token by "
                                     "token); use last_prompt_token")


# ----------------------------------------------------------------------------- masks and patch sources


def _edit_mask(items: Sequence[RenderedItem], rule: str, positions: torch.Tensor) -> torch.Tensor:
    """Which tokens of a pass the rule edits (``[rows, pos]`` bool). ``positions`` are absolute
    (``-1`` = padding); positions past an item's tokens are generated tokens (assistant role)."""
    roles = torch.full(positions.shape, ROLE_INDEX["assistant"], dtype=torch.long)
    for row, item in enumerate(items):
        known = (positions[row] >= 0) & (positions[row] < item.n_tokens)
        roles[row, known] = torch.tensor(item.roles, dtype=torch.long)[positions[row, known]]
    prompt_length = torch.tensor([item.prompt_length for item in items])[:, None]
    return select_positions(rule, positions, roles, prompt_length) & (positions >= 0)


def _padded_positions(items: Sequence[RenderedItem], width: int) -> torch.Tensor:
    """Absolute positions of a right-padded batch (``[rows, width]``, ``-1`` on padding)."""
    positions = torch.arange(width)[None].expand(len(items), width)
    lengths = torch.tensor([item.n_tokens for item in items])[:, None]
    return torch.where(positions < lengths, positions, torch.full_like(positions, -1))


def _source_activations(model: LoadedModel, site: Site, sources: Sequence[RenderedItem]) -> list[torch.Tensor]:
    """Each source item's activations at the site (``[n_tokens, d]`` per item)."""
    out: list[torch.Tensor] = []
    for start in range(0, len(sources), 32):
        chunk = sources[start : start + 32]
        input_ids, attention = pad_batch(chunk, model.tokenizer.pad_token_id or 0)
        saved = run_trace(model, input_ids, attention, lambda _tracer: read_site(model, site).save(), stop=True)
        out += [saved[row, : item.n_tokens].detach() for row, item in enumerate(chunk)]
    return out


def _patch_source(rule: str, source_acts: Sequence[torch.Tensor],
                  positions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The source activation at every edited token (``[rows, pos, d]``) and the mask narrowed to the
    tokens the source has. ``last_prompt_token`` takes the source's last token (pairs are aligned
    there); the other rules take the source's token at the same position."""
    lengths = torch.tensor([len(src) for src in source_acts])
    padded = source_acts[0].new_zeros(len(source_acts), int(lengths.max()), source_acts[0].shape[-1])
    for row, src in enumerate(source_acts):
        padded[row, : len(src)] = src
    if rule == "last_prompt_token":
        index = (lengths - 1)[:, None].expand_as(positions)
    else:
        mask = mask & (positions < lengths[:, None])
        index = positions.clamp(0, int(lengths.max()) - 1)
    source = padded[torch.arange(len(source_acts))[:, None], index]  # [rows, pos, d]
    return source, mask


class _RowEdit:
    """The edit of one batch of rows: its items, strengths and patch sources, applied to a pass
    whose tokens sit at ``positions``."""

    def __init__(self, edit: PreparedEdit, items: Sequence[RenderedItem], strengths: torch.Tensor,
                 source_acts: Sequence[torch.Tensor] | None) -> None:
        self.edit, self.items, self.strengths, self.source_acts = edit, items, strengths, source_acts

    def mask_and_source(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = _edit_mask(self.items, self.edit.positions, positions)
        if self.source_acts is None:
            return mask, None
        source, mask = _patch_source(self.edit.positions, self.source_acts, positions, mask)
        return mask, source

    def apply(self, acts: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The edited activation (``acts`` ``[rows, pos, d]``), or ``acts`` itself if nothing is selected."""
        mask, source = self.mask_and_source(positions)
        if not bool(mask.any()):
            return acts
        return self.edit.apply(acts, mask, self.strengths, source)

    def in_trace(self, model: LoadedModel, site: Site) -> Callable[[torch.Tensor], None]:
        """A step edit for ``greedy_decode``: edit the site inside the trace."""

        def step(positions: torch.Tensor) -> None:
            mask, source = self.mask_and_source(positions)
            if bool(mask.any()):
                write_site(model, site, self.edit.apply(read_site(model, site), mask, self.strengths, source))

        return step


# ----------------------------------------------------------------------------- forward passes


def _prefix_layer(model: LoadedModel, site: Site | None, n_strengths: int) -> int | None:
    """The decoder layer whose output is the site, when the prefix-reuse path applies; else None."""
    if site is None or n_strengths < 2 or model.spec.remote or site.reads_input or site.layer is None:
        return None
    if site.module_path != f"{model.layers_path}.{site.layer}":
        return None
    return site.layer


def _layer_envoy(model: LoadedModel, layer: int) -> Any:
    path = f"{model.layers_path}.{layer}"
    return model.envoy(Site(name=path, module_path=path, reads_input=False, layer=layer))


def _read_logits(model: LoadedModel, read_positions: torch.Tensor | None) -> Any:
    """Inside a trace: the saved logits at ``read_positions`` (``[rows, vocab]``), or everywhere."""
    if read_positions is None:
        return model.lm.lm_head.output.save()
    # unembed only the positions that are read ([rows, 1, d_model], not [rows, width, d_model])
    hidden = model.lm.lm_head.input
    model.lm.lm_head.input = hidden[torch.arange(len(read_positions)), read_positions][:, None]
    return model.lm.lm_head.output[:, 0].save()


def _full_forward(model: LoadedModel, items: Sequence[RenderedItem], row_edit: _RowEdit | None, site: Site | None,
                  read_positions: torch.Tensor | None) -> torch.Tensor:
    """One pass over the rows with the edit written at the site."""
    input_ids, attention = pad_batch(items, model.tokenizer.pad_token_id or 0)
    positions = _padded_positions(items, input_ids.shape[1])

    def body(_tracer: Any) -> Any:
        if row_edit is not None:
            write_site(model, site, row_edit.apply(read_site(model, site), positions))
        return _read_logits(model, read_positions)

    return run_trace(model, input_ids, attention, body, use_cache=False)


def _site_prefix(model: LoadedModel, site: Site, items: Sequence[RenderedItem]) -> list[torch.Tensor] | None:
    """Pass 1: each item's activation at the site (``[n_tokens, d]``), the pass stopped there; None if
    the layer returns a tuple (then its output cannot be replaced by a tensor, and the sweep runs the
    full forward)."""
    input_ids, attention = pad_batch(items, model.tokenizer.pad_token_id or 0)

    def body(_tracer: Any) -> Any:
        output = model.envoy(site).output
        # one saved object: only values marked with save come back out of a trace
        return save((output[0] if isinstance(output, tuple) else output, isinstance(output, tuple)))

    saved, is_tuple = run_trace(model, input_ids, attention, body, stop=True)
    if is_tuple:
        return None
    return [saved[row, : item.n_tokens].detach() for row, item in enumerate(items)]


def _suffix_forward(model: LoadedModel, layer: int, items: Sequence[RenderedItem], prefix: Sequence[torch.Tensor],
                    row_edit: _RowEdit | None, read_positions: torch.Tensor | None) -> torch.Tensor:
    """Pass 2: the rows with decoder layers ``0..layer`` skipped, layer ``layer`` returning the stored
    activation (``prefix``, one per row) edited; the embedding and the later layers run."""
    input_ids, attention = pad_batch(items, model.tokenizer.pad_token_id or 0)
    width = input_ids.shape[1]
    acts = prefix[0].new_zeros(len(items), width, prefix[0].shape[-1])  # [rows, width, d]
    for row, value in enumerate(prefix):
        acts[row, : len(value)] = value
    if row_edit is not None:
        acts = row_edit.apply(acts, _padded_positions(items, width))

    def body(_tracer: Any) -> Any:
        # every layer up to the site is skipped; what an earlier one returns only feeds a skipped layer
        for index in range(layer + 1):
            _layer_envoy(model, index).skip(acts)
        return _read_logits(model, read_positions)

    return run_trace(model, input_ids, attention, body, use_cache=False)


def _check_finite(logits: torch.Tensor, item_ids: Sequence[str] | None) -> torch.Tensor:
    logits = logits.float()
    finite = torch.isfinite(logits.reshape(len(logits), -1)).all(dim=1)
    if not finite.all():
        bad = [item_ids[i] if item_ids else f"row {i}" for i in torch.nonzero(~finite).flatten().tolist()]
        raise WorkbenchError(f"the model produced NaN or inf logits under this edit for: {', '.join(bad)}; "
                             "lower the strength or check the SAE")
    return logits


def _sweep(model: LoadedModel, items: Sequence[RenderedItem], edit: PreparedEdit | None, site: str | Site | None,
           strengths: Sequence[float], batch_rows: int, read_last_prompt: bool,
           item_ids: Sequence[str] | None, on_progress: Progress | None,
           consume: Callable[[list[tuple[int, int]], torch.Tensor], None]) -> None:
    """Run every (item, strength) row, ``batch_rows`` per pass, and hand each chunk's logits
    (``[rows, vocab]`` at the last prompt token, or ``[rows, width, vocab]``) to ``consume``."""
    strengths_t = check_strengths(strengths)
    site_obj = _resolve_site(model, edit, site)
    _check_patch(edit, items)
    source_acts = _source_activations(model, site_obj, edit.source) if isinstance(edit, Patch) else None
    layer = _prefix_layer(model, site_obj, len(strengths_t))
    rows = sweep_rows(items, len(strengths_t))
    rows_left = Counter(item for item, _ in rows)
    prefix: dict[int, torch.Tensor] = {}  # pass-1 activations of the items whose rows are not all done
    for start in range(0, len(rows), batch_rows):
        chunk = rows[start : start + batch_rows]
        chunk_items = [items[i] for i, _ in chunk]
        row_edit = None
        if edit is not None:
            row_edit = _RowEdit(edit, chunk_items, strengths_t[[s for _, s in chunk]],
                                [source_acts[i] for i, _ in chunk] if source_acts is not None else None)
        read = torch.tensor([item.prompt_length - 1 for item in chunk_items]) if read_last_prompt else None
        if layer is not None:
            missing = sorted({i for i, _ in chunk if i not in prefix}, key=lambda i: items[i].n_tokens)
            if missing:
                values = _site_prefix(model, site_obj, [items[i] for i in missing])
                if values is None:
                    layer = None
                else:
                    prefix.update(zip(missing, values))
        if layer is not None:
            logits = _suffix_forward(model, layer, chunk_items, [prefix[i] for i, _ in chunk], row_edit, read)
        else:
            logits = _full_forward(model, chunk_items, row_edit, site_obj, read)
        consume(chunk, _check_finite(logits, [item_ids[i] for i, _ in chunk] if item_ids else None))
        for i, _ in chunk:
            rows_left[i] -= 1
            if rows_left[i] == 0:
                prefix.pop(i, None)
        if on_progress:
            on_progress(min(start + batch_rows, len(rows)), len(rows))


# ----------------------------------------------------------------------------- public API


def edited_logits(
    model: LoadedModel,
    items: Sequence[RenderedItem],
    edit: PreparedEdit | None = None,
    *,
    site: str | Site | None = None,
    strengths: Sequence[float] = (1.0,),
    batch_rows: int = 64,
    item_ids: Sequence[str] | None = None,
    on_progress: Progress | None = None,
) -> torch.Tensor:
    """Next-token logits at each item's last prompt token under ``edit`` at ``site``, at every strength.

    Returns ``[n_items, n_strengths, vocab]``. All (item, strength) rows are batched together,
    ``batch_rows`` per forward pass, and the layers before the site run once per item (see the
    module docstring). For edits with ``identity_at_zero``, strength 0 is the unedited model.
    """
    out = torch.zeros(len(items), len(strengths), model.vocab_size)

    def consume(chunk: list[tuple[int, int]], logits: torch.Tensor) -> None:
        for row, (i, s) in enumerate(chunk):
            out[i, s] = logits[row]

    _sweep(model, items, edit, site, strengths, batch_rows, True, item_ids, on_progress, consume)
    return out


def all_position_log_probs(
    model: LoadedModel,
    items: Sequence[RenderedItem],
    edit: PreparedEdit | None = None,
    *,
    site: str | Site | None = None,
    strengths: Sequence[float] = (1.0,),
    batch_rows: int = 16,
) -> list[torch.Tensor]:
    """Log-probabilities of the next token at every position: per item ``[n_strengths, n_tokens, vocab]``
    (for side effects on neutral text)."""
    out = [torch.zeros(len(strengths), item.n_tokens, model.vocab_size) for item in items]

    def consume(chunk: list[tuple[int, int]], logits: torch.Tensor) -> None:
        for row, (i, s) in enumerate(chunk):
            out[i][s] = torch.log_softmax(logits[row, : items[i].n_tokens], dim=-1)

    _sweep(model, items, edit, site, strengths, batch_rows, False, None, None, consume)
    return out


def edited_generate(
    model: LoadedModel,
    items: Sequence[RenderedItem],
    edit: PreparedEdit | None = None,
    *,
    site: str | Site | None = None,
    strengths: Sequence[float] = (1.0,),
    max_new_tokens: int = 6,
    batch_rows: int = 64,
    on_progress: Progress | None = None,
) -> list[list[str]]:
    """Greedy answers under the edit at every strength: ``answers[item][strength]``.

    The edit acts on the prompt and on every generated token its position rule selects (``answer``,
    ``assistant`` and ``all`` cover the generated tokens), inside each step of the one greedy decoder
    (``model.generation.greedy_decode``, key-value cache), so the result equals re-running the whole
    sequence with the edit at every step.
    """
    strengths_t = check_strengths(strengths)
    site_obj = _resolve_site(model, edit, site)
    _check_patch(edit, items)
    source_acts = _source_activations(model, site_obj, edit.source) if isinstance(edit, Patch) else None
    stop = stop_ids(model.tokenizer)
    rows = sweep_rows(items, len(strengths_t))
    answers = [[""] * len(strengths_t) for _ in items]
    for start in range(0, len(rows), batch_rows):
        chunk = rows[start : start + batch_rows]
        chunk_items = [items[i] for i, _ in chunk]
        step_edit = None
        if edit is not None:
            row_edit = _RowEdit(edit, chunk_items, strengths_t[[s for _, s in chunk]],
                                [source_acts[i] for i, _ in chunk] if source_acts is not None else None)
            step_edit = row_edit.in_trace(model, site_obj)
        input_ids, attention = pad_batch(chunk_items, model.tokenizer.pad_token_id or 0)
        tokens = greedy_decode(model, input_ids, attention, max_new_tokens=max_new_tokens, stop=stop, edit=step_edit)
        for (i, s), generated in zip(chunk, tokens):
            answers[i][s] = model.tokenizer.decode(generated, skip_special_tokens=True).strip()
        if on_progress:
            on_progress(min(start + batch_rows, len(rows)), len(rows))
    return answers
