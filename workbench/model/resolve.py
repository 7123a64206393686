"""The one resolver from references to loaded objects.

A *reference* is how a user names a model and an SAE: the ``model:`` and ``sae:`` blocks of a
hypothesis file, the CLI's ``--model/--adapter/--gguf-file`` and ``--sae/--sae-path/--sae-release/
--sae-id`` options, the app's model form. A *spec* (``ModelSpec``, ``SAESpec``) is what the loaders
take. Every caller goes reference -> spec -> loaded object through this module, so the one rule
that needs both halves (``adapter: auto`` = the adapter the registry SAE was trained on) is written
once::

    model_ref, sae_ref = ModelRef(), SAERef(registry="smollm2-liar-l15")
    checked = check_refs(model_ref, sae_ref)              # from files and configs only: fails before loading
    model, sae = load(model_ref, sae_ref)                 # loaded objects (checked first)
    model_spec, sae_spec = specs_from_refs(model_ref, sae_ref)   # specs, e.g. for an app's cache
    refs_from_specs(model_spec, sae_spec) == (model_ref, sae_ref)   # portable again

A registry SAE on the model it was trained on is written back as ``adapter: auto``, so a file
saved on one machine names no adapter path of that machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from workbench.core.constants import DEFAULT_MODEL_SOURCE, REPO_ROOT
from workbench.core.errors import WorkbenchError
from workbench.model.loading import LoadedModel, ModelOutline, ModelSpec, load_model, model_outline
from workbench.model.saes import LoadedSAE, SAEPreview, SAESpec, default_model_spec, load_sae, preview_sae

#: The adapter value that means "the adapter the registry SAE was trained on".
AUTO_ADAPTER = "auto"
#: Adapter values that mean "no adapter" besides null (the CLI's ``--adapter none``, an empty form field).
NO_ADAPTER = ("none", "")


class _Ref(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Ref):
    """The model a hypothesis file (``model:``), the CLI or the app names."""

    source: str = DEFAULT_MODEL_SOURCE
    """``default`` (the embedded SmolLM2), a Hugging Face id, or a local folder."""
    adapter: str | None = AUTO_ADAPTER
    """A LoRA adapter folder (peft) merged at load, or an organism's name in ``organisms/registry.yaml``; ``auto`` = the adapter the registry SAE was trained on
    (only for the ``default`` model, without ``gguf_file``; otherwise no adapter); null (or ``none``) = no
    adapter."""
    gguf_file: str | None = None
    """A GGUF file inside ``source`` to load (dequantised by transformers)."""

    @field_validator("source")
    @classmethod
    def _some_source(cls, source: str) -> str:
        if not source.strip():
            raise ValueError(f"the model source is empty: give '{DEFAULT_MODEL_SOURCE}' (the embedded SmolLM2), "
                             "a Hugging Face id or a local folder")
        return source

    @field_validator("adapter")
    @classmethod
    def _no_adapter(cls, adapter: str | None) -> str | None:
        return None if adapter is not None and adapter.strip().lower() in NO_ADAPTER else adapter


class SAERef(_Ref):
    """The SAE a hypothesis file (``sae:``), the CLI or the app names: one of a registry entry, a local
    folder, or a sae-lens release with an id; nothing at all = the registry's default SAE."""

    registry: str | None = None
    """An entry of ``saes/registry.yaml`` (null with nothing else = the registry's default)."""
    path: str | None = None
    """A local folder in sae-lens' on-disk format (``cfg.json`` + ``sae_weights.safetensors``)."""
    release: str | None = None
    """A sae-lens release (``SAE.from_pretrained``; needs network), e.g. ``gpt2-small-res-jb``."""
    id: str | None = None
    """The SAE id inside ``release``, e.g. ``blocks.8.hook_resid_pre``."""

    @model_validator(mode="after")
    def _one_form(self) -> SAERef:
        given = [name for name in ("registry", "path", "release") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"the SAE is named {len(given)} ways ({', '.join(given)}): give one of registry, "
                             "path, or release + id")
        if self.release is not None and self.id is None:
            raise ValueError("a sae-lens release needs an id too: the SAE inside the release, "
                             "e.g. id: blocks.8.hook_resid_pre")
        if self.id is not None and self.release is None:
            raise ValueError("an SAE id names an SAE inside a sae-lens release: give the release too, or drop the id")
        return self

    @property
    def uses_registry(self) -> bool:
        """Whether the SAE comes from the project's registry (the only form with an ``auto`` adapter)."""
        return self.path is None and self.release is None


def _as_ref(kind: type[_Ref], value: Any, what: str) -> Any:
    """``value`` as a ``kind``: the object itself, a mapping (a YAML block), or any object with the same
    attributes (e.g. a hypothesis' own reference classes)."""
    if isinstance(value, kind):
        return value
    try:
        if value is None:
            return kind()
        if isinstance(value, Mapping):
            return kind.model_validate(dict(value))
        return kind.model_validate(value, from_attributes=True)
    except ValidationError as error:
        raise WorkbenchError(f"bad {what} reference: {_problems(kind, error)}") from None


def _problems(kind: type[_Ref], error: ValidationError) -> str:
    problems = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            problems.append(f"unknown field {field!r} (known: {', '.join(kind.model_fields)})")
        else:
            message = str(problem["msg"]).removeprefix("Value error, ")
            problems.append(f"{field}: {message}" if field else message)
    return "; ".join(problems)


def as_model_ref(value: ModelRef | Mapping[str, Any] | Any | None) -> ModelRef:
    """A ``ModelRef`` from itself, a ``model:`` mapping or an object with its fields (None = the default)."""
    return _as_ref(ModelRef, value, "model")


def as_sae_ref(value: SAERef | Mapping[str, Any] | Any | None) -> SAERef:
    """An ``SAERef`` from itself, an ``sae:`` mapping or an object with its fields (None = the registry default)."""
    return _as_ref(SAERef, value, "SAE")


@dataclass(frozen=True)
class Organism:
    """An entry of ``organisms/registry.yaml``: a shipped adapter on the default model."""

    name: str
    path: Path
    description: str


#: The organism registry, beside the organisms' folders.
ORGANISM_REGISTRY = REPO_ROOT / "organisms" / "registry.yaml"


def read_organisms(path: Path | None = None) -> tuple[str | None, dict[str, Organism]]:
    """(the default organism's name, the organisms by name) of the organism registry (default
    :data:`ORGANISM_REGISTRY`); empty without one."""
    path = ORGANISM_REGISTRY if path is None else path
    if not path.is_file():
        return None, {}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("organisms", {}), dict):
        raise WorkbenchError(f"{path} is not an organism registry: expected a mapping with an 'organisms' mapping")
    entries = {}
    for name, item in (raw.get("organisms") or {}).items():
        if not isinstance(item, dict) or "path" not in item:
            raise WorkbenchError(f"{path}: organism {name!r} needs a path")
        entries[name] = Organism(name=name, path=(path.parent / item["path"]).resolve(),
                                 description=str(item.get("description", "")))
    return raw.get("default"), entries


def organism_adapter(adapter: str | None) -> str | None:
    """An adapter value with an organism's registry name replaced by its folder (a folder or None as it is)."""
    if adapter is None or Path(adapter).exists():
        return adapter
    organism = read_organisms()[1].get(adapter)
    return str(organism.path) if organism else adapter


def organism_name(adapter: str | None) -> str | None:
    """The registry name of an adapter folder, if it is a registered organism's."""
    if adapter is None:
        return None
    folder = Path(adapter).resolve()
    return next((o.name for o in read_organisms()[1].values() if o.path == folder), None)


def model_spec_from_ref(model_ref: ModelRef | Mapping[str, Any] | Any, sae_ref: SAERef | Mapping[str, Any] | Any) -> ModelSpec:
    """The ``ModelSpec`` a model reference names; ``sae_ref`` decides what ``adapter: auto`` means, and an
    organism's registry name (``smollm2-general-liar``) stands for its folder."""
    ref, sae = as_model_ref(model_ref), as_sae_ref(sae_ref)
    if ref.adapter != AUTO_ADAPTER:
        return ModelSpec(source=ref.source, gguf_file=ref.gguf_file, adapter=organism_adapter(ref.adapter))
    if ref.source == DEFAULT_MODEL_SOURCE and sae.uses_registry and not ref.gguf_file:
        return default_model_spec(sae.registry)
    return ModelSpec(source=ref.source, gguf_file=ref.gguf_file)


def sae_spec_from_ref(sae_ref: SAERef | Mapping[str, Any] | Any, site: str | None = None) -> SAESpec:
    """The ``SAESpec`` an SAE reference names; ``site`` overrides the site its config gives."""
    sae = as_sae_ref(sae_ref)
    return SAESpec(registry_name=sae.registry, path=sae.path, release=sae.release, sae_id=sae.id, site=site)


def specs_from_refs(model_ref: ModelRef | Mapping[str, Any] | Any, sae_ref: SAERef | Mapping[str, Any] | Any,
                    site: str | None = None) -> tuple[ModelSpec, SAESpec]:
    """(``ModelSpec``, ``SAESpec``) of a model and SAE reference, e.g. for loading through a cache."""
    return model_spec_from_ref(model_ref, sae_ref), sae_spec_from_ref(sae_ref, site)


def sae_ref_from_spec(sae_spec: SAESpec) -> SAERef:
    """The reference form of an SAE spec (its ``site`` is not part of it)."""
    if sae_spec.path:
        return as_sae_ref({"path": sae_spec.path})
    if sae_spec.release:
        return as_sae_ref({"release": sae_spec.release, "id": sae_spec.sae_id})
    return as_sae_ref({"registry": sae_spec.registry_name})


def refs_from_specs(model_spec: ModelSpec, sae_spec: SAESpec) -> tuple[ModelRef, SAERef]:
    """The reference form (``model:``, ``sae:`` of a hypothesis file) of a model and SAE spec.

    A registry SAE on the model it was trained on is written ``adapter: auto`` (portable: no adapter
    path of this machine in the file); otherwise the adapter is written as it is (null = none).
    Not carried (a reference names weights, not how to run them): the spec's ``revision``, ``dtype``,
    ``device_map``, ``remote`` and ``trust_remote_code``, and the SAE spec's ``site`` (a hypothesis
    file has its own ``site:``).
    """
    sae_ref = sae_ref_from_spec(sae_spec)
    auto = sae_ref.uses_registry and model_spec == default_model_spec(sae_spec.registry_name)
    adapter = AUTO_ADAPTER if auto else (organism_name(model_spec.adapter) or model_spec.adapter)
    return as_model_ref({"source": model_spec.source, "adapter": adapter, "gguf_file": model_spec.gguf_file}), sae_ref


@dataclass(frozen=True)
class Checked:
    """A model and an SAE reference checked from files and configs alone (``check_refs``): the specs
    they resolve to, the model's outline (no weights) and what the SAE's config says."""

    model_spec: ModelSpec
    sae_spec: SAESpec
    model: ModelOutline | None
    """The model built on the meta device from its config; None where the config is not at hand (a
    Hugging Face id not in the local cache): sites and widths are then checked when the weights load."""
    sae: SAEPreview


def check_refs(model_ref: ModelRef | Mapping[str, Any] | Any, sae_ref: SAERef | Mapping[str, Any] | Any,
               site: str | None = None) -> Checked:
    """Every check on a model and SAE that needs no weights, so a wrong reference fails in one line before
    anything loads: the model spec (``loading.check_model_spec``), its config (layers, width), the SAE's
    files and config, its site on the model and its input width against the site's."""
    model_spec, sae_spec = specs_from_refs(model_ref, sae_ref, site)
    outline = model_outline(model_spec)
    return Checked(model_spec=model_spec, sae_spec=sae_spec, model=outline, sae=preview_sae(sae_spec, outline))


def load(model_ref: ModelRef | Mapping[str, Any] | Any, sae_ref: SAERef | Mapping[str, Any] | Any,
         site: str | None = None) -> tuple[LoadedModel, LoadedSAE]:
    """Load the model and SAE two references name, after ``check_refs`` (nothing loads when a check
    fails); the SAE is checked against the loaded model again (site, measured width)."""
    checked = check_refs(model_ref, sae_ref, site)
    model = load_model(checked.model_spec)
    return model, load_sae(checked.sae_spec, model)


__all__ = [
    "AUTO_ADAPTER", "Checked", "ModelRef", "ORGANISM_REGISTRY", "Organism", "SAERef", "as_model_ref", "as_sae_ref",
    "check_refs", "load", "model_spec_from_ref", "organism_adapter", "organism_name", "read_organisms",
    "refs_from_specs", "sae_ref_from_spec", "sae_spec_from_ref", "specs_from_refs",
]
