"""Loading SAEs (sae-lens releases, local folders in sae-lens' on-disk format, entries of
the project registry), checking that they fit the loaded model, and encoding with them.

SAEs load through sae-lens, but they encode through ``SAEEncoder``: the encoder's tensors and plain
torch, built once at load from the sae-lens SAE. Edits run the encoder inside nnsight traces, and a
trace runs on NDIF with remote execution, where sae-lens is not installed: only torch code and
tensors can travel with it. One encoder serves both (``LoadedSAE.encode`` outside traces too), and
``tests/unit/test_saes.py`` holds it equal to sae-lens' own ``encode`` for every architecture it
supports (``ENCODER_ARCHITECTURES``); any other architecture is refused at load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import torch
import yaml

from workbench.core.constants import (
    SAE_CFG_FILENAME,
    SAE_IDENTITY_FILES,
    SAE_REGISTRY_FILENAME,
    SAE_WEIGHTS_FILENAME,
    saes_dir,
)
from workbench.core.errors import FeatureIndexError, SAELoadError, SiteError, WorkbenchError
from workbench.core.io import read_user_text
from workbench.core.constants import DEFAULT_MODEL_SOURCE
from workbench.model.identity import files_digest, v2_identity
from workbench.model.loading import LoadedModel, ModelOutline, ModelSpec
from workbench.model.sites import Site


@dataclass(frozen=True)
class SAESpec:
    """Which SAE to load: exactly one of a registry name, a local folder, or a release + id."""

    registry_name: str | None = None
    """An entry of ``saes/registry.yaml`` (``None`` with nothing else set = the registry default)."""
    path: str | None = None
    """A local folder in sae-lens' on-disk format (``cfg.json`` + ``sae_weights.safetensors``)."""
    release: str | None = None
    """A sae-lens release (``SAE.from_pretrained``; needs network), e.g. ``gpt2-small-res-jb``."""
    sae_id: str | None = None
    """The SAE id inside the release, e.g. ``blocks.8.hook_resid_pre``."""
    site: str | None = None
    """Override of the site the SAE reads (else taken from its config's hook name)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAESpec:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def describe(self) -> str:
        if self.path:
            return f"local:{self.path}"
        if self.release:
            return f"{self.release}/{self.sae_id}"
        return f"registry:{self.registry_name or 'default'}"


@dataclass(frozen=True)
class RegistryEntry:
    """One SAE shipped with the project."""

    name: str
    path: Path
    """Folder of the artifact (absolute, resolved against the SAEs folder)."""
    model: str
    """Model spec source the SAE was trained on (``default`` = embedded model)."""
    adapter: str | None
    """LoRA adapter folder the model had when the SAE was trained, if any (absolute, resolved
    against the registry's folder)."""
    site: str
    description: str


@dataclass(frozen=True)
class Registry:
    default: str | None
    entries: dict[str, RegistryEntry]


@cache
def _read_registry(path: Path, mtime: float) -> Registry:
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("saes", {}), dict):
        raise SAELoadError(f"{path} is not a valid SAE registry: expected a mapping with a 'saes' mapping")
    entries = {}
    for name, item in (raw.get("saes") or {}).items():
        try:
            entries[name] = RegistryEntry(
                name=name,
                path=(path.parent / item["path"]).resolve(),
                model=item.get("model", "default"),
                adapter=str((path.parent / item["adapter"]).resolve()) if item.get("adapter") else None,
                site=item["site"],
                description=item.get("description", ""),
            )
        except (KeyError, TypeError) as error:
            raise SAELoadError(f"{path}: entry {name!r} lacks field {error}; needs path and site") from error
    return Registry(default=raw.get("default"), entries=entries)


def read_registry(folder: Path | None = None) -> Registry:
    """The project's SAE registry (``saes/registry.yaml``); empty if there is none."""
    path = (folder or saes_dir()) / SAE_REGISTRY_FILENAME
    if not path.exists():
        return Registry(default=None, entries={})
    return _read_registry(path, path.stat().st_mtime)


def default_model_spec(sae_name: str | None = None) -> ModelSpec:
    """The model a registry SAE belongs to: the embedded default model with the adapter the SAE
    was trained on (the liar organism for the project's default SAE)."""
    registry = read_registry()
    entry = registry.entries.get(sae_name or registry.default or "")
    if entry is None or entry.model != DEFAULT_MODEL_SOURCE:
        return ModelSpec()
    return ModelSpec(adapter=entry.adapter)


def check_feature(feature: int, d_sae: int | None, site: str | None = None) -> int:
    """A feature index inside an SAE of ``d_sae`` features (``None``: width unknown yet, only the sign
    is checked), or a ``FeatureIndexError`` saying the range."""
    if feature < 0 or (d_sae is not None and feature >= d_sae):
        where = f" at {site}" if site else ""
        size = f"{d_sae} features (0 to {d_sae - 1})" if d_sae is not None else "features from 0 up"
        raise FeatureIndexError(f"feature {feature} is out of range: this SAE{where} has {size}")
    return feature


def check_sae_site(sae: Any, model: Any, site_name: str) -> None:
    """``site_name`` names, on ``model`` (loaded, or its outline), the site ``sae`` (loaded, or its
    preview) reads; else a ``SiteError`` (one that does not exist says what does). Unchecked while the
    SAE's site is not resolved (a preview without an outline)."""
    if sae.site is None:
        return
    if model.site(site_name).name != sae.site.name:
        raise SiteError(f"the SAE reads {sae.site.name}, not {site_name}; pick that site or another SAE")


def _check_fit(d_in: int, site: Site, width: int) -> None:
    if width != d_in:
        raise SAELoadError(f"SAE expects d_in={d_in} but {site.module_path} outputs {width}: "
                           "pick an SAE trained on this model")


# ----------------------------------------------------------------------------- the plain-torch encoder

#: The sae-lens (6.x) architectures ``SAEEncoder`` computes, with what their ``encode`` does. BatchTopK
#: SAEs are saved by sae-lens as JumpReLU SAEs (a threshold per feature) and load as ``jumprelu``.
ENCODER_ARCHITECTURES: dict[str, str] = {
    "standard": "ReLU(x W_enc + b_enc)",
    "topk": "the k largest of x W_enc + b_enc (times the decoder norms with rescale_acts_by_decoder_norm), ReLU-ed",
    "jumprelu": "ReLU(x W_enc + b_enc) where it exceeds the feature's threshold (also BatchTopK SAEs at inference)",
    "gated": "[x W_enc + b_gate > 0] * ReLU(x (W_enc * exp(r_mag)) + b_mag)",
}

#: Input normalisations sae-lens applies inside ``encode`` (the others are folded into the weights or
#: not applied at inference: ``none``, ``expected_average_only_in``, ``covariance_whitening``).
_ENCODE_NORMALISATIONS = ("constant_norm_rescale", "layer_norm")


@dataclass(frozen=True)
class SAEEncoder:
    """An SAE's encoder as tensors and plain torch: what sae-lens' ``encode`` computes, without sae-lens,
    so it can run inside a trace shipped to NDIF. Build it with ``sae_encoder``; ``select`` narrows it
    to some features (only their columns travel where the architecture allows)."""

    architecture: str
    """A key of ``ENCODER_ARCHITECTURES``."""
    W_enc: torch.Tensor  # [d_in, n]
    b_enc: torch.Tensor  # [n] (the gate's bias for gated SAEs)
    b_dec: torch.Tensor | None = None  # [d_in], subtracted from the input (None: apply_b_dec_to_input off)
    normalize: str = "none"
    """``constant_norm_rescale`` or ``layer_norm`` (applied to the input first), else ``none``."""
    k: int | None = None
    """TopK: features kept per token."""
    decoder_norm: torch.Tensor | None = None  # [n] TopK with rescale_acts_by_decoder_norm
    threshold: torch.Tensor | None = None  # [n] JumpReLU
    r_mag: torch.Tensor | None = None  # [n] gated: log scale of the magnitude path
    b_mag: torch.Tensor | None = None  # [n] gated: bias of the magnitude path
    keep: torch.Tensor | None = None
    """Indices of the outputs kept (``select`` on a TopK encoder, which needs every pre-activation)."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., n]`` (float32) of activations ``[..., d_in]``, on ``x``'s device."""
        W_enc = self.W_enc.to(x.device)

        def on(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=x.device, dtype=W_enc.dtype)

        sae_in = x.to(W_enc.dtype)
        if self.normalize == "constant_norm_rescale":
            sae_in = sae_in * (sae_in.shape[-1] ** 0.5 / sae_in.norm(dim=-1, keepdim=True))
        elif self.normalize == "layer_norm":
            sae_in = sae_in - sae_in.mean(dim=-1, keepdim=True)
            sae_in = sae_in / (sae_in.std(dim=-1, keepdim=True) + 1e-5)
        if self.b_dec is not None:
            sae_in = sae_in - on(self.b_dec)
        if self.architecture == "gated":
            active = (sae_in @ W_enc + on(self.b_enc) > 0).to(W_enc.dtype)
            magnitude = torch.relu(sae_in @ (W_enc * on(self.r_mag).exp()) + on(self.b_mag))
            codes = active * magnitude
        else:
            pre = sae_in @ W_enc + on(self.b_enc)  # [..., n]
            if self.architecture == "topk":
                if self.decoder_norm is not None:
                    pre = pre * on(self.decoder_norm)
                values, indices = torch.topk(pre, k=self.k, dim=-1, sorted=False)
                codes = torch.zeros_like(pre).scatter_(-1, indices, values.relu())
            elif self.architecture == "jumprelu":
                codes = torch.relu(pre) * (pre > on(self.threshold)).to(pre.dtype)
            else:
                codes = torch.relu(pre)
        if self.keep is not None:
            codes = codes[..., self.keep.to(x.device)]
        return codes.float()

    def select(self, features: Sequence[int]) -> SAEEncoder:
        """The encoder of ``features`` only (``encode`` gives ``[..., len(features)]``). Per-feature
        architectures keep only those columns; TopK keeps every column (which features win depends on all
        of them) and picks the outputs."""
        index = torch.tensor([int(f) for f in features], dtype=torch.long)
        if self.keep is not None:
            return replace(self, keep=self.keep[index])
        if self.architecture == "topk":
            return replace(self, keep=index)

        def columns(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[..., index].clone()

        return replace(self, W_enc=columns(self.W_enc), b_enc=columns(self.b_enc), threshold=columns(self.threshold),
                       r_mag=columns(self.r_mag), b_mag=columns(self.b_mag))


def sae_encoder(sae: Any) -> SAEEncoder:
    """The plain-torch encoder of a sae-lens SAE, or an ``SAELoadError`` naming the architectures supported."""
    cfg = sae.cfg
    architecture = cfg.architecture() if callable(getattr(cfg, "architecture", None)) else None
    if architecture not in ENCODER_ARCHITECTURES:
        raise SAELoadError(f"the workbench cannot encode with a {architecture or type(sae).__name__!r} SAE; it "
                           f"supports {', '.join(ENCODER_ARCHITECTURES)} (BatchTopK SAEs load as jumprelu)")
    if getattr(cfg, "reshape_activations", "none") != "none":
        raise SAELoadError(f"this SAE reshapes its input ({cfg.reshape_activations}, e.g. attention heads); the "
                           "workbench reads a site's activation as one vector: pick an SAE on a residual, attention "
                           "or MLP output")

    def tensor(name: str) -> torch.Tensor:
        return getattr(sae, name).detach()

    normalize = cfg.normalize_activations if cfg.normalize_activations in _ENCODE_NORMALISATIONS else "none"
    common = dict(architecture=architecture, W_enc=tensor("W_enc"),
                  b_dec=tensor("b_dec") if cfg.apply_b_dec_to_input else None, normalize=normalize)
    if architecture == "gated":
        return SAEEncoder(**common, b_enc=tensor("b_gate"), r_mag=tensor("r_mag"), b_mag=tensor("b_mag"))
    if architecture == "topk":
        rescale = bool(getattr(cfg, "rescale_acts_by_decoder_norm", False))
        return SAEEncoder(**common, b_enc=tensor("b_enc"), k=int(cfg.k),
                          decoder_norm=tensor("W_dec").norm(dim=-1) if rescale else None)
    if architecture == "jumprelu":
        return SAEEncoder(**common, b_enc=tensor("b_enc"), threshold=tensor("threshold"))
    return SAEEncoder(**common, b_enc=tensor("b_enc"))


def decoder_rows(sae: Any, features: Sequence[int]) -> torch.Tensor:
    """What one unit of each feature's activation adds to the reconstruction (``[n_features, d_in]``
    float32, a copy): its decoder row, divided by the row's norm for TopK SAEs that rescale their
    activations by the decoder norms (as their ``decode`` does)."""
    rows = sae.W_dec[[int(f) for f in features]].detach().float()
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        rows = rows / rows.norm(dim=-1, keepdim=True)
    return rows


@dataclass(frozen=True)
class SAEPreview:
    """What an SAE's config says, read without its weights (``preview_sae``): its site, input width and
    number of features, enough to check features, a site and the fit to a model before loading. A
    sae-lens release's config is not read here (it is fetched with the weights): its widths are None."""

    spec: SAESpec
    site_name: str | None
    """The site as the config (or the spec's override) names it."""
    site: Site | None
    """The site resolved on the model's outline; None without an outline."""
    d_in: int | None
    d_sae: int | None

    def check_feature(self, feature: int) -> int:
        return check_feature(feature, self.d_sae, self.site.name if self.site else self.site_name)


@dataclass
class LoadedSAE:
    """An SAE ready for use on a model, with its site resolved on that model, and its plain-torch encoder
    (built from ``sae`` here; an architecture it does not know is refused)."""

    spec: SAESpec
    sae: Any  # sae_lens.SAE
    site: Site
    identity: str
    """Stable string naming what the SAE computes with: its weights and config (``sae_identity``)."""
    encoder: SAEEncoder = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.encoder = sae_encoder(self.sae)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def d_in(self) -> int:
        return int(self.sae.cfg.d_in)

    def check_feature(self, feature: int) -> int:
        return check_feature(feature, self.d_sae, self.site.name)

    def encode(self, activations: torch.Tensor) -> torch.Tensor:
        """Feature activations ``[..., d_sae]`` of activations ``[..., d_in]`` (float32), through the
        plain-torch encoder (equal to sae-lens' ``encode``)."""
        with torch.no_grad():
            return self.encoder.encode(activations)

    def decoder_rows(self, features: Sequence[int]) -> torch.Tensor:
        """What one unit of each feature adds to the reconstruction (``[n_features, d_in]`` float32)."""
        for feature in features:
            self.check_feature(feature)
        return decoder_rows(self.sae, features)


def sae_identity(folder: Path) -> str:
    """Identity (scheme v2) of an SAE on disk: its weights and ``cfg.json`` (not its README or training notes)."""
    return v2_identity(f"sae:{files_digest(folder, SAE_IDENTITY_FILES)}")


def _check_sae_folder(folder: Path) -> None:
    if folder.is_file():
        raise SAELoadError(f"{folder} is a file, not an SAE folder: give the folder that holds {SAE_CFG_FILENAME} "
                           f"and {SAE_WEIGHTS_FILENAME}")
    missing = [name for name in (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME) if not (folder / name).exists()]
    if missing:
        raise SAELoadError(
            f"no SAE at {folder}: missing {', '.join(missing)} (expected sae-lens' on-disk format, "
            "as written by `sae.save_model(folder)`)"
        )


def _read_cfg(folder: Path) -> dict[str, Any]:
    """An SAE folder's ``cfg.json`` (checked: a mapping with whole-number d_in and d_sae)."""
    _check_sae_folder(folder)
    path = folder / SAE_CFG_FILENAME
    try:
        cfg = json.loads(read_user_text(path, "SAE config"))
    except json.JSONDecodeError as error:
        raise SAELoadError(f"{path} is not valid JSON (line {error.lineno}): {error.msg}") from None
    except WorkbenchError as error:
        raise SAELoadError(str(error)) from None
    widths = {key: cfg.get(key) for key in ("d_in", "d_sae")} if isinstance(cfg, dict) else {}
    if not widths or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in widths.values()):
        raise SAELoadError(f"{path} is not an SAE config: it needs whole numbers d_in and d_sae (sae-lens' format)")
    return cfg


def _cfg_hook_name(cfg: dict[str, Any]) -> str | None:
    metadata = cfg.get("metadata")
    hook = metadata.get("hook_name") if isinstance(metadata, dict) else None
    return hook or cfg.get("hook_name")  # older sae-lens configs keep it at the top level


def _check_release(release: str, sae_id: str | None) -> None:
    """The release and id are in sae-lens' catalogue of pretrained SAEs (read from the installed package)."""
    if not sae_id:
        raise SAELoadError("a sae-lens release needs an SAE id too (e.g. --sae-id blocks.8.hook_resid_pre)")
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise SAELoadError(f"no sae-lens release {release!r} in sae-lens' pretrained_saes.yaml (e.g. "
                           f"{', '.join(sorted(directory)[:3])}); check the name")
    ids = directory[release].saes_map
    if sae_id not in ids:
        raise SAELoadError(f"release {release!r} has no SAE id {sae_id!r} (e.g. {', '.join(list(ids)[:3])})")


def _registry_entry(spec: SAESpec) -> RegistryEntry:
    registry = read_registry()
    name = spec.registry_name or registry.default
    if name is None or name not in registry.entries:
        known = ", ".join(sorted(registry.entries)) or "none"
        raise SAELoadError(f"no SAE named {name!r} in the registry {saes_dir() / SAE_REGISTRY_FILENAME} (known: {known})")
    return registry.entries[name]


def preview_sae(spec: SAESpec, model: ModelOutline | None = None) -> SAEPreview:
    """The SAE a spec names, from its config alone (no weights): the folder and its files exist, the
    config gives the site and widths; with the model's outline the site is resolved on it and the SAE's
    input width checked against the site's. Raises what loading would, before anything loads."""
    d_in = d_sae = None
    if spec.path:
        cfg = _read_cfg(Path(spec.path).expanduser())
        site_name = spec.site or _cfg_hook_name(cfg)
        d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    elif spec.release:
        _check_release(spec.release, spec.sae_id)
        site_name = spec.site
    else:
        entry = _registry_entry(spec)
        cfg = _read_cfg(entry.path)
        site_name = spec.site or entry.site
        d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    if not site_name and not spec.release:
        raise SAELoadError("the SAE's config names no hook; give the site explicitly (e.g. --site model.layers.15)")
    site = model.site(site_name) if model is not None and site_name else None
    width = model.residual_width(site) if site is not None else None
    if width is not None and d_in is not None:
        _check_fit(d_in, site, width)
    return SAEPreview(spec=spec, site_name=site_name, site=site, d_in=d_in, d_sae=d_sae)


def _load_local(folder: Path) -> Any:
    from sae_lens import SAE

    _check_sae_folder(folder)
    try:
        return SAE.load_from_disk(folder, device="cpu", dtype="float32")
    except (ValueError, KeyError, RuntimeError) as error:
        raise SAELoadError(f"cannot load the SAE at {folder}: {error}") from error


def _sae_hook_name(sae: Any) -> str | None:
    metadata = getattr(sae.cfg, "metadata", None)
    return getattr(metadata, "hook_name", None) if metadata is not None else None


def load_sae(spec: SAESpec, model: LoadedModel) -> LoadedSAE:
    """Load an SAE and check it fits ``model`` (site exists, widths agree)."""
    if spec.path:
        folder = Path(spec.path).expanduser()
        sae = _load_local(folder)
        identity = sae_identity(folder)
        site_name = spec.site or _sae_hook_name(sae)
    elif spec.release:
        _check_release(spec.release, spec.sae_id)
        from sae_lens import SAE

        try:
            sae = SAE.from_pretrained(spec.release, spec.sae_id, device="cpu")
        except (ValueError, KeyError, OSError) as error:
            raise SAELoadError(
                f"cannot load {spec.release}/{spec.sae_id} through sae-lens: {error}. Check the "
                "release and id in sae-lens' pretrained_saes.yaml, and that the network is reachable"
            ) from error
        identity = v2_identity(f"sae-release:{spec.release}/{spec.sae_id}")
        site_name = spec.site or _sae_hook_name(sae)
    else:
        entry = _registry_entry(spec)
        name = entry.name
        sae = _load_local(entry.path)
        identity = sae_identity(entry.path)
        site_name = spec.site or entry.site
    if not site_name:
        raise SAELoadError("the SAE's config names no hook; give the site explicitly (e.g. --site model.layers.15)")
    site = model.site(site_name)
    _check_fit(int(sae.cfg.d_in), site, model.site_width(site))
    sae.eval()
    return LoadedSAE(spec=spec, sae=sae, site=site, identity=identity)
