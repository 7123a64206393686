"""The one experiment engine: a causal experiment and the function that runs it.

An ``Experiment`` says everything that decides the numbers: the edit (kind and settings from the
registry in ``causal.edits``), what it acts on (SAE features or a probe direction), where (the
SAE's site or the residual stream after a layer), on which scenarios (a seeded sample of one
condition), at which strengths and in which unit, the metric, the controls and the seed.
``run_experiment`` runs it into an ``ExperimentResult``: one curve per role (target, random
control, sign-flipped edit, the same edit on other conditions), each a paired per-scenario effect
(edited minus unedited on the same scenario) with bootstrap intervals over facts, plus greedy
answers before and after, and side effects on neutral text.

The causal lab builds an ``Experiment``; a hypothesis' causal test is an ``Experiment`` plus a
prediction; the incrimination protocol and the benchmarks run through the same engine.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workbench.core.stats import Estimate

CurveRole = Literal["target", "random", "sign_flip", "other_condition"]


class Curve(BaseModel):
    """The mean per-scenario effect of one edit at each strength."""

    model_config = ConfigDict(frozen=True)

    label: str
    """What was edited, in words (``ablate 38, 877``, ``random matched features (3 sets, averaged)``)."""
    role: CurveRole
    """``target`` (the experiment's edit), or the control it is."""
    condition: str
    """The condition of the scenarios it was measured on."""
    strengths: list[float]
    """The strengths measured, in the experiment's unit (the sign-flipped curve lists the negated ones)."""
    effects: list[Estimate]
    """Per strength: mean of (metric edited - metric unedited) per scenario, bootstrap 95% CI over facts, n."""
    unedited: Estimate
    """The metric without any edit on the same scenarios."""
    target_minus_control: list[Estimate] = Field(default_factory=list)
    """Controls only, per strength: the target's effect minus this control's (paired over scenarios for
    controls on the target's scenarios, unpaired for other conditions), with its interval."""


class Generation(BaseModel):
    """One scenario's greedy answer without the edit and at the strongest strength."""

    model_config = ConfigDict(frozen=True)

    scenario_id: str
    question: str
    """The last user message."""
    true_answer: str
    before: str
    """Greedy answer, unedited."""
    after: str
    """Greedy answer under the edit at ``strength``."""
    strength: float


class EditSettings(BaseModel):
    """An edit kind and its settings (the kinds and which settings each reads: ``causal.edits.EDIT_KINDS``).

    Flat, so a hypothesis file's ``intervention:`` stays one short mapping; settings a kind does not
    read are ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "ablate"
    """An edit kind from the registry: ablate, steer, patch, clamp."""
    positions: str = "all"
    """The position rule whose tokens are edited (``core.positions``); never the attention sink."""
    mode: Literal["zero", "mean"] = "zero"
    """ablate: move features to zero, or to their mean over ``mean_over`` scenarios' tokens."""
    mean_over: str = "honest"
    """ablate, mode mean: the condition whose mean activation the features are moved to."""
    scale: Literal["feature", "residual", "unit"] = "feature"
    """steer, clamp: the strength unit (``causal.edits.UNITS`` defines each)."""
    patch_from: str = "honest"
    """patch: the condition of the paired source scenario (same fact)."""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from workbench.causal.edits import EDIT_KINDS

        if kind not in EDIT_KINDS:
            raise ValueError(f"unknown edit kind {kind!r}; choose one of {', '.join(EDIT_KINDS)}")
        return kind


class ProbeDirection(BaseModel):
    """A direction from a supervised probe: trained on train-split scenarios about known facts, at the
    last prompt token of the edited site, never on the scenarios it is tested on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: Literal["difference_of_means", "logistic_regression"] = "difference_of_means"
    positive: str
    negative: str


class Experiment(BaseModel):
    """Everything that decides a causal experiment's numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edit: EditSettings
    features: tuple[int, ...] = ()
    """SAE features the edit acts on (empty for patching or a direction)."""
    direction: ProbeDirection | None = None
    """Steer along a probe direction instead of SAE features."""
    layer: int | None = None
    """Edit the residual stream after this decoder layer (directions and patching only); None = the SAE's site."""
    condition: str
    """The condition of the scenarios the edit is applied to."""
    n_scenarios: int = Field(default=48, ge=1)
    """How many scenarios of the condition (a seeded sample of the pool's known facts, held-out first)."""
    strengths: tuple[float, ...] = (1.0,)
    """The sweep, in the unit of ``edit.scale`` (0 is added: the unedited model)."""
    metric: str = "p_true"
    """p_true, logit_diff (one forward pass) or lie_rate, truth_rate, parrot_rate (greedy answers, judged)."""
    controls: tuple[str, ...] = ("random", "sign_flip", "other_conditions")
    """Controls to measure, among those the kind allows (``causal.edits.CONTROLS``)."""
    other_conditions: tuple[str, ...] | None = None
    """Conditions of the specificity control (default: the others among lie, parrot, honest)."""
    n_random: int = Field(default=3, ge=0, le=10)
    """Random control sets (matched features, random directions); averaged into one curve."""
    n_generations: int = Field(default=3, ge=0)
    """Scenarios whose greedy answers are shown before and at the strongest edit."""
    neutral_kl: bool = True
    """Measure KL(unedited || edited) on neutral text at the strongest strength."""
    seed: int = 0
    max_new_tokens: int = Field(default=8, ge=1, le=64)


class ExperimentResult(BaseModel):
    """What ``run_experiment`` measured."""

    model_config = ConfigDict(frozen=True)

    experiment: Experiment
    site: str
    """The site the edit acted on."""
    unit: str
    """What one unit of strength was in this run, in words and residual units where it applies."""
    scenario_ids: list[str]
    """The target scenarios, in order."""
    curves: list[Curve]
    """The target curve first, then one per control."""
    generations: list[Generation] = Field(default_factory=list)
    random_feature_sets: list[list[int]] = Field(default_factory=list)
    """The matched random feature sets of the random control."""
    neutral_kl: Estimate | None = None
    """Mean per-token KL(unedited || edited) on neutral text at the strongest strength (None if not measured)."""
    notes: list[str] = Field(default_factory=list)
    """Controls skipped and why, and anything else a reader should know."""

    @property
    def target(self) -> Curve:
        return self.curves[0]

    def curve(self, role: CurveRole) -> list[Curve]:
        return [c for c in self.curves if c.role == role]
