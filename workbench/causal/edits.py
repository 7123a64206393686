"""The registry of edit kinds: how each kind of intervention changes the activation at a site.

An *edit kind* (``ablate``, ``steer``, ``patch``, ``clamp``) is one class registered with
``register_edit_kind``, the way SAELens registers SAE architectures. It declares its settings, the
position rules it allows, the strength units it takes, the controls that apply to it, and how it
turns an experiment's target (SAE features or a direction) into a *prepared edit*: a frozen object
holding the tensors it needs, whose ``apply(acts, mask, strengths, source)`` returns the edited
activation. The hypothesis schema, the CLI help and the causal lab's choices are all read from
``EDIT_KINDS``; adding a kind is one new class here and its test.

Conventions every kind follows:
- ``acts`` is ``[rows, pos, d]``, ``mask`` ``[rows, pos]`` (the positions the rule selects, never the
  attention sink), ``strengths`` ``[rows]``: one forward pass carries many (scenario, strength) rows.
- Feature edits keep the SAE's reconstruction error: they add or remove multiples of decoder rows.
- ``apply`` runs inside the trace, which with remote execution is serialized and run on NDIF, where
  neither sae-lens nor the loaded SAE exists: a prepared edit holds plain tensors only (a feature edit
  the SAE's plain-torch encoder narrowed to its features and their decoder rows, taken from the SAE
  given as ``sae=`` when it is built), and moves them to the activation's device.
- ``identity_at_zero``: strength 0 leaves the model unedited (ablate, steer, patch). Clamp fixes
  features at ``strength`` units, so its strength 0 is "clamped to zero", not unedited.

Strength units (one definition each, used by the lab, hypothesis files and reports: ``UNITS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import InitVar, dataclass
from typing import Any, ClassVar, Protocol

import torch

from workbench.core.errors import WorkbenchError
from workbench.core.positions import POSITION_NAMES
from workbench.model.rendering import RenderedItem
from workbench.model.saes import SAEEncoder
from workbench.model.sites import Site

#: Strength units: what "strength 1" means.
UNITS: dict[str, str] = {
    "feature": "one typical firing: the features' mean activation over the tokens where they fire (a capture of "
               "up to 48 scenarios per condition of the experiment's pool, prompts only, attention sink excluded), "
               "summed over the features, times the norm of their summed decoder rows",
    "residual": "the mean norm of the residual stream at the edited site, at the last prompt token of the "
                "experiment's target scenarios",
    "unit": "raw residual-stream units (for clamp: raw feature activation)",
}

#: Controls a causal test can be measured against.
CONTROLS: dict[str, str] = {
    "random": "the same edit on random features matched on density and decoder norm (random directions for a "
              "direction; a patch from another fact for patching)",
    "sign_flip": "the edit at the negated strength",
    "other_conditions": "the same edit on scenarios of other conditions (specificity)",
}


# ----------------------------------------------------------------------------- prepared edits


def feature_direction(sae: Any, features: Sequence[int]) -> torch.Tensor:
    """Unit vector along the sum of the features' decoder rows (``[d_in]``)."""
    direction = _decoder(sae, features).sum(0)
    return direction / direction.norm().clamp(min=1e-8)


def _decoder(sae: Any, features: Sequence[int]) -> torch.Tensor:
    """What one unit of each feature adds to the residual (``[n_features, d_in]``; features checked)."""
    return sae.decoder_rows(features)


@dataclass(frozen=True)
class PreparedEdit:
    """An edit ready to apply inside a forward pass."""

    positions: str
    """The position rule whose tokens are edited."""

    identity_at_zero: ClassVar[bool] = True
    #: Patching sources: one rendered item per edited item (their activations are read first).
    source: tuple[RenderedItem, ...] | None = None

    def apply(self, acts: torch.Tensor, mask: torch.Tensor, strengths: torch.Tensor,
              source: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class FeatureEdit(PreparedEdit):
    """An edit of SAE features: built with ``sae=`` (a ``LoadedSAE``, not kept), it holds the SAE's
    encoder narrowed to ``features``, their decoder rows and the SAE's site, nothing of sae-lens."""

    sae: InitVar[Any] = None
    features: tuple[int, ...] = ()
    encoder: SAEEncoder | None = None
    """The SAE's encoder of ``features`` only (``encode`` gives ``[..., n_features]``)."""
    decoder: torch.Tensor | None = None  # [n_features, d_in]
    sae_site: Site | None = None
    """The site the SAE reads (the edit must act there)."""

    def __post_init__(self, sae: Any) -> None:
        if sae is None:
            return
        features = tuple(int(f) for f in self.features)
        object.__setattr__(self, "decoder", _decoder(sae, features))  # checks the features
        object.__setattr__(self, "encoder", sae.encoder.select(features))
        object.__setattr__(self, "sae_site", sae.site)

    def _codes(self, acts: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features' activations (``[rows, pos, n_features]`` float32) and the mask as their weights."""
        coefficients = self.encoder.encode(acts)
        return coefficients, mask[..., None].to(coefficients)

    def _write(self, acts: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """``acts`` plus ``change`` (``[rows, pos, n_features]``) times the decoder rows."""
        return acts + (change @ self.decoder.to(change)).to(acts.dtype)


@dataclass(frozen=True)
class Ablation(FeatureEdit):
    """Move features to a target value (0, or their mean): ``x - s * (a_f(x) - target_f) W_dec[f]``.
    Strength 1 ablates, 0 changes nothing, -1 is the sign-flipped edit."""

    targets: tuple[float, ...] = ()
    """Per feature, the value it is moved to (0 = zero ablation, its mean = mean ablation)."""

    def apply(self, acts, mask, strengths, source=None):
        coefficients, weight = self._codes(acts, mask)
        target = torch.tensor(self.targets or [0.0] * len(self.features)).to(coefficients)
        change = (coefficients - target) * weight * strengths.to(coefficients)[:, None, None]
        return self._write(acts, -change)


@dataclass(frozen=True)
class Steering(PreparedEdit):
    """Add ``s * scale * d`` along a unit direction ``d``."""

    direction: torch.Tensor | None = None  # [d_in], normalised on use
    scale: float = 1.0
    """Residual units per unit of strength."""

    def apply(self, acts, mask, strengths, source=None):
        direction = self.direction.to(acts.device).float()
        direction = direction / direction.norm().clamp(min=1e-8)
        added = (strengths.to(direction)[:, None, None] * self.scale) * direction[None, None, :] * \
            mask[..., None].to(direction)
        return acts + added.to(acts.dtype)


@dataclass(frozen=True)
class Patch(PreparedEdit):
    """Interpolate towards the paired source item's activation: ``x + s * (source - x)``."""

    def apply(self, acts, mask, strengths, source=None):
        weight = (strengths[:, None, None] * mask[..., None]).to(acts)
        return acts + weight * (source.to(acts) - acts)


@dataclass(frozen=True)
class Clamp(FeatureEdit):
    """Fix features at ``s * unit_f``: ``x + (s * unit_f - a_f(x)) W_dec[f]`` (SAE error kept)."""

    identity_at_zero: ClassVar[bool] = False
    units: tuple[float, ...] = ()
    """Per feature, the activation one unit of strength stands for."""

    def apply(self, acts, mask, strengths, source=None):
        coefficients, weight = self._codes(acts, mask)
        wanted = strengths.to(coefficients)[:, None, None] * torch.tensor(self.units).to(coefficients)
        return self._write(acts, (wanted - coefficients) * weight)


# ----------------------------------------------------------------------------- what kinds may ask of an experiment


class EditContext(Protocol):
    """What an experiment offers a kind while preparing an edit (see ``causal.experiment``)."""

    sae: Any

    def typical_firing(self, features: Sequence[int]) -> list[float]:
        """Per feature, its mean activation over the tokens where it fires (the ``feature`` unit)."""

    def mean_activation(self, features: Sequence[int], condition: str) -> tuple[float, ...]:
        """Per feature, its mean activation over every token of one condition's scenarios."""

    def residual_norm(self) -> float:
        """The ``residual`` unit at the edited site."""

    def paired_sources(self, scenarios: Sequence[Any], condition: str) -> list[RenderedItem]:
        """For each scenario, the rendered scenario of ``condition`` about the same fact."""


@dataclass(frozen=True)
class Target:
    """What an edit acts on: SAE features, a direction (a probe's or a random one), or nothing (patching)."""

    features: tuple[int, ...] = ()
    direction: torch.Tensor | None = None


# ----------------------------------------------------------------------------- kinds


class EditKind:
    """One kind of intervention. Subclass, set the class attributes, implement ``prepare``, and
    decorate with ``@register_edit_kind``."""

    name: ClassVar[str]
    description: ClassVar[str]
    strength_help: ClassVar[str]
    #: Which settings of ``EditSettings`` (beyond positions and strengths) the kind reads.
    settings: ClassVar[tuple[str, ...]] = ()
    positions: ClassVar[tuple[str, ...]] = POSITION_NAMES
    #: The position rule offered first.
    default_positions: ClassVar[str] = "all"
    units: ClassVar[tuple[str, ...]] = ()
    controls: ClassVar[tuple[str, ...]] = ("random", "other_conditions")
    #: What the kind edits: ``features`` (SAE features only), ``features_or_direction`` or ``pairs``.
    target: ClassVar[str] = "features"
    identity_at_zero: ClassVar[bool] = True

    @classmethod
    def check(cls, settings: Any, target: Target) -> None:
        """Every check that needs no compute; raises ``WorkbenchError`` saying what to change."""
        if settings.positions not in cls.positions:
            raise WorkbenchError(f"positions {settings.positions!r} do not work for {cls.name}; choose one of "
                                 f"{', '.join(cls.positions)}")
        if cls.units and settings.scale not in cls.units:
            raise WorkbenchError(f"{cls.name} takes strengths in {' or '.join(cls.units)} units, not "
                                 f"{settings.scale!r}")
        if target.direction is not None and cls.target != "features_or_direction":
            raise WorkbenchError(f"a direction can be steered along, not used to {cls.name}")
        if cls.target in ("features", "features_or_direction") and target.direction is None and not target.features:
            raise WorkbenchError(f"name at least one feature to {cls.name}")
        if target.direction is not None and settings.scale == "feature":
            raise WorkbenchError("a direction has no typical firing: use the residual or unit scale")

    @classmethod
    def prepare(cls, settings: Any, target: Target, scenarios: Sequence[Any], ctx: EditContext) -> PreparedEdit:
        raise NotImplementedError

    @classmethod
    def describe_settings(cls, settings: Any) -> str:
        """The kind's own settings in words, for reports (``scale residual``); empty when it has none."""
        return f"scale {settings.scale}" if cls.units else ""

    @classmethod
    def random_edits(cls, settings: Any, target: Target, scenarios: Sequence[Any], ctx: Any, n: int,
                     seed: int) -> tuple[str, list[PreparedEdit], list[list[int]]]:
        """The random control: (label, one prepared edit per random set, the random feature sets).
        Features: sets matched on density and decoder norm; a direction: random directions of the same
        scale."""
        if target.direction is not None:
            edits = []
            for index in range(n):
                generator = torch.Generator().manual_seed(seed + index)
                direction = torch.randn(target.direction.shape[-1], generator=generator)
                edits.append(cls.prepare(settings, Target(direction=direction), scenarios, ctx))
            what = "1 direction" if n == 1 else f"{n} directions, averaged"
            return f"random directions ({what})", edits, []
        sets = ctx.matched_random_features(target.features, n, seed)
        edits = [cls.prepare(settings, Target(features=tuple(features)), scenarios, ctx) for features in sets]
        what = "1 set" if n == 1 else f"{n} sets, averaged"
        return f"random features matched on density and decoder norm ({what})", edits, [list(s) for s in sets]

    @classmethod
    def feature_scale(cls, settings: Any, features: Sequence[int], ctx: EditContext) -> float:
        """Residual units per unit of strength along the features' summed decoder direction."""
        if settings.scale == "unit":
            return 1.0
        if settings.scale == "residual":
            return ctx.residual_norm()
        typical = sum(ctx.typical_firing(features))
        return typical * float(_decoder(ctx.sae, features).sum(0).norm())


#: Every registered edit kind, by name.
EDIT_KINDS: dict[str, type[EditKind]] = {}


def register_edit_kind(cls: type[EditKind]) -> type[EditKind]:
    """Class decorator: make a kind available to experiments, hypothesis files, the CLI and the lab."""
    if cls.name in EDIT_KINDS:
        raise ValueError(f"edit kind {cls.name!r} is registered twice")
    EDIT_KINDS[cls.name] = cls
    return cls


def edit_kind(name: str) -> type[EditKind]:
    """The kind of that name, or an error listing the kinds."""
    try:
        return EDIT_KINDS[name]
    except KeyError:
        raise WorkbenchError(f"unknown edit kind {name!r}; choose one of {', '.join(EDIT_KINDS)}") from None


def describe_kinds() -> str:
    """One line per kind, for help texts."""
    return "; ".join(f"`{kind.name}`: {kind.description}" for kind in EDIT_KINDS.values())


@register_edit_kind
class Ablate(EditKind):
    name = "ablate"
    description = "remove the features' decoder contribution (to zero or to their mean; the SAE's error is kept)"
    strength_help = "1 = ablated, 0 = unedited, -1 = the sign-flipped edit (contribution doubled)"
    settings = ("mode", "mean_over")
    controls = ("random", "sign_flip", "other_conditions")

    @classmethod
    def prepare(cls, settings, target, scenarios, ctx):
        features = tuple(target.features)
        for feature in features:
            ctx.sae.check_feature(feature)
        targets = ctx.mean_activation(features, settings.mean_over) if settings.mode == "mean" else (0.0,) * len(features)
        return Ablation(positions=settings.positions, sae=ctx.sae, features=features, targets=tuple(targets))

    @classmethod
    def describe_settings(cls, settings):
        return f"mode {settings.mode}" + (f" (mean over {settings.mean_over})" if settings.mode == "mean" else "")


@register_edit_kind
class Steer(EditKind):
    name = "steer"
    description = "add strength x unit along the features' summed decoder direction (or a probe direction)"
    strength_help = "multiples of the unit: feature = typical firings, residual = residual norms"
    settings = ("scale",)
    units = ("feature", "residual", "unit")
    controls = ("random", "sign_flip", "other_conditions")
    target = "features_or_direction"

    @classmethod
    def prepare(cls, settings, target, scenarios, ctx):
        if target.direction is not None:
            scale = 1.0 if settings.scale == "unit" else ctx.residual_norm()
            return Steering(positions=settings.positions, direction=target.direction, scale=scale)
        features = tuple(target.features)
        return Steering(positions=settings.positions, direction=feature_direction(ctx.sae, features),
                        scale=cls.feature_scale(settings, features, ctx))


@register_edit_kind
class PatchKind(EditKind):
    name = "patch"
    description = "copy the site's activation from the paired scenario (same fact) of another condition"
    strength_help = "1 = fully patched, 0 = unedited, in between interpolates"
    settings = ("patch_from",)
    #: Paired scenarios of two conditions differ in length, so only the last prompt token is always aligned.
    positions = ("last_prompt_token",)
    default_positions = "last_prompt_token"
    target = "pairs"

    @classmethod
    def check(cls, settings, target):
        super().check(settings, target)
        if target.features or target.direction is not None:
            raise WorkbenchError("patching copies whole activations: it takes no features or direction")

    @classmethod
    def random_edits(cls, settings, target, scenarios, ctx, n, seed):
        """A patch from another fact's source (the sources shifted by one scenario)."""
        if len(scenarios) < 2:
            return "the patching control needs at least two scenarios", [], []
        shifted = list(scenarios[1:]) + list(scenarios[:1])
        edit = Patch(positions=settings.positions, source=tuple(ctx.paired_sources(shifted, settings.patch_from)))
        return f"patch from another fact ({settings.patch_from})", [edit], []

    @classmethod
    def prepare(cls, settings, target, scenarios, ctx):
        return Patch(positions=settings.positions, source=tuple(ctx.paired_sources(scenarios, settings.patch_from)))

    @classmethod
    def describe_settings(cls, settings):
        return f"from the paired {settings.patch_from} scenario"


@register_edit_kind
class ClampKind(EditKind):
    name = "clamp"
    description = "fix the features at a value (strength x unit) at the chosen positions, whatever they were"
    strength_help = "the value the features are fixed at: typical firings (feature unit) or raw activation (unit)"
    settings = ("scale",)
    units = ("feature", "unit")
    identity_at_zero = False

    @classmethod
    def prepare(cls, settings, target, scenarios, ctx):
        features = tuple(target.features)
        for feature in features:
            ctx.sae.check_feature(feature)
        units = ctx.typical_firing(features) if settings.scale == "feature" else [1.0] * len(features)
        return Clamp(positions=settings.positions, sae=ctx.sae, features=features, units=tuple(float(u) for u in units))
