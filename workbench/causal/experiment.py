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

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from workbench.causal.edits import CONTROLS, UNITS, Clamp, PreparedEdit, Steering, Target, edit_kind
from workbench.causal.sweeps import all_position_log_probs, check_strengths, edited_generate, edited_logits
from workbench.causal.measurements import (
    GENERATION_METRICS,
    METRICS,
    NEUTRAL_TEXTS,
    answer_token_ids,
    logit_metrics,
    matched_random_features,
    mean_estimate,
    neutral_kl,
    unpaired_difference,
)
from workbench.core.conditions import BEHAVIOURS, CONTROL_CONDITIONS, check_conditions, parse_condition
from workbench.core.errors import WorkbenchError
from workbench.core.stats import Estimate
from workbench.model.rendering import RenderedItem, render_conversation, render_text
from workbench.model.saes import check_feature
from workbench.model.sites import layer_site
from workbench.scenarios import OTHER_FALSE, STATED_FALSE, TRUTH, AnswerJudge, answer_matches

Progress = Callable[[str, float], None]

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

    @property
    def truthful_before(self) -> bool:
        return answer_matches(self.before, self.true_answer)

    @property
    def truthful_after(self) -> bool:
        return answer_matches(self.after, self.true_answer)


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

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

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
    def description(self, site: str | None = None) -> str:
        """The experiment in words (e.g. ``ablate features 3, 7 at `all` positions of lie scenarios``)."""
        if self.edit.kind == "patch":
            what = f"patch from {self.edit.patch_from}"
        elif self.direction is not None:
            what = f"{self.edit.kind} along the probe direction {self.direction.positive} - {self.direction.negative}"
        else:
            plural = "s" if len(self.features) > 1 else ""
            what = f"{self.edit.kind} feature{plural} {', '.join(map(str, self.features))}"
        where = f" at {site}" if site else (f" after layer {self.layer}" if self.layer is not None else "")
        return f"{what}{where}, `{self.edit.positions}` positions of {self.condition} scenarios"

    focus_strength: float | None = None
    """The strength greedy answers and side effects are shown at (default: the largest |strength|)."""
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

    def rows(self) -> list[dict[str, Any]]:
        """One row per curve and strength: the numbers behind the plot."""
        metric = self.experiment.metric
        out = []
        for curve in self.curves:
            for k, (strength, effect) in enumerate(zip(curve.strengths, curve.effects)):
                # Four significant digits: effects of 1e-5 stay visible instead of rounding to 0.
                row = {"edit": curve.label, "condition": curve.condition, "strength": strength,
                       f"{metric} change": float(f"{effect.value:.4g}"), "95% CI": effect.interval(".3g"),
                       "n": effect.n, f"unedited {metric}": float(f"{curve.unedited.value:.4g}")}
                if len(self.curves) > 1:
                    diff = curve.target_minus_control[k] if curve.target_minus_control else None
                    row["target minus this"] = f"{diff.value:+.3g} {diff.interval('+.3g')}" if diff else ""
                out.append(row)
        return out

    def description(self) -> str:
        """The experiment in words, with the site it ran at."""
        return self.experiment.description(self.site)


# ----------------------------------------------------------------------------- parsing a user's input


def parse_features(text: str, d_sae: int | None, *, allow_empty: bool = False) -> tuple[int, ...]:
    """``"12, 40"`` → ``(12, 40)``; a readable error for anything else, a repeat or an index out of range
    (``d_sae`` None: the SAE's width is not known yet, only the sign is checked). ``allow_empty``: an
    empty text gives ``()`` (a patch or a probe direction names no features)."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        if allow_empty:
            return ()
        raise WorkbenchError("give at least one feature index, e.g. `12` or `12, 40`")
    features = []
    for part in parts:
        if not part.lstrip("-").isdigit():
            raise WorkbenchError(f"{part!r} is not a feature index: give whole numbers separated by commas")
        feature = check_feature(int(part), d_sae)
        if feature in features:
            raise WorkbenchError(f"feature {feature} is listed twice")
        features.append(feature)
    return tuple(features)


def parse_strengths(text: str, *, include_zero: bool = True) -> list[float]:
    """``"0, 1, 2, 4"`` → ``[0.0, 1.0, 2.0, 4.0]`` (sorted, unique, finite; 0 included unless
    ``include_zero`` is False: for kinds whose strength 0 is the unedited model, it is the baseline every
    effect is measured from)."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise WorkbenchError("the strength sweep is empty: give strengths separated by commas, e.g. `0, 1, 2, 4`")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise WorkbenchError(f"{part!r} is not a number: give strengths separated by commas, e.g. `0, 1, 2, 4`") from None
        if not math.isfinite(value):
            raise WorkbenchError(f"strength {part!r} is not finite: give ordinary numbers")
        values.append(value)
    strengths = sorted(set(values) | ({0.0} if include_zero else set()))
    if len(strengths) > 12:
        raise WorkbenchError(f"{len(strengths)} strengths is a long sweep; give at most 12")
    return strengths


# ----------------------------------------------------------------------------- scenarios


#: Scenarios per condition whose capture gives the feature statistics (typical firing, density, means).
STATS_PER_CONDITION = 48


def select_scenarios(pool: Sequence[Any], condition: str, n: int, seed: int) -> list[Any]:
    """A seeded sample of ``n`` scenarios of a condition (sorted by id, the same sample every call):
    from the pool's held-out split where it has one for that condition, and (but for ``ignorant``)
    only about facts the model knows."""
    candidates = [s for s in pool if _condition(s) == condition
                  and (condition == "ignorant" or getattr(s, "fact_known", None) is not False)]
    heldout = [s for s in candidates if str(getattr(s.split, "value", s.split)) == "heldout"]
    candidates = sorted(heldout or candidates, key=lambda s: s.id)
    rng = random.Random(f"{seed}:{condition}")
    return sorted(rng.sample(candidates, min(len(candidates), n)), key=lambda s: s.id)


def _condition(scenario: Any) -> str:
    return str(getattr(scenario.condition, "value", scenario.condition))


def _question(scenario: Any) -> str:
    return next((m.content for m in reversed(scenario.messages) if m.role == "user"), "")


# ----------------------------------------------------------------------------- what an experiment computes once


class ExperimentContext:
    """The model, SAE, scenario pool and everything computed once per experiment (renderings,
    feature statistics, the residual unit); implements ``causal.edits.EditContext``."""

    def __init__(self, model: Any, sae: Any, pool: Sequence[Any], *, site: str, seed: int = 0,
                 progress: Progress | None = None) -> None:
        self.model, self.sae, self.pool, self.site, self.seed = model, sae, list(pool), site, seed
        self.progress = progress
        self.targets: list[Any] = []
        self._items: dict[str, RenderedItem] = {}
        self._capture: Any = None
        self._residual: float | None = None
        self._judge: Any = None

    def say(self, message: str, fraction: float) -> None:
        if self.progress:
            self.progress(message, fraction)

    def item(self, scenario: Any) -> RenderedItem:
        if scenario.id not in self._items:
            self._items[scenario.id] = render_conversation(self.model.tokenizer, scenario.messages)
        return self._items[scenario.id]

    # feature statistics, from one capture of a seeded sample of the pool (prompts only)
    def stats_scenarios(self) -> list[Any]:
        conditions = sorted({_condition(s) for s in self.pool})
        return [s for c in conditions for s in select_scenarios(self.pool, c, STATS_PER_CONDITION, self.seed)]

    @property
    def capture(self) -> Any:
        if self._capture is None:
            from workbench.features.capture import inputs_from_scenarios, run_capture

            chosen = self.stats_scenarios()
            self.say(f"feature statistics: capturing {len(chosen)} scenarios (cached after the first time)", 0.0)
            inputs = [replace(i, response=None) for i in inputs_from_scenarios(chosen)]
            self._capture = run_capture(self.model, [self.sae], inputs, generate_responses=False)
        return self._capture

    def density(self) -> torch.Tensor:
        """Fraction of captured tokens on which each feature fires (``[d_sae]``)."""
        activations = self.capture.site(self.sae.site.name)
        counts = torch.bincount(activations.features.long(), minlength=self.sae.d_sae).float()
        return counts / max(int(self.capture.n_tokens), 1)

    def typical_firing(self, features: Sequence[int]) -> list[float]:
        activations = self.capture.site(self.sae.site.name)
        out = []
        for feature in features:
            values = activations.feature_values(int(feature))
            active = values[values > 0]
            out.append(float(active.mean()) if active.numel() else 1.0)
        return out

    def mean_activation(self, features: Sequence[int], condition: str) -> tuple[float, ...]:
        capture = self.capture
        keep = torch.zeros(int(capture.n_tokens), dtype=torch.bool)
        for item in capture.items:
            if item.condition == condition:
                keep[item.token_start : item.token_start + item.n_tokens] = True
        if not keep.any():
            raise WorkbenchError(f"mean ablation needs {condition} scenarios in the scenario set; there are none")
        activations = capture.site(self.sae.site.name)
        return tuple(float(activations.feature_values(int(f))[keep].mean()) for f in features)

    def residual_norm(self) -> float:
        if self._residual is None:
            from workbench.features.probes import residual_at_last_prompt_token

            acts = residual_at_last_prompt_token(self.model, self.site, [self.item(s) for s in self.targets])
            self._residual = float(acts.norm(dim=1).mean())
        return self._residual

    def paired_sources(self, scenarios: Sequence[Any], condition: str) -> list[RenderedItem]:
        by_fact: dict[str, Any] = {}
        for s in sorted(self.pool, key=lambda s: s.id):
            if _condition(s) == condition:
                by_fact.setdefault(s.fact_id, s)
        missing = [s.id for s in scenarios if s.fact_id not in by_fact]
        if missing:
            raise WorkbenchError(f"no {condition} scenario about the same fact as {', '.join(missing[:3])}"
                                 f"{'...' if len(missing) > 3 else ''}: pick another source condition")
        return [self.item(by_fact[s.fact_id]) for s in scenarios]

    def matched_random_features(self, features: Sequence[int], n_sets: int, seed: int) -> list[tuple[int, ...]]:
        decoder_norm = self.sae.sae.W_dec.float().norm(dim=1).detach()
        return matched_random_features(features, self.density(), decoder_norm, n_sets=n_sets, seed=seed)

    def select(self, condition: str, n: int) -> list[Any]:
        """A seeded sample of ``n`` scenarios of a condition, or of one narrowed by what the model did
        (``lie+false``: the lie prompts it lied on), judged from its greedy responses to every candidate
        (generated once and cached with their capture)."""
        base, behaviour = parse_condition(condition)
        if behaviour is None:
            return select_scenarios(self.pool, condition, n, self.seed)
        from workbench.features.capture import inputs_from_scenarios, run_capture
        from workbench.scenarios.judging import select_by_behaviour

        candidates = select_scenarios(self.pool, base, len(self.pool), self.seed)
        self.say(f"responses to {len(candidates)} {base} scenarios, to find {condition}", 0.0)
        capture = run_capture(self.model, [self.sae], inputs_from_scenarios(candidates), generate_responses=True)
        responses = {item.item_id: item.response for item in capture.items}
        if self._judge is None:
            self._judge = AnswerJudge.for_scenarios(self.pool)
        chosen = select_by_behaviour(candidates, condition, responses, self._judge).scenarios
        rng = random.Random(f"{self.seed}:{condition}")
        return sorted(rng.sample(chosen, min(len(chosen), n)), key=lambda s: s.id)

    def judge(self, answer: str, scenario: Any) -> str:
        """What a greedy answer says (``scenarios.judging``): truth, the stated false answer, another
        false answer of the right type, or no answer."""
        if self._judge is None:
            self._judge = AnswerJudge.for_scenarios(self.pool)
        return self._judge(answer, scenario)


# ----------------------------------------------------------------------------- measuring


#: For each generation metric, the judgements that count.
RATE_JUDGEMENTS = {"lie_rate": (STATED_FALSE, OTHER_FALSE), "truth_rate": (TRUTH,), "parrot_rate": (STATED_FALSE,)}


def measure(ctx: ExperimentContext, edit: PreparedEdit | None, scenarios: Sequence[Any], strengths: Sequence[float],
            metric: str, *, max_new_tokens: int = 8) -> tuple[torch.Tensor, list[list[str]] | None]:
    """The metric per scenario and strength (``[n, k]``) under the edit at the context's site, and the
    greedy answers (``answers[scenario][strength]``) for generation metrics."""
    items = [ctx.item(s) for s in scenarios]
    located = {"site": ctx.site} if edit is not None else {}
    if metric in GENERATION_METRICS:
        answers = edited_generate(ctx.model, items, edit, strengths=strengths, max_new_tokens=max_new_tokens,
                                  **located)
        wanted = RATE_JUDGEMENTS[metric]
        values = torch.tensor([[float(ctx.judge(a, s) in wanted) for a in row] for row, s in zip(answers, scenarios)])
        return values.reshape(len(scenarios), len(strengths)), answers
    logits = edited_logits(ctx.model, items, edit, strengths=strengths, item_ids=[s.id for s in scenarios], **located)
    true_ids, false_ids = answer_token_ids(ctx.model.tokenizer, scenarios)
    return logit_metrics(logits, true_ids, false_ids)[metric], None


def measure_edit(model: Any, sae: Any, scenarios: Sequence[Any], settings: EditSettings, target: Target,
                 strengths: Sequence[float], metric: str = "p_true", *, pool: Sequence[Any] | None = None,
                 site: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-scenario values of a metric unedited (``[n]``) and under one edit (``[n, k]``) on given
    scenarios (the incrimination protocol's per-response edits use this)."""
    ctx = ExperimentContext(model, sae, pool if pool is not None else scenarios, site=site or sae.site.name)
    ctx.targets = list(scenarios)
    kind = edit_kind(settings.kind)
    kind.check(settings, target)
    edit = kind.prepare(settings, target, scenarios, ctx)
    unedited, _ = measure(ctx, None, scenarios, [0.0], metric)
    edited, _ = measure(ctx, edit, scenarios, strengths, metric)
    return unedited[:, 0], edited


# ----------------------------------------------------------------------------- running


def experiment_site(experiment: Experiment, model: Any, sae: Any) -> str:
    """The site the edit acts on: the SAE's, or the residual stream after ``experiment.layer``. ``model``
    may be a ``ModelOutline`` (no weights): the layer is checked all the same."""
    if experiment.layer is None:
        return sae.site.name
    _check_layer_target(experiment)
    if not 0 <= experiment.layer < model.n_layers:
        raise WorkbenchError(f"layer {experiment.layer} is out of range: this model has {model.n_layers} layers "
                             f"(0 to {model.n_layers - 1})")
    return layer_site(experiment.layer, model.hf_model).name


def _check_layer_target(experiment: Experiment) -> None:
    if experiment.layer is not None and experiment.features:
        raise WorkbenchError("SAE features are edited at the SAE's site: leave the layer unset, or steer along a "
                             "probe direction or patch at another layer")


def default_other_conditions(condition: str) -> list[str]:
    """The specificity control's conditions by default: the other conditions among lie, parrot and honest;
    for a condition narrowed by behaviour, the same prompts with the other behaviour first (``lie+truth``
    for ``lie+false``: the same edit on the lies the model resisted)."""
    base, behaviour = parse_condition(condition)
    if behaviour is None:
        return [c for c in CONTROL_CONDITIONS if c != condition]
    flipped = [f"{base}+{b}" for b in BEHAVIOURS if b != behaviour]
    return flipped + [c for c in CONTROL_CONDITIONS if c != base]


def needed_conditions(experiment: Experiment) -> set[str]:
    """The conditions whose scenarios the experiment reads: its targets', a patch's source, a mean
    ablation's reference, a probe direction's two sides (not the optional specificity control's)."""
    needed = {experiment.condition}
    if experiment.edit.kind == "patch":
        needed.add(experiment.edit.patch_from)
    if experiment.edit.kind == "ablate" and experiment.edit.mode == "mean":
        needed.add(experiment.edit.mean_over)
    if experiment.direction is not None:
        needed |= {experiment.direction.positive, experiment.direction.negative}
    return needed


def check_settings(experiment: Experiment) -> None:
    """The checks that need neither a model nor scenarios: the edit kind accepts the settings and target,
    the metric, strengths, controls and conditions are known, a layer is given only without features."""
    kind = edit_kind(experiment.edit.kind)
    target = Target(features=tuple(experiment.features),
                    direction=torch.zeros(1) if experiment.direction is not None else None)  # the kind only asks whether there is one
    kind.check(experiment.edit, target)
    if experiment.metric not in METRICS:
        raise WorkbenchError(f"unknown metric {experiment.metric!r}; choose one of {', '.join(METRICS)}")
    check_strengths(experiment.strengths)
    if experiment.direction is not None and experiment.direction.positive == experiment.direction.negative:
        raise WorkbenchError("the probe needs two different conditions (e.g. lie vs honest)")
    unknown_controls = [c for c in experiment.controls if c not in CONTROLS]
    if unknown_controls:
        raise WorkbenchError(f"unknown control(s) {', '.join(unknown_controls)}; choose among {', '.join(CONTROLS)}")
    for feature in experiment.features:
        check_feature(feature, None)
    _check_layer_target(experiment)
    # The targets and the specificity control may be narrowed by what the model did (lie+false); what the
    # edit is built from (a patch's source, a mean's reference, a probe's sides) may not.
    check_conditions({experiment.condition} | set(experiment.other_conditions or ()), needed_by="the experiment",
                     behaviour=True)
    check_conditions(needed_conditions(experiment) - {experiment.condition}, needed_by="the edit")


#: Strengths beyond these are far outside what was measured (``far_strengths``).
FAR_TYPICAL_FIRINGS = 10.0
FAR_RESIDUAL_NORMS = 2.0
FAR_FULL_EDITS = 2.0


def far_strengths(experiment: Experiment, *, typical_firing: float | None = None,
                  residual_norm: float | None = None) -> list[str]:
    """Why the sweep's strengths are far outside the measured range, in words (empty if they are not):
    beyond ``FAR_TYPICAL_FIRINGS`` times the features' largest typical firing, ``FAR_RESIDUAL_NORMS``
    residual norms, or ``FAR_FULL_EDITS`` times a full ablation or patch. For the raw ``unit`` scale
    the caller gives the largest typical firing (features) or the residual norm (a direction); without
    it that scale is not judged."""
    kind, settings = experiment.edit.kind, experiment.edit
    largest = max((abs(float(s)) for s in experiment.strengths), default=0.0)
    if kind in ("ablate", "patch"):
        if largest > FAR_FULL_EDITS:
            return [f"strength {largest:g} is more than {FAR_FULL_EDITS:g} times the full {kind} (1)"]
        return []
    scale = getattr(settings, "scale", "feature")
    if scale == "feature" and largest > FAR_TYPICAL_FIRINGS:
        return [f"strength {largest:g} typical firings is more than {FAR_TYPICAL_FIRINGS:g}"]
    if scale == "residual" and largest > FAR_RESIDUAL_NORMS:
        return [f"strength {largest:g} residual norms is more than {FAR_RESIDUAL_NORMS:g}"]
    if scale == "unit":
        if experiment.direction is None and typical_firing and largest > FAR_TYPICAL_FIRINGS * typical_firing:
            return [f"strength {largest:g} is more than {FAR_TYPICAL_FIRINGS:g} times the features' largest typical "
                    f"firing ({typical_firing:.3g})"]
        if experiment.direction is not None and residual_norm and largest > FAR_RESIDUAL_NORMS * residual_norm:
            return [f"strength {largest:g} is more than {FAR_RESIDUAL_NORMS:g} residual norms "
                    f"({residual_norm:.3g} each)"]
    return []


def check_experiment(experiment: Experiment, model: Any, sae: Any, pool: Sequence[Any]) -> None:
    """Every check that needs no forward pass; raises ``WorkbenchError`` saying what to change.

    ``model`` and ``sae`` may be what their configs say before anything loads (``model.resolve.check_refs``:
    a ``ModelOutline``, an ``SAEPreview``); ``model`` None skips the layer's range (an experiment at the
    SAE's site needs no model)."""
    check_settings(experiment)
    for feature in experiment.features:
        sae.check_feature(feature)
    if model is not None:
        experiment_site(experiment, model, sae)
    check_conditions(needed_conditions(experiment), {_condition(s) for s in pool}, needed_by="the experiment",
                     behaviour=True)
    base = parse_condition(experiment.condition)[0]
    if not select_scenarios(pool, base, experiment.n_scenarios, experiment.seed):
        raise WorkbenchError(f"the scenario set has no {base} scenarios about facts the model knows")


def probe_direction(ctx: ExperimentContext, probe: ProbeDirection, train: Sequence[Any]) -> torch.Tensor:
    """The probe's unit direction at the edited site, trained on train-split scenarios about known facts."""
    from workbench.features.probes import probe_scores, residual_at_last_prompt_token

    groups = [[s for s in train if _condition(s) == c and getattr(s, "fact_known", None) is not False]
              for c in (probe.positive, probe.negative)]
    if min(len(g) for g in groups) < 2:
        raise WorkbenchError(f"the probe needs at least 2 train-split scenarios of {probe.positive} and of "
                             f"{probe.negative} about known facts; there are {len(groups[0])} and {len(groups[1])}")
    acts = residual_at_last_prompt_token(ctx.model, ctx.site, [ctx.item(s) for s in groups[0] + groups[1]])
    _, direction = probe_scores(probe.probe, acts[: len(groups[0])], acts[len(groups[0]) :], acts[:1])
    return direction


def _unit_text(experiment: Experiment, edit: PreparedEdit, ctx: ExperimentContext) -> str:
    settings = experiment.edit
    if settings.kind == "ablate":
        to = "zero" if settings.mode == "zero" else f"their mean over {settings.mean_over} scenarios"
        return f"1 = the features moved to {to} (ablated); 0 = unedited; -1 = the sign-flipped edit"
    if settings.kind == "patch":
        return f"1 = fully patched from the paired {settings.patch_from} scenario; 0 = unedited"
    if isinstance(edit, Steering):
        what = {"feature": "one typical firing of the features", "residual": f"the mean residual norm at {ctx.site}",
                "unit": "one raw residual unit"}[settings.scale]
        return f"1 = {what} = {edit.scale:.4g} residual units"
    if isinstance(edit, Clamp):
        values = ", ".join(f"{u:.4g}" for u in edit.units)
        what = "one typical firing" if settings.scale == "feature" else "raw activation 1"
        return f"1 = {what} (per feature: {values}); 0 = clamped to zero"
    return UNITS.get(settings.scale, "")


def _curve(label: str, role: CurveRole, condition: str, strengths: Sequence[float], effects: torch.Tensor,
           unedited: torch.Tensor, clusters: Sequence[str], seed: int,
           minus: Sequence[Estimate] = ()) -> Curve:
    return Curve(label=label, role=role, condition=condition, strengths=[float(s) for s in strengths],
                 effects=[mean_estimate(effects[:, k], seed=seed, cluster=clusters) for k in range(len(strengths))],
                 unedited=mean_estimate(unedited, seed=seed, cluster=clusters), target_minus_control=list(minus))


def run_experiment(model: Any, sae: Any, experiment: Experiment, pool: Sequence[Any], *,
                   train: Sequence[Any] | None = None, progress: Progress | None = None) -> ExperimentResult:
    """Run an experiment on a pool of scenarios (targets and controls are drawn from it; a probe
    direction is trained on ``train``, default the pool's train split) into curves with controls.

    Every effect is paired per scenario: the metric under the edit minus the same scenario's metric
    unedited. Never leaves hooks on the model: every edit lives inside one nnsight trace.
    """
    check_experiment(experiment, model, sae, pool)
    site = experiment_site(experiment, model, sae)
    ctx = ExperimentContext(model, sae, pool, site=site, seed=experiment.seed, progress=progress)
    kind = edit_kind(experiment.edit.kind)
    settings, seed = experiment.edit, experiment.seed
    targets = ctx.select(experiment.condition, experiment.n_scenarios)
    if not targets:
        raise WorkbenchError(f"no {experiment.condition} scenarios: the model's responses to the "
                             f"{parse_condition(experiment.condition)[0]} scenarios never show that behaviour")
    ctx.targets = targets
    clusters = [s.fact_id for s in targets]
    notes: list[str] = []
    strengths = sorted({float(s) for s in experiment.strengths} | ({0.0} if kind.identity_at_zero else set()))
    edited_strengths = [s for s in strengths if not (kind.identity_at_zero and s == 0.0)]
    controls = [c for c in experiment.controls if c in kind.controls]
    for dropped in [c for c in experiment.controls if c not in kind.controls]:
        notes.append(f"the {dropped.replace('_', ' ')} control does not apply to {kind.name}; skipped")
    others: list[str] = []
    if "other_conditions" in controls:
        wanted = list(experiment.other_conditions or default_other_conditions(experiment.condition))
        present = {_condition(s) for s in pool}
        others = [c for c in wanted if c != experiment.condition and parse_condition(c)[0] in present]
        for c in wanted:
            if parse_condition(c)[0] not in present:
                notes.append(f"same edit on {c}: the scenario set has no {c} scenarios; skipped")
    steps = 2 + ("random" in controls) * max(experiment.n_random, 1) + ("sign_flip" in controls) + len(others) \
        + (experiment.n_generations > 0) + experiment.neutral_kl
    done = 0

    def step(message: str) -> None:
        nonlocal done
        ctx.say(message, min(done / steps, 0.99))
        done += 1

    step(f"{len(targets)} {experiment.condition} scenarios, unedited")
    direction = None
    if experiment.direction is not None:
        d = experiment.direction
        step(f"probe direction {d.positive} - {d.negative} at {site} (train split)")
        pool_train = train if train is not None else [s for s in pool if str(getattr(s.split, "value", s.split)) == "train"]
        direction = probe_direction(ctx, d, pool_train)
        notes.append(f"probe direction: {d.probe.replace('_', ' ')} {d.positive} - {d.negative} at {site}, "
                     f"trained on {len(pool_train)} train-split scenarios")
    target = Target(features=tuple(experiment.features), direction=direction)
    unedited, base_answers = measure(ctx, None, targets, [0.0], experiment.metric,
                                     max_new_tokens=experiment.max_new_tokens)
    base = unedited[:, 0]

    def assemble(values: torch.Tensor, at: Sequence[float]) -> torch.Tensor:
        """Values at ``strengths`` ([n, k]) from values at ``at``, filling strength 0 with the unedited
        value for kinds whose strength 0 is the unedited model."""
        columns = []
        for s in strengths:
            columns.append(values[:, list(at).index(s)] if s in at else base)
        return torch.stack(columns, dim=1)

    edit = kind.prepare(settings, target, targets, ctx)
    step(f"target: {kind.name} on {len(targets)} {experiment.condition} scenarios x {len(edited_strengths)} strengths")
    values, answers = measure(ctx, edit, targets, edited_strengths, experiment.metric,
                              max_new_tokens=experiment.max_new_tokens)
    target_values = assemble(values, edited_strengths)
    target_effects = target_values - base[:, None]
    label = (f"{kind.name} along probe {experiment.direction.positive} - {experiment.direction.negative}"
             if experiment.direction is not None else
             f"{kind.name} from {settings.patch_from}" if kind.name == "patch" else
             f"{kind.name} {', '.join(map(str, experiment.features))}")
    curves = [_curve(label, "target", experiment.condition, strengths, target_effects, base, clusters, seed)]

    def paired_minus(control_effects: torch.Tensor) -> list[Estimate]:
        return [mean_estimate(target_effects[:, k] - control_effects[:, k], seed=seed, cluster=clusters)
                for k in range(len(strengths))]

    random_sets: list[list[int]] = []
    if "random" in controls and experiment.n_random > 0:
        label_r, random_edits, random_sets = kind.random_edits(settings, target, targets, ctx, experiment.n_random,
                                                               seed)
        if not random_edits:
            notes.append(f"random control skipped: {label_r}")
        per_set = []
        for index, random_edit in enumerate(random_edits):
            step(f"random control {index + 1}/{len(random_edits)}: {label_r}")
            values, _ = measure(ctx, random_edit, targets, edited_strengths, experiment.metric,
                                max_new_tokens=experiment.max_new_tokens)
            per_set.append(assemble(values, edited_strengths))
        if per_set:
            effects = torch.stack(per_set).mean(0) - base[:, None]
            curves.append(_curve(label_r, "random", experiment.condition, strengths, effects, base, clusters, seed,
                                 paired_minus(effects)))
    if "sign_flip" in controls and kind.identity_at_zero:
        step("sign-flipped edit")
        flipped = [-s for s in edited_strengths]
        values, _ = measure(ctx, edit, targets, flipped, experiment.metric, max_new_tokens=experiment.max_new_tokens)
        effects = assemble(values, edited_strengths) - base[:, None]  # column k holds strength -strengths[k]
        curves.append(_curve("sign-flipped edit", "sign_flip", experiment.condition, [-s for s in strengths], effects,
                             base, clusters, seed, paired_minus(effects)))
    for other in others:
        step(f"same edit on {other}")
        chosen = ctx.select(other, experiment.n_scenarios)
        try:
            other_edit = kind.prepare(settings, target, chosen, ctx)
        except WorkbenchError as error:
            notes.append(f"same edit on {other} skipped: {error}")
            continue
        other_base, _ = measure(ctx, None, chosen, [0.0], experiment.metric, max_new_tokens=experiment.max_new_tokens)
        values, _ = measure(ctx, other_edit, chosen, edited_strengths, experiment.metric,
                            max_new_tokens=experiment.max_new_tokens)
        columns = [values[:, edited_strengths.index(s)] if s in edited_strengths else other_base[:, 0] for s in strengths]
        effects = torch.stack(columns, dim=1) - other_base
        minus = [unpaired_difference(target_effects[:, k], effects[:, k], seed=seed) for k in range(len(strengths))]
        curves.append(_curve(f"same edit on {other}", "other_condition", other, strengths, effects, other_base[:, 0],
                             [s.fact_id for s in chosen], seed, minus))

    focus = experiment.focus_strength if experiment.focus_strength is not None else max(strengths, key=abs)
    generations: list[Generation] = []
    shown = targets[: experiment.n_generations]
    if shown and (focus != 0.0 or not kind.identity_at_zero):
        if answers is not None and focus in edited_strengths:
            before = [row[0] for row in base_answers[: len(shown)]]
            after = [row[edited_strengths.index(focus)] for row in answers[: len(shown)]]
        else:
            step(f"greedy answers of {len(shown)} scenarios unedited and at strength {focus:g}")
            items = [ctx.item(s) for s in shown]
            before = [row[0] for row in edited_generate(model, items, None, strengths=[0.0],
                                                        max_new_tokens=experiment.max_new_tokens)]
            after = [row[0] for row in edited_generate(model, items, kind.prepare(settings, target, shown, ctx),
                                                       site=site, strengths=[focus],
                                                       max_new_tokens=experiment.max_new_tokens)]
        generations = [Generation(scenario_id=s.id, question=_question(s), true_answer=s.true_answer, before=b,
                                  after=a, strength=focus) for s, b, a in zip(shown, before, after)]
    kl = None
    if experiment.neutral_kl and edit.source is None:
        step(f"side effects on neutral text at strength {focus:g}")
        kl = neutral_side_effect(ctx, edit, focus, seed)
    ctx.say("done", 1.0)
    return ExperimentResult(experiment=experiment, site=site, unit=_unit_text(experiment, edit, ctx),
                            scenario_ids=[s.id for s in targets], curves=curves, generations=generations,
                            random_feature_sets=random_sets, neutral_kl=kl, notes=notes)


def neutral_side_effect(ctx: ExperimentContext, edit: PreparedEdit, strength: float, seed: int = 0) -> Estimate:
    """Mean per-token KL(unedited || edited) on neutral text (``NEUTRAL_TEXTS``) at one strength."""
    items = [render_text(ctx.model.tokenizer, text) for text in NEUTRAL_TEXTS]
    unedited = all_position_log_probs(ctx.model, items, None, strengths=[0.0])
    edited = all_position_log_probs(ctx.model, items, edit, site=ctx.site, strengths=[strength])
    kl = neutral_kl([lp[0] for lp in unedited], [lp[0] for lp in edited])
    return mean_estimate(kl, seed=seed)
