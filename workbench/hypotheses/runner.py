"""Hypotheses as files: a claim about features (or a direction), the contrast it predicts, and
the causal tests that would support it, run against controls into a versioned run record.

A hypothesis file is YAML (read with ``yaml.safe_load``) validated by ``Hypothesis``. Every check
that needs no compute (features in range, the site, the conditions present, finite non-empty
strength sweeps) runs before any forward pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from workbench.core.constants import DEFAULT_SCENARIOS, REPO_ROOT, repo_relative
from workbench.core.errors import WorkbenchError
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
from workbench.hypotheses.records import (
    RECORD_VERSION,
    ControlResult,
    Environment,
    ExampleRecord,
    FeatureStat,
    PredictionResult,
    RunRecord,
    ScenarioSource,
    Setup,
    decide_verdict,
    judge_prediction,
)
from workbench.core.stats import Estimate, bootstrap_auroc, wilson_interval
from workbench.features.probes import ProbeResult

Progress = Callable[[str, float], None]
CONDITIONS = ("honest", "lie", "parrot", "ignorant")


# ----------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Strict):
    source: str = "default"
    """``default`` (embedded SmolLM2), a Hugging Face id or a local folder."""
    adapter: str | None = "auto"
    """LoRA adapter folder; ``auto`` = the adapter the registry SAE was trained on; null = none."""
    gguf_file: str | None = None


class SAERef(_Strict):
    registry: str | None = None
    path: str | None = None
    release: str | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> SAERef:
        forms = sum(x is not None for x in (self.registry, self.path, self.release))
        if forms > 1:
            raise ValueError("give one of registry, path, or release + id")
        if self.release is not None and self.id is None:
            raise ValueError("a sae-lens release needs an id too")
        return self


class ScenarioRef(_Strict):
    source: Literal["organism", "file"] = "organism"
    """``organism``: the protocol set built from the facts (every template; ignorant facts too).
    ``file``: a scenario JSONL file with train and held-out splits."""
    file: str | None = None
    train_facts: int | None = 40
    """Known train facts used for the probe baseline and calibration (organism source)."""
    max_per_condition: int = Field(default=48, ge=5)
    """Held-out scenarios per condition used by each causal test (seeded sample)."""


class DirectionRef(_Strict):
    probe: Literal["difference_of_means", "logistic_regression"]
    positive: str
    negative: str


class ContrastPrediction(_Strict):
    name: str
    description: str = ""
    a: str
    b: str
    position: str = "last_prompt_token"
    comparison: Literal[">=", "<="] = ">="
    threshold: float = Field(ge=0.0, le=1.0)
    """On AUROC of condition ``a`` vs ``b`` (the features' summed activation)."""


class Intervention(_Strict):
    kind: Literal["ablate", "steer", "patch"]
    mode: Literal["zero", "mean"] = "zero"
    """Ablation target: zero, or the feature's mean over ``mean_over`` scenarios."""
    mean_over: str = "honest"
    scale: Literal["unit", "feature", "residual"] = "feature"
    """Steering unit: ``feature`` = one typical firing of the features (their mean non-zero
    activation times the decoder norm); ``residual`` = the mean residual norm at the site;
    ``unit`` = raw residual units."""
    strengths: list[float] = Field(default_factory=lambda: [1.0])
    positions: str = "all"
    patch_from: str = "honest"
    """Patching source: the paired scenario of this condition (same fact)."""

    @field_validator("strengths")
    @classmethod
    def _finite(cls, strengths: list[float]) -> list[float]:
        if not strengths:
            raise ValueError("the strength sweep is empty: give at least one strength")
        if not all(isinstance(s, (int, float)) and math.isfinite(s) for s in strengths):
            raise ValueError(f"strengths must be finite numbers, got {strengths}")
        return strengths


class CausalTest(_Strict):
    name: str
    description: str = ""
    intervention: Intervention
    condition: str
    """The scenarios the edit is applied to."""
    metric: str
    """Change (edited minus unedited, per scenario) of: p_true, logit_diff, lie_rate, truth_rate, parrot_rate."""
    at_strength: float | None = None
    """The strength the prediction is judged at (default: the largest |strength|)."""
    comparison: Literal[">=", "<=", "abs<"]
    threshold: float
    controls: list[Literal["random", "sign_flip", "other_conditions"]] = Field(
        default_factory=lambda: ["random", "sign_flip", "other_conditions"])
    other_conditions: list[str] | None = None
    """Conditions for the specificity control (default: the others present among lie/parrot/honest)."""
    n_random: int = Field(default=3, ge=1, le=10)

    @field_validator("metric")
    @classmethod
    def _metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return metric

    @property
    def judged_strength(self) -> float:
        strengths = self.intervention.strengths
        return self.at_strength if self.at_strength is not None else max(strengths, key=abs)


class Hypothesis(_Strict):
    name: str
    claim: str
    """The claim in words."""
    model: ModelRef = ModelRef()
    sae: SAERef = SAERef()
    site: str | None = None
    """Override of the SAE's site (rarely needed)."""
    features: list[int] = Field(default_factory=list)
    direction: DirectionRef | None = None
    """A probe direction instead of SAE features (steering only)."""
    scenarios: ScenarioRef = ScenarioRef()
    contrasts: list[ContrastPrediction] = Field(default_factory=list)
    tests: list[CausalTest] = Field(default_factory=list)
    probe_baseline: bool = True
    seed: int = 0
    max_new_tokens: int = Field(default=8, ge=1, le=64)

    @model_validator(mode="after")
    def _consistent(self) -> Hypothesis:
        if not self.features and self.direction is None:
            raise ValueError("name the features (a list of indices) or a probe direction")
        if self.features and self.direction is not None:
            raise ValueError("give features or a direction, not both")
        if len(set(self.features)) != len(self.features):
            raise ValueError("features repeat an index")
        names = [p.name for p in self.contrasts] + [t.name for t in self.tests]
        if len(set(names)) != len(names):
            raise ValueError("prediction names must be unique")
        if not names:
            raise ValueError("a hypothesis needs at least one prediction (a contrast or a causal test)")
        for test in self.tests:
            if self.direction is not None and test.intervention.kind == "ablate":
                raise ValueError(f"test {test.name!r}: a probe direction can be steered along, not ablated")
            if test.at_strength is not None and test.at_strength not in test.intervention.strengths:
                raise ValueError(f"test {test.name!r}: at_strength {test.at_strength} is not in its strengths")
        return self


def _validation_message(error: ValidationError, source: str) -> str:
    lines = [f"{source} is not a valid hypothesis:"]
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"  - {where}: {problem['msg']}")
    return "\n".join(lines)


def parse_hypothesis(data: Any, source: str = "hypothesis") -> Hypothesis:
    if not isinstance(data, dict):
        raise WorkbenchError(f"{source} must be a YAML mapping with name, claim, features and predictions")
    try:
        return Hypothesis.model_validate(data)
    except ValidationError as error:
        raise WorkbenchError(_validation_message(error, source)) from None


def read_hypothesis(path: str | os.PathLike[str]) -> Hypothesis:
    """Read and validate a hypothesis YAML file (every problem listed with its field)."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"no hypothesis file at {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise WorkbenchError(f"{path} is not valid YAML: {error}") from None
    return parse_hypothesis(data, str(path))


def write_hypothesis(path: str | os.PathLike[str], hypothesis: Hypothesis) -> None:
    from workbench.core.io import write_text_atomically

    data = hypothesis.model_dump(mode="json", exclude_defaults=False)
    write_text_atomically(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def list_hypotheses(folder: Path | None = None) -> list[Path]:
    folder = folder or REPO_ROOT / "hypotheses"
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


# ----------------------------------------------------------------------------- loading


def load_for(hypothesis: Hypothesis):
    """The model and SAE a hypothesis names."""
    from workbench.model.loading import ModelSpec, load_model
    from workbench.model.saes import SAESpec, default_model_spec, load_sae

    ref = hypothesis.model
    uses_registry = hypothesis.sae.path is None and hypothesis.sae.release is None
    if ref.adapter == "auto":
        spec = default_model_spec(hypothesis.sae.registry) if ref.source == "default" and uses_registry and not ref.gguf_file \
            else ModelSpec(source=ref.source, gguf_file=ref.gguf_file)
    else:
        spec = ModelSpec(source=ref.source, gguf_file=ref.gguf_file, adapter=ref.adapter)
    model = load_model(spec)
    sae = load_sae(SAESpec(registry_name=hypothesis.sae.registry, path=hypothesis.sae.path,
                           release=hypothesis.sae.release, sae_id=hypothesis.sae.id, site=hypothesis.site), model)
    return model, sae


def scenario_sets(hypothesis: Hypothesis):
    """(train scenarios, held-out scenarios) the hypothesis is run on."""
    from workbench.organism import knowledge_from_scenarios, protocol_scenarios
    from workbench.scenarios import Split, load_facts, read_scenarios

    ref = hypothesis.scenarios
    if ref.source == "file":
        if not ref.file:
            raise WorkbenchError("scenarios.source is 'file' but scenarios.file is not given")
        path = Path(ref.file)
        path = path if path.is_absolute() or path.exists() else REPO_ROOT / path
        scenarios = read_scenarios(path)
        return ([s for s in scenarios if s.split is Split.train], [s for s in scenarios if s.split is Split.heldout])
    facts = load_facts()
    knowledge = knowledge_from_scenarios(read_scenarios(DEFAULT_SCENARIOS))
    train = protocol_scenarios(facts, knowledge, fact_split=Split.train, max_facts=ref.train_facts, seed=0)
    heldout = protocol_scenarios(facts, knowledge, fact_split=Split.heldout, seed=0)
    return train, heldout


def preflight(hypothesis: Hypothesis, sae, heldout: Sequence[Any]) -> None:
    """Every check that needs no forward pass: features, conditions, position rules."""
    from workbench.causal.interventions import INTERVENTION_POSITIONS

    for feature in hypothesis.features:
        sae.check_feature(feature)
    present = {s.condition.value for s in heldout}
    needed = set()
    for contrast in hypothesis.contrasts:
        needed |= {contrast.a, contrast.b}
        if contrast.position not in INTERVENTION_POSITIONS:
            raise WorkbenchError(f"contrast {contrast.name!r}: unknown position {contrast.position!r}")
    for test in hypothesis.tests:
        needed.add(test.condition)
        if test.intervention.positions not in INTERVENTION_POSITIONS:
            raise WorkbenchError(f"test {test.name!r}: unknown positions {test.intervention.positions!r}; "
                                 f"choose one of {', '.join(INTERVENTION_POSITIONS)}")
        if test.intervention.kind == "patch":
            needed.add(test.intervention.patch_from)
        if test.intervention.kind == "ablate" and test.intervention.mode == "mean":
            needed.add(test.intervention.mean_over)
        for other in test.other_conditions or []:
            needed.add(other)
    if hypothesis.direction is not None:
        needed |= {hypothesis.direction.positive, hypothesis.direction.negative}
    unknown = needed - set(CONDITIONS)
    if unknown:
        raise WorkbenchError(f"unknown condition(s) {', '.join(sorted(unknown))}; conditions are {', '.join(CONDITIONS)}")
    missing = needed - present
    if missing:
        raise WorkbenchError(f"the held-out scenarios have no {', '.join(sorted(missing))} scenarios, which the "
                             f"hypothesis needs (present: {', '.join(sorted(present))})")


# ----------------------------------------------------------------------------- running


class _Context:
    """What every prediction of a run shares: model, SAE, scenarios and their renderings."""

    def __init__(self, hypothesis: Hypothesis, model, sae, train, heldout, progress: Progress | None):
        from workbench.model.rendering import render_conversation

        self.h, self.model, self.sae, self.progress = hypothesis, model, sae, progress
        self.train, self.heldout = list(train), list(heldout)
        self.render = lambda s: render_conversation(model.tokenizer, s.prompt_messages if hasattr(s, "prompt_messages") else s.messages)
        self.rng = random.Random(hypothesis.seed)
        self._items: dict[str, Any] = {}
        self.by_condition: dict[str, list[Any]] = {}
        for scenario in self.heldout:
            self.by_condition.setdefault(scenario.condition.value, []).append(scenario)
        self._relation_answers: dict[str, list[str]] = {}
        from workbench.scenarios import load_facts

        try:
            self.facts = {f.fact_id: f for f in load_facts()}
        except WorkbenchError:
            self.facts = {}
        for fact in self.facts.values():
            self._relation_answers.setdefault(fact.relation, []).append(fact.answer)

    def item(self, scenario):
        if scenario.id not in self._items:
            from workbench.model.rendering import render_conversation

            self._items[scenario.id] = render_conversation(self.model.tokenizer, [m.model_dump() for m in scenario.messages])
        return self._items[scenario.id]

    def sample(self, condition: str) -> list[Any]:
        """A seeded sample of held-out scenarios of a condition (same sample every call)."""
        pool = sorted(self.by_condition.get(condition, []), key=lambda s: s.id)
        rng = random.Random(f"{self.h.seed}:{condition}")
        return sorted(rng.sample(pool, min(len(pool), self.h.scenarios.max_per_condition)), key=lambda s: s.id)

    def judge(self, answer: str, scenario) -> str:
        from workbench.organism import judge

        fact = self.facts.get(scenario.fact_id)
        others = self._relation_answers.get(scenario.relation, [])
        return judge(answer, scenario, others, fact.aliases if fact else (), fact.subject if fact else None)

    def say(self, message: str, fraction: float) -> None:
        if self.progress:
            self.progress(message, fraction)


def _feature_matrix(ctx: _Context, scenarios: Sequence[Any], position: str,
                    features: Sequence[int] | None = None) -> torch.Tensor:
    """Max activation of each feature (default: the hypothesis') over the selected positions
    ([n, n_features])."""
    from workbench.causal.interventions import _masks
    from workbench.model.rendering import pad_batch

    items = [ctx.item(s) for s in scenarios]
    features = list(ctx.h.features if features is None else features)
    out = []
    for start in range(0, len(items), 32):
        chunk = items[start : start + 32]
        input_ids, attention = pad_batch(chunk, ctx.model.tokenizer.pad_token_id)
        width = input_ids.shape[1]
        from workbench.features.capture import read_sites

        acts = read_sites(ctx.model, [ctx.sae], input_ids, attention)[ctx.sae.site.name]
        if not torch.isfinite(acts).all():
            bad = [scenarios[start + r].id for r in range(len(chunk)) if not torch.isfinite(acts[r]).all()]
            raise WorkbenchError(f"NaN or inf activations at {ctx.sae.site.name} for: {', '.join(bad)}")
        codes = ctx.sae.encode(acts)[..., features]  # [batch, pos, n_features]
        mask = _masks(chunk, position, width)[..., None]
        out.append(torch.where(mask, codes, torch.zeros_like(codes)).amax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, len(features))


def _contrast_prediction(ctx: _Context, prediction: ContrastPrediction) -> PredictionResult:
    a, b = ctx.by_condition[prediction.a], ctx.by_condition[prediction.b]
    score_a = _feature_matrix(ctx, a, prediction.position).sum(1)
    score_b = _feature_matrix(ctx, b, prediction.position).sum(1)
    point, low, high = bootstrap_auroc(score_a, score_b, n_boot=1000, seed=ctx.h.seed)
    measured = Estimate(value=float(point), low=float(low), high=float(high), n=len(a) + len(b), method="bootstrap")
    return PredictionResult(
        name=prediction.name, kind="contrast",
        description=prediction.description or f"features separate {prediction.a} from {prediction.b}",
        metric=f"auroc {prediction.a} vs {prediction.b} at {prediction.position}",
        comparison=prediction.comparison, threshold=prediction.threshold, measured=measured,
        outcome=judge_prediction(measured, prediction.comparison, prediction.threshold),
        details={"n_a": len(a), "n_b": len(b), "mean_a": float(score_a.mean()), "mean_b": float(score_b.mean()),
                 "active_a": int((score_a > 0).sum()), "active_b": int((score_b > 0).sum())},
    )


class _EditFactory:
    """Builds the edit objects of a test for given features (targets or random controls)."""

    def __init__(self, ctx: _Context, test: CausalTest, direction: torch.Tensor | None):
        self.ctx, self.test, self.direction = ctx, test, direction
        self._typical: dict[tuple[int, ...], float] = {}

    def _typical_firing(self, features: tuple[int, ...]) -> float:
        """Mean non-zero summed activation of the features on the steered condition's prompts."""
        if features not in self._typical:
            scenarios = self.ctx.sample(self.test.condition)[:32]
            matrix = _feature_matrix(self.ctx, scenarios, "all", features).sum(1)
            active = matrix[matrix > 0]
            self._typical[features] = float(active.mean()) if active.numel() else 1.0
        return self._typical[features]

    def _residual_norm(self) -> float:
        from workbench.features.probes import residual_at_last_prompt_token

        acts = residual_at_last_prompt_token(self.ctx.model, self.ctx.sae.site.name,
                                             [self.ctx.item(s) for s in self.ctx.heldout[:32]])
        return float(acts.norm(dim=1).mean())

    def edit(self, features: tuple[int, ...] | None, scenarios: Sequence[Any], random_direction_seed: int | None = None):
        from workbench.causal.interventions import Ablation, Patch, Steering, feature_direction

        iv = self.test.intervention
        if iv.kind == "ablate":
            means = None
            if iv.mode == "mean":
                matrix = _feature_matrix(self.ctx, self.ctx.sample(iv.mean_over), iv.positions, features)
                means = tuple(float(v) for v in matrix.mean(0))
            return Ablation(features=tuple(features), mode=iv.mode, mean_values=means, positions=iv.positions)
        if iv.kind == "steer":
            if random_direction_seed is not None:
                generator = torch.Generator().manual_seed(random_direction_seed)
                direction = torch.randn(self.ctx.sae.d_in, generator=generator)
            elif features is not None:
                direction = feature_direction(self.ctx.sae, features)
            else:
                direction = self.direction
            if iv.scale == "unit":
                scale = 1.0
            elif iv.scale == "residual":
                scale = self._residual_norm()
            elif features is not None:
                decoder = self.ctx.sae.sae.W_dec[list(features)].detach().float().sum(0)
                scale = self._typical_firing(tuple(features)) * float(decoder.norm())
            else:
                scale = self._residual_norm() * 0.1
            return Steering(direction=direction, scale=scale, positions=iv.positions)
        # patch: from the paired scenario of the source condition (same fact)
        sources = []
        by_fact = {}
        for s in self.ctx.by_condition.get(iv.patch_from, []):
            by_fact.setdefault(s.fact_id, s)
        for scenario in scenarios:
            source = by_fact.get(scenario.fact_id)
            if source is None:
                raise WorkbenchError(f"no {iv.patch_from} scenario pairs with {scenario.id} (same fact)")
            sources.append(self.ctx.item(source))
        return Patch(source=tuple(sources), positions=iv.positions if iv.positions in ("last_prompt_token",) else "last_prompt_token")


def _measure(ctx: _Context, test: CausalTest, edit, scenarios: Sequence[Any], strengths: Sequence[float]) -> torch.Tensor:
    """Per scenario and strength, the metric under the edit ([n, k]); strength 0 = unedited."""
    from workbench.causal.interventions import edited_generate, edited_logits

    items = [ctx.item(s) for s in scenarios]
    if test.metric in GENERATION_METRICS:
        answers = edited_generate(ctx.model, items, edit, sae=ctx.sae, site=ctx.sae.site.name, strengths=strengths,
                                  max_new_tokens=ctx.h.max_new_tokens)
        from workbench.organism import OTHER_FALSE, STATED_FALSE, TRUTH

        wanted = {"lie_rate": (STATED_FALSE, OTHER_FALSE), "truth_rate": (TRUTH,), "parrot_rate": (STATED_FALSE,)}[test.metric]
        values = torch.tensor([[float(ctx.judge(a, s) in wanted) for a in row] for row, s in zip(answers, scenarios)])
        ctx.last_answers = answers
        return values
    logits = edited_logits(ctx.model, items, edit, sae=ctx.sae, site=ctx.sae.site.name, strengths=strengths,
                           item_ids=[s.id for s in scenarios])
    tokenizer = ctx.model.tokenizer
    true_ids, false_ids = answer_token_ids(tokenizer, scenarios)
    return logit_metrics(logits, true_ids, false_ids)[test.metric]


def _causal_test(ctx: _Context, test: CausalTest, direction: torch.Tensor | None, density, decoder_norm,
                 step: tuple[int, int]) -> PredictionResult:
    strengths = sorted(set([0.0] + [float(s) for s in test.intervention.strengths]))
    judged = test.judged_strength
    j = strengths.index(judged)
    features = tuple(ctx.h.features) if ctx.h.features else None
    factory = _EditFactory(ctx, test, direction)
    scenarios = ctx.sample(test.condition)
    clusters = [s.fact_id for s in scenarios]
    label = f"test {step[0]}/{step[1]} {test.name}"

    ctx.say(f"{label}: target edit on {len(scenarios)} {test.condition} scenarios", 0.0)
    target = _measure(ctx, test, factory.edit(features, scenarios), scenarios, strengths)
    effects = target - target[:, strengths.index(0.0)][:, None]  # [n, k]
    measured = mean_estimate(effects[:, j], seed=ctx.h.seed, cluster=clusters)
    curve = {"strengths": strengths,
             "target": [mean_estimate(effects[:, k], seed=ctx.h.seed).model_dump() for k in range(len(strengths))],
             "unedited_mean": float(target[:, strengths.index(0.0)].mean())}
    details: dict[str, Any] = {"condition": test.condition, "n_scenarios": len(scenarios), "judged_strength": judged,
                               "intervention": test.intervention.model_dump(), "curve": curve}
    if test.metric in GENERATION_METRICS and getattr(ctx, "last_answers", None):
        details["generations"] = [
            {"scenario_id": s.id, "before": row[strengths.index(0.0)], "after": row[j]}
            for s, row in list(zip(scenarios, ctx.last_answers))[:6]
        ]
    controls: list[ControlResult] = []
    random_ok = None
    if "random" in test.controls:
        ctx.say(f"{label}: random controls", 0.3)
        per_set = []
        if test.intervention.kind == "patch":
            shuffled = scenarios[1:] + scenarios[:1]
            edit = factory.edit(None, shuffled)
            per_set.append(_measure(ctx, test, edit, scenarios, [0.0, judged]))
            name = "patch from another fact (same source condition)"
        elif features is not None:
            sets = matched_random_features(features, density, decoder_norm, n_sets=test.n_random, seed=ctx.h.seed)
            for random_features in sets:
                per_set.append(_measure(ctx, test, factory.edit(random_features, scenarios), scenarios, [0.0, judged]))
            details["random_feature_sets"] = [list(s) for s in sets]
            name = f"random features matched on density and decoder norm ({len(sets)} sets)"
        else:
            for r in range(test.n_random):
                per_set.append(_measure(ctx, test, factory.edit(None, scenarios, random_direction_seed=ctx.h.seed + r),
                                        scenarios, [0.0, judged]))
            name = f"random directions ({test.n_random})"
        control_effect = torch.stack([m[:, 1] - m[:, 0] for m in per_set]).mean(0)
        difference = mean_estimate(effects[:, j] - control_effect, seed=ctx.h.seed, cluster=clusters)
        controls.append(ControlResult(name=name, effect=mean_estimate(control_effect, seed=ctx.h.seed, cluster=clusters),
                                      target_minus_control=difference))
        random_ok = _beats_control(difference, test.comparison)
    if "sign_flip" in test.controls and test.intervention.kind != "patch" and judged != 0:
        ctx.say(f"{label}: sign-flipped edit", 0.6)
        flipped = _measure(ctx, test, factory.edit(features, scenarios), scenarios, [0.0, -judged])
        flip_effect = flipped[:, 1] - flipped[:, 0]
        controls.append(ControlResult(
            name="sign-flipped edit", effect=mean_estimate(flip_effect, seed=ctx.h.seed, cluster=clusters),
            target_minus_control=mean_estimate(effects[:, j] - flip_effect, seed=ctx.h.seed, cluster=clusters)))
    if "other_conditions" in test.controls:
        others = test.other_conditions or [c for c in ("lie", "parrot", "honest") if c != test.condition]
        for other in others:
            other_scenarios = ctx.sample(other)
            if not other_scenarios:
                continue
            ctx.say(f"{label}: same edit on {other}", 0.8)
            values = _measure(ctx, test, factory.edit(features, other_scenarios), other_scenarios, [0.0, judged])
            other_effect = values[:, 1] - values[:, 0]
            controls.append(ControlResult(
                name=f"same edit on {other}", effect=mean_estimate(other_effect, seed=ctx.h.seed,
                                                                     cluster=[s.fact_id for s in other_scenarios]),
                target_minus_control=unpaired_difference(effects[:, j], other_effect, seed=ctx.h.seed)))
    ctx.say(f"{label}: side effects on neutral text", 0.9)
    details["neutral_kl"] = _neutral_kl(ctx, factory.edit(features, []) if test.intervention.kind != "patch" else None,
                                        judged).model_dump()
    outcome = judge_prediction(measured, test.comparison, threshold=test.threshold)
    if outcome == "holds" and random_ok is False:
        outcome = "unclear"
        details["note"] = "the effect clears the threshold but not the random control"
    return PredictionResult(
        name=test.name, kind="causal",
        description=test.description or f"{test.intervention.kind} on {test.condition}: {test.metric} change",
        metric=f"{test.metric} change at strength {judged:g}", comparison=test.comparison, threshold=test.threshold,
        measured=measured, outcome=outcome, controls=controls, details=details,
    )


def _beats_control(difference: Estimate, comparison: str) -> bool | None:
    """Whether the target effect differs from the random control in the predicted direction
    (interval clear of 0). Not asked of ``abs<`` predictions (they predict no effect)."""
    if comparison == ">=":
        return difference.low > 0
    if comparison == "<=":
        return difference.high < 0
    return None


def _neutral_kl(ctx: _Context, edit, strength: float) -> Estimate:
    from workbench.causal.interventions import all_position_log_probs
    from workbench.model.rendering import render_text

    if edit is None:
        return Estimate(value=float("nan"), low=float("nan"), high=float("nan"), n=0, method="not applicable")
    items = [render_text(ctx.model.tokenizer, text) for text in NEUTRAL_TEXTS]
    log_probs = all_position_log_probs(ctx.model, items, edit, sae=ctx.sae, site=ctx.sae.site.name,
                                       strengths=[0.0, strength])
    kl = neutral_kl([lp[0] for lp in log_probs], [lp[1] for lp in log_probs])
    return mean_estimate(kl, seed=ctx.h.seed)


def _feature_stats_and_examples(ctx: _Context) -> tuple[list[FeatureStat], list[ExampleRecord], torch.Tensor, torch.Tensor]:
    """Per feature and condition statistics, top examples in full context, and every feature's
    density and decoder norm (for matched random controls), from a capture of the held-out set."""
    from workbench.features.capture import inputs_from_scenarios, run_capture
    from workbench.features.contrast import item_feature_matrix
    from workbench.features.evidence import Histogram, item_example, item_maxima

    ctx.say("capturing feature activations on the held-out scenarios", 0.0)
    capture = run_capture(ctx.model, [ctx.sae], inputs_from_scenarios(ctx.heldout), generate_responses=True,
                          progress=True)
    site = ctx.sae.site.name
    activations = capture.site(site)
    counts = torch.bincount(activations.features.long(), minlength=activations.d_sae).float()
    density = counts / max(capture.n_tokens, 1)
    decoder_norm = ctx.sae.sae.W_dec.float().norm(dim=1).detach()
    stats: list[FeatureStat] = []
    examples: list[ExampleRecord] = []
    if ctx.h.features:
        matrix, _ = item_feature_matrix(capture, site, "last_prompt_token", "max")
        conditions = [item.condition for item in capture.items]
        for feature in ctx.h.features:
            for condition in sorted({c for c in conditions if c}):
                values = matrix[[i for i, c in enumerate(conditions) if c == condition], feature]
                hist_counts, edges = torch.histogram(values, bins=20)
                stats.append(FeatureStat(
                    feature=feature, site=site, condition=condition, position="last_prompt_token",
                    n=int(values.numel()), mean=mean_estimate(values, seed=ctx.h.seed),
                    active_fraction=wilson_interval(int((values > 0).sum()), int(values.numel())),
                    values=[round(float(v), 4) for v in values.tolist()],
                    histogram=Histogram(edges=edges.tolist(), counts=[int(c) for c in hist_counts.tolist()]),
                ))
            values = activations.feature_values(feature)
            maxima = item_maxima(capture, values)
            for index in torch.argsort(maxima, descending=True)[:3].tolist():
                if maxima[index] <= 0:
                    continue
                example = item_example(capture, values, index)
                examples.append(ExampleRecord(
                    item_id=f"f{feature}: {example.item_id}", condition=example.condition, tokens=example.tokens,
                    roles=example.roles, values=example.values, prompt_length=example.prompt_length,
                    max_position=example.max_position, max_value=example.max_value))
    return stats, examples, density, decoder_norm


def _probe_baseline(ctx: _Context) -> tuple[list[ProbeResult], torch.Tensor | None]:
    from workbench.features.probes import (
        evaluate_probes,
        probe_scores,
        residual_at_last_prompt_token,
    )

    want = [("lie", "honest"), ("lie", "parrot")]
    if ctx.h.direction is not None:
        pair = (ctx.h.direction.positive, ctx.h.direction.negative)
        if pair not in want:
            want.append(pair)
    conditions_needed = {c for pair in want for c in pair}
    train = [s for s in ctx.train if s.condition.value in conditions_needed]
    heldout = [s for c in sorted(conditions_needed) for s in ctx.sample(c)]
    if not ctx.h.probe_baseline and ctx.h.direction is None:
        return [], None
    ctx.say(f"probe baseline: reading {len(train) + len(heldout)} residuals", 0.0)
    items = [ctx.item(s) for s in train + heldout]
    acts = residual_at_last_prompt_token(ctx.model, ctx.sae.site.name, items)
    conditions = [s.condition.value for s in train + heldout]
    splits = ["train"] * len(train) + ["heldout"] * len(heldout)
    present = [pair for pair in want if all(c in conditions[: len(train)] for c in pair)]
    results = evaluate_probes(acts, conditions, splits, site=ctx.sae.site.name, contrasts=present, seed=ctx.h.seed) \
        if ctx.h.probe_baseline else []
    direction = None
    if ctx.h.direction is not None:
        d = ctx.h.direction
        pos = acts[: len(train)][[i for i, c in enumerate(conditions[: len(train)]) if c == d.positive]]
        neg = acts[: len(train)][[i for i, c in enumerate(conditions[: len(train)]) if c == d.negative]]
        if len(pos) < 2 or len(neg) < 2:
            raise WorkbenchError(f"the probe direction needs train scenarios of {d.positive} and {d.negative}")
        _, direction = probe_scores(d.probe, pos, neg, acts[:1])
    return list(results), direction


def _portable(spec: Any) -> Any:
    """A model or SAE spec with its paths inside the repository written relative to it."""
    return dataclasses.replace(spec, **{key: repo_relative(value) for key in ("source", "adapter", "gguf_file", "path")
                                        if isinstance(value := getattr(spec, key, None), str)})


def run_hypothesis(hypothesis: Hypothesis, *, path: str | None = None, command: str | None = None,
                   progress: Progress | None = None, loaded=None) -> RunRecord:
    """Execute a hypothesis: contrasts, causal tests with controls, probe baseline → a run record."""
    from workbench.scenarios import scenario_set_hash

    started = time.perf_counter()
    torch.manual_seed(hypothesis.seed)
    train, heldout = scenario_sets(hypothesis)
    model, sae = loaded if loaded is not None else load_for(hypothesis)
    preflight(hypothesis, sae, heldout)
    ctx = _Context(hypothesis, model, sae, train, heldout, progress)
    stats, examples, density, decoder_norm = _feature_stats_and_examples(ctx)
    probe, direction = _probe_baseline(ctx)
    predictions = [_contrast_prediction(ctx, c) for c in hypothesis.contrasts] if hypothesis.features else []
    for index, test in enumerate(hypothesis.tests):
        predictions.append(_causal_test(ctx, test, direction, density, decoder_norm, (index + 1, len(hypothesis.tests))))
    verdict, reason = decide_verdict(predictions)
    counts: dict[str, int] = {}
    for scenario in heldout:
        counts[scenario.condition.value] = counts.get(scenario.condition.value, 0) + 1
    return RunRecord(
        version=RECORD_VERSION,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=command or f"python -m workbench run {path or 'HYPOTHESIS.yaml'}",
        hypothesis=hypothesis.model_dump(mode="json"),
        hypothesis_path=path,
        setup=Setup(
            model=_portable(model.spec), model_name=model.spec.display_name, model_identity=model.identity,
            sae=_portable(sae.spec), sae_identity=sae.identity, site=sae.site.name, d_sae=sae.d_sae,
            scenarios=ScenarioSource(**hypothesis.scenarios.model_dump()), train_hash=scenario_set_hash(train),
            heldout_hash=scenario_set_hash(heldout), seed=hypothesis.seed,
        ),
        environment=Environment.measure(REPO_ROOT),
        scenario_counts=counts,
        feature_stats=stats,
        examples=examples,
        probe=probe,
        predictions=predictions,
        verdict=verdict,
        verdict_reason=reason,
        seconds=round(time.perf_counter() - started, 1),
    )


def compare_records(a: RunRecord, b: RunRecord, tolerance: float = 1e-6) -> list[str]:
    """Differences between the numbers of two runs of the same hypothesis (empty = same)."""
    differences = []
    if a.verdict != b.verdict:
        differences.append(f"verdict: {a.verdict} vs {b.verdict}")
    for pa, pb in zip(a.predictions, b.predictions):
        for field in ("value", "low", "high"):
            va, vb = getattr(pa.measured, field), getattr(pb.measured, field)
            if not (va == vb or abs(va - vb) <= tolerance or (math.isnan(va) and math.isnan(vb))):
                differences.append(f"{pa.name} {field}: {va} vs {vb}")
    if len(a.predictions) != len(b.predictions):
        differences.append("different number of predictions")
    return differences


__all__ = [
    "CausalTest", "ContrastPrediction", "Hypothesis", "Intervention", "compare_records", "list_hypotheses",
    "parse_hypothesis", "read_hypothesis", "run_hypothesis", "write_hypothesis",
]
