"""Capture of SAE feature activations over scenarios and free text, stored sparsely.

Data flow: items (scenarios with their responses, free texts) -> rendered tokens ->
batched nnsight traces reading each site -> ``sae.encode`` -> non-zero values only, in
CSR layout (one row per token). A capture is keyed by (model, SAEs, items, response
settings): asking twice returns the stored one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from workbench.core.constants import CAPTURE_META_FILENAME, CAPTURE_TOKENS_FILENAME, cache_dir
from workbench.core.errors import WorkbenchError
from workbench.core.positions import FIRST_POSITION, select_positions
from workbench.model.generation import generate_answers
from workbench.model.loading import LoadedModel
from workbench.model.rendering import RenderedItem, pad_batch, render_conversation, render_text
from workbench.model.saes import LoadedSAE
from workbench.model.tracing import read_site, run_trace

CAPTURE_FORMAT_VERSION = 1

ProgressCallback = Callable[[int, int], None]


class CapturedItem(BaseModel):
    """One captured conversation or text and where its tokens lie in the flat arrays."""

    model_config = ConfigDict(frozen=True)

    item_id: str
    """Scenario id, or ``text-N`` for free text."""
    kind: Literal["scenario", "text"]
    condition: str | None = None
    """The scenario's condition (``honest``/``lie``/``parrot``/``ignorant``); None for text."""
    fact_id: str | None = None
    split: str | None = None
    messages: list[dict[str, str]] | None = None
    """The chat messages (prompt) for scenarios."""
    text: str | None = None
    """The free text, for texts."""
    response: str | None = None
    """The assistant's response that was captured after the prompt (given or generated)."""
    response_generated: bool = False
    """True if the response was generated greedily by the model during capture."""
    prompt_length: int
    """Tokens of the prompt (the response starts at this position)."""
    token_start: int
    """Index of this item's first token in the capture's flat token arrays."""
    n_tokens: int


class CapturedSAE(BaseModel):
    """One SAE whose features were captured."""

    site: str
    identity: str
    d_sae: int
    spec: dict[str, Any]


class CaptureMeta(BaseModel):
    """Everything about a capture but its tensors (``capture.json``)."""

    version: int = CAPTURE_FORMAT_VERSION
    """Format version of this record."""
    key: str
    """Cache key: hash of model, SAEs, items and response settings."""
    model_spec: dict[str, Any]
    model_identity: str
    saes: list[CapturedSAE]
    items: list[CapturedItem]
    token_strings: list[str]
    """Decoded string of every token, in flat order."""
    seconds: float = 0.0
    """Wall time the capture took (activations only, not generation)."""
    generation_seconds: float = 0.0
    created_at: float = Field(default_factory=time.time)


@dataclass
class SiteActivations:
    """Feature activations at one site in CSR layout (rows = tokens)."""

    row_ptr: torch.Tensor  # [n_tokens + 1] int64
    features: torch.Tensor  # [nnz] int16 (d_sae <= 32767) or int32
    values: torch.Tensor  # [nnz] float32
    d_sae: int
    _rows: torch.Tensor | None = field(default=None, repr=False)

    @property
    def n_tokens(self) -> int:
        return int(self.row_ptr.numel() - 1)

    @property
    def rows(self) -> torch.Tensor:
        """Token index of every stored value ([nnz] int64)."""
        if self._rows is None:
            counts = self.row_ptr[1:] - self.row_ptr[:-1]
            self._rows = torch.repeat_interleave(torch.arange(self.n_tokens), counts)
        return self._rows

    def feature_values(self, feature: int) -> torch.Tensor:
        """Dense activation of one feature at every token ([n_tokens] float32)."""
        dense = torch.zeros(self.n_tokens)
        hit = self.features == feature
        dense[self.rows[hit]] = self.values[hit]
        return dense

    def dense_rows(self, token_indices: torch.Tensor) -> torch.Tensor:
        """Dense activations of chosen tokens ([len(token_indices), d_sae])."""
        out = torch.zeros(len(token_indices), self.d_sae)
        for out_row, token in enumerate(token_indices.tolist()):
            start, end = int(self.row_ptr[token]), int(self.row_ptr[token + 1])
            out[out_row, self.features[start:end].long()] = self.values[start:end]
        return out

    def stored_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.row_ptr, self.features, self.values))


@dataclass
class Capture:
    """Captured feature activations with the tokens and items they belong to."""

    meta: CaptureMeta
    token_ids: torch.Tensor  # [n_tokens] int32
    item_index: torch.Tensor  # [n_tokens] int32, index into meta.items
    positions: torch.Tensor  # [n_tokens] int32, position within the item
    roles: torch.Tensor  # [n_tokens] int8, index into core.positions.ROLES
    sites: dict[str, SiteActivations]
    path: Path | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.numel())

    @property
    def items(self) -> list[CapturedItem]:
        return self.meta.items

    def site(self, name: str) -> SiteActivations:
        if name not in self.sites:
            raise WorkbenchError(f"this capture has no site {name!r}; captured sites: {', '.join(self.sites)}")
        return self.sites[name]

    def item(self, item_id: str) -> CapturedItem:
        for item in self.meta.items:
            if item.item_id == item_id:
                return item
        raise WorkbenchError(f"no item {item_id!r} in this capture")

    def subset(self, keep: Callable[[CapturedItem], bool]) -> Capture:
        """A capture restricted to the items ``keep`` accepts (e.g. one split); not stored."""
        chosen = [i for i, item in enumerate(self.items) if keep(item)]
        if not chosen:
            raise WorkbenchError("no captured item matches the filter")
        token_index = torch.cat([
            torch.arange(self.items[i].token_start, self.items[i].token_start + self.items[i].n_tokens) for i in chosen
        ])
        items, start = [], 0
        for i in chosen:
            items.append(self.items[i].model_copy(update={"token_start": start}))
            start += self.items[i].n_tokens
        sites = {}
        for name, acts in self.sites.items():
            counts = (acts.row_ptr[1:] - acts.row_ptr[:-1])[token_index]
            value_index = torch.cat([torch.arange(int(acts.row_ptr[t]), int(acts.row_ptr[t + 1])) for t in token_index.tolist()])
            sites[name] = SiteActivations(
                row_ptr=torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]),
                features=acts.features[value_index], values=acts.values[value_index], d_sae=acts.d_sae,
            )
        remap = torch.full((len(self.items),), -1, dtype=torch.int32)
        remap[torch.tensor(chosen)] = torch.arange(len(chosen), dtype=torch.int32)
        meta = self.meta.model_copy(update={
            "items": items, "token_strings": [self.meta.token_strings[t] for t in token_index.tolist()],
        })
        return Capture(meta=meta, token_ids=self.token_ids[token_index],
                       item_index=remap[self.item_index[token_index].long()], positions=self.positions[token_index],
                       roles=self.roles[token_index], sites=sites)

    def position_mask(self, rule: str) -> torch.Tensor:
        """Which tokens a position rule (``core.positions``) selects ([n_tokens] bool); never the
        attention sink."""
        prompt_length = torch.tensor([item.prompt_length for item in self.meta.items])[self.item_index.long()]
        return select_positions(rule, self.positions.long(), self.roles.long(), prompt_length)


# ----------------------------------------------------------------------------- store


def default_store_root() -> Path:
    return cache_dir() / "captures"


def _write_capture(capture: Capture, folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
    try:
        save_file(
            {"token_ids": capture.token_ids, "item_index": capture.item_index,
             "positions": capture.positions, "roles": capture.roles},
            str(staging / CAPTURE_TOKENS_FILENAME),
        )
        for index, (site, acts) in enumerate(capture.sites.items()):
            save_file(
                {"row_ptr": acts.row_ptr, "features": acts.features, "values": acts.values},
                str(staging / f"site{index}.safetensors"),
                metadata={"site": site, "d_sae": str(acts.d_sae)},
            )
        (staging / CAPTURE_META_FILENAME).write_text(capture.meta.model_dump_json())
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_capture(folder: Path) -> Capture:
    """Load a stored capture folder."""
    meta_path = folder / CAPTURE_META_FILENAME
    if not meta_path.exists():
        raise WorkbenchError(f"no capture at {folder} (missing {CAPTURE_META_FILENAME})")
    meta = CaptureMeta.model_validate_json(meta_path.read_text())
    tokens = load_file(str(folder / CAPTURE_TOKENS_FILENAME))
    sites = {}
    for index, sae in enumerate(meta.saes):
        tensors = load_file(str(folder / f"site{index}.safetensors"))
        sites[sae.site] = SiteActivations(tensors["row_ptr"], tensors["features"], tensors["values"], sae.d_sae)
    return Capture(meta=meta, token_ids=tokens["token_ids"], item_index=tokens["item_index"],
                   positions=tokens["positions"], roles=tokens["roles"], sites=sites, path=folder)


# ----------------------------------------------------------------------------- capture


@dataclass(frozen=True)
class CaptureInput:
    """One thing to capture: a scenario-like record or a free text."""

    item_id: str
    kind: Literal["scenario", "text"]
    messages: list[dict[str, str]] | None = None
    text: str | None = None
    response: str | None = None
    condition: str | None = None
    fact_id: str | None = None
    split: str | None = None


def inputs_from_scenarios(scenarios: Sequence[Any]) -> list[CaptureInput]:
    return [
        CaptureInput(
            item_id=s.id, kind="scenario",
            messages=[{"role": m.role, "content": m.content} for m in s.messages],
            response=s.response, condition=str(getattr(s.condition, "value", s.condition)),
            fact_id=s.fact_id, split=str(getattr(s.split, "value", s.split)),
        )
        for s in scenarios
    ]


def inputs_from_texts(texts: Sequence[str], prefix: str = "text") -> list[CaptureInput]:
    return [CaptureInput(item_id=f"{prefix}-{i}", kind="text", text=t) for i, t in enumerate(texts)]


def capture_key(model: LoadedModel, saes: Sequence[LoadedSAE], inputs: Sequence[CaptureInput],
                generate_responses: bool, max_new_tokens: int, first_position: int = FIRST_POSITION) -> str:
    payload = {
        "format": CAPTURE_FORMAT_VERSION,
        "model": model.identity,
        "saes": [[sae.identity, sae.site.name] for sae in saes],
        "items": [[i.item_id, i.kind, i.messages, i.text, i.response, i.condition] for i in inputs],
        "generate": [generate_responses, max_new_tokens],
        "first_position": first_position,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _site_order(model: LoadedModel, saes: Sequence[LoadedSAE]) -> list[LoadedSAE]:
    """SAEs in the order their modules run (nnsight reads sites in execution order)."""
    order = {name: i for i, (name, _) in enumerate(model.hf_model.named_modules())}
    return sorted(saes, key=lambda s: (order[s.site.module_path], not s.site.reads_input))


def read_sites(model: LoadedModel, saes: Sequence[LoadedSAE], input_ids: torch.Tensor,
               attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Activations ``[batch, pos, d_in]`` at every SAE's site in one trace, stopped after the last."""
    # The body names sites only, not the SAEs: a remote trace serializes what the body uses.
    sites = [sae.site for sae in _site_order(model, saes)]

    def body(tracer: Any) -> dict[str, torch.Tensor]:
        return {site.name: read_site(model, site).save() for site in sites}

    return run_trace(model, input_ids, attention_mask, body, stop=True)


def feature_index_dtype(d_sae: int) -> torch.dtype:
    """The smallest integer type that holds every feature index (int16 up to 32767 features)."""
    return torch.int16 if d_sae <= torch.iinfo(torch.int16).max else torch.int32


def _sparse(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count per row, feature index, value) of the non-zeros of ``[n, d_sae]``."""
    nonzero = features != 0
    counts = nonzero.sum(dim=1)
    rows, cols = nonzero.nonzero(as_tuple=True)
    return counts, cols.to(feature_index_dtype(features.shape[1])), features[rows, cols].float()


def run_capture(
    model: LoadedModel,
    saes: Sequence[LoadedSAE],
    inputs: Sequence[CaptureInput],
    *,
    batch_size: int = 16,
    generate_responses: bool = True,
    max_new_tokens: int = 16,
    first_position: int = FIRST_POSITION,
    store_root: Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Capture:
    """Capture the SAEs' features over ``inputs``; return the stored capture if one exists.

    Scenarios without a response get the model's greedy response first
    (``generate_responses``), so answer-token statistics describe what the model said.
    Features at positions before ``first_position`` are not stored (``core.positions.FIRST_POSITION``:
    position 0 is the attention sink, where SAEs are not trained and their output means nothing);
    ``first_position=0`` stores them too (evidence shows them; position rules never select them).
    """
    if not saes:
        raise WorkbenchError("capture needs at least one SAE")
    if not inputs:
        raise WorkbenchError("nothing to capture: the scenario set and text list are empty")
    if len({s.site.name for s in saes}) != len(saes):
        raise WorkbenchError("two SAEs read the same site; capture them separately")
    ids = [i.item_id for i in inputs]
    if len(set(ids)) != len(ids):
        raise WorkbenchError("item ids must be unique within a capture")
    key = capture_key(model, saes, inputs, generate_responses, max_new_tokens, first_position)
    folder = (store_root or default_store_root()) / key
    if use_cache and (folder / CAPTURE_META_FILENAME).exists():
        return read_capture(folder)

    inputs = list(inputs)
    generated = [False] * len(inputs)
    generation_seconds = 0.0
    if generate_responses:
        missing = [i for i, item in enumerate(inputs) if item.kind == "scenario" and item.response is None]
        if missing:
            started = time.perf_counter()
            answers = generate_answers(model, [inputs[i].messages for i in missing],
                                       max_new_tokens=max_new_tokens, progress=progress)
            generation_seconds = time.perf_counter() - started
            for index, answer in zip(missing, answers):
                inputs[index] = CaptureInput(**{**inputs[index].__dict__, "response": answer})
                generated[index] = True

    started = time.perf_counter()
    tokenizer = model.tokenizer
    rendered: list[RenderedItem] = [
        render_conversation(tokenizer, item.messages or [], item.response) if item.kind == "scenario"
        else render_text(tokenizer, item.text or "")
        for item in inputs
    ]
    per_item: list[dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [{} for _ in inputs]
    order = sorted(range(len(inputs)), key=lambda i: rendered[i].n_tokens)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=len(inputs), desc="capturing", unit="item", disable=not progress)
    for done, batch in enumerate(batches):
        input_ids, attention_mask = pad_batch([rendered[i] for i in batch], pad_id)
        width = input_ids.shape[1]
        activations = read_sites(model, saes, input_ids, attention_mask)
        positions_in_batch = torch.arange(width).expand(len(batch), width)[attention_mask.bool()]
        for sae in saes:
            acts = activations[sae.site.name]  # [batch, pos, d_in]
            real = attention_mask.bool()
            flat = acts[real]  # [tokens in batch, d_in], row-major = item by item
            if not torch.isfinite(flat).all():
                bad = [inputs[batch[r]].item_id for r in range(len(batch)) if not torch.isfinite(acts[r][real[r]]).all()]
                raise WorkbenchError(f"non-finite activations at {sae.site.name} for item(s) {', '.join(bad)}")
            codes = sae.encode(flat)
            if first_position > 0:
                codes[positions_in_batch < first_position] = 0
            counts, cols, vals = _sparse(codes)
            lengths = [rendered[i].n_tokens for i in batch]
            token_bounds = torch.tensor([0] + lengths).cumsum(0)
            value_bounds = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
            for row, index in enumerate(batch):
                t0, t1 = int(token_bounds[row]), int(token_bounds[row + 1])
                v0, v1 = int(value_bounds[t0]), int(value_bounds[t1])
                per_item[index][sae.site.name] = (counts[t0:t1], cols[v0:v1], vals[v0:v1])
        bar.update(len(batch))
        if on_progress:
            on_progress(min((done + 1) * batch_size, len(inputs)), len(inputs))
    bar.close()

    sites = {}
    for sae in saes:
        counts = torch.cat([per_item[i][sae.site.name][0] for i in range(len(inputs))])
        sites[sae.site.name] = SiteActivations(
            row_ptr=torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]),
            features=torch.cat([per_item[i][sae.site.name][1] for i in range(len(inputs))]),
            values=torch.cat([per_item[i][sae.site.name][2] for i in range(len(inputs))]),
            d_sae=sae.d_sae,
        )
    items, token_strings, starts = [], [], 0
    for index, (item, rend) in enumerate(zip(inputs, rendered)):
        items.append(CapturedItem(
            item_id=item.item_id, kind=item.kind, condition=item.condition, fact_id=item.fact_id,
            split=item.split, messages=item.messages, text=item.text, response=item.response,
            response_generated=generated[index], prompt_length=rend.prompt_length,
            token_start=starts, n_tokens=rend.n_tokens,
        ))
        token_strings += rend.token_strings
        starts += rend.n_tokens
    capture = Capture(
        meta=CaptureMeta(
            key=key, model_spec=model.spec.to_dict(), model_identity=model.identity,
            saes=[CapturedSAE(site=s.site.name, identity=s.identity, d_sae=s.d_sae, spec=s.spec.to_dict()) for s in saes],
            items=items, token_strings=token_strings, seconds=time.perf_counter() - started,
            generation_seconds=generation_seconds,
        ),
        token_ids=torch.cat([torch.tensor(r.input_ids, dtype=torch.int32) for r in rendered]),
        item_index=torch.cat([torch.full((r.n_tokens,), i, dtype=torch.int32) for i, r in enumerate(rendered)]),
        positions=torch.cat([torch.arange(r.n_tokens, dtype=torch.int32) for r in rendered]),
        roles=torch.cat([torch.tensor(r.roles, dtype=torch.int8) for r in rendered]),
        sites=sites,
    )
    _write_capture(capture, folder)
    capture.path = folder
    return capture


__all__ = [
    "Capture", "CaptureInput", "CaptureMeta", "CapturedItem",
    "SiteActivations", "capture_key", "inputs_from_scenarios", "inputs_from_texts",
    "read_capture", "read_sites", "run_capture",
]
