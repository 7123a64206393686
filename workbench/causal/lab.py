"""The causal lab's computation: parse a user's sweep, run one edit over scenarios at several
strengths, and measure it against controls (random features matched on density and decoder
norm, and the same edit on another condition). Pure functions over a loaded model and SAE; the
app's page only wires widgets to them.

Every effect is per scenario and paired: the metric under the edit at strength ``s`` minus the
same scenario's metric unedited (strength 0), so strength 0 has zero effect by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from workbench.core.errors import WorkbenchError
from workbench.causal.interventions import (
    INTERVENTION_POSITIONS,
    Ablation,
    Patch,
    Steering,
    check_strengths,
    edited_generate,
    edited_logits,
    feature_direction,
)
from workbench.causal.measurements import (
    LOGIT_METRICS,
    answer_token_ids,
    logit_metrics,
    matched_random_features,
    mean_estimate,
)
from workbench.model.loading import LoadedModel
from workbench.features.probes import difference_of_means, residual_at_last_prompt_token
from workbench.model.rendering import RenderedItem, render_conversation
from workbench.model.saes import LoadedSAE
from workbench.scenarios import Scenario, answer_matches
from workbench.model.sites import layer_site
from workbench.core.stats import Estimate

Kind = Literal["ablate", "steer", "patch"]
KINDS: tuple[Kind, ...] = ("ablate", "steer", "patch")
PATCH_POSITIONS = ("last_prompt_token",)
Progress = Callable[[str, float], None]


# ----------------------------------------------------------------------------- parsing user input


def parse_features(text: str, d_sae: int) -> tuple[int, ...]:
    """``"12, 40"`` → ``(12, 40)``; a readable error for anything else or an index out of range."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise WorkbenchError("give at least one feature index, e.g. `12` or `12, 40`")
    features = []
    for part in parts:
        try:
            feature = int(part)
        except ValueError:
            raise WorkbenchError(f"{part!r} is not a feature index: give whole numbers separated by commas") from None
        if not 0 <= feature < d_sae:
            raise WorkbenchError(f"feature {feature} is out of range: this SAE has {d_sae} features (0 to {d_sae - 1})")
        if feature in features:
            raise WorkbenchError(f"feature {feature} is listed twice")
        features.append(feature)
    return tuple(features)


def parse_strengths(text: str) -> list[float]:
    """``"0, 1, 2, 4"`` → ``[0.0, 1.0, 2.0, 4.0]`` (sorted, unique, 0 always included: it is the
    unedited baseline every effect is measured from)."""
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
    strengths = sorted(set(values) | {0.0})
    if len(strengths) > 12:
        raise WorkbenchError(f"{len(strengths)} strengths is a long sweep; give at most 12")
    return strengths


# ----------------------------------------------------------------------------- settings and results


@dataclass(frozen=True)
class LabSettings:
    """One causal-lab experiment."""

    features: tuple[int, ...]
    kind: Kind = "ablate"
    positions: str = "all"
    strengths: tuple[float, ...] = (0.0, 1.0)
    condition: str = "lie"
    n_scenarios: int = 8
    metric: str = "p_true"
    mode: Literal["zero", "mean"] = "zero"
    """Ablation target (mean: the feature's mean activation over ``reference`` scenarios' tokens)."""
    reference: str = "honest"
    """Mean-ablation reference condition, and the patching source condition (same fact)."""
    scale: Literal["feature", "residual", "unit"] = "feature"
    """Steering unit: ``feature`` = one typical firing (mean non-zero activation x decoder norm);
    ``residual`` = the mean residual norm at the edited site (last prompt token of the target
    scenarios); ``unit`` = raw residual units."""
    probe: tuple[str, str] | None = None
    """Steer along a probe direction instead of SAE features: the difference of means of the
    (positive, negative) conditions' activations at the last prompt token, on train-split
    scenarios about known facts (never the scenarios it is tested on)."""
    layer: int | None = None
    """Decoder layer whose residual output is edited (steering along a probe, patching); None =
    the SAE's site. Feature edits always happen at the SAE's site."""
    control_condition: str | None = "honest"
    """The same edit on this condition (specificity control); None to skip."""
    n_random: int = 2
    """Sets of random features matched on density and decoder norm (0 to skip)."""
    n_generations: int = 3
    """Scenarios whose greedy answers are shown unedited and at the strongest edit."""
    seed: int = 0

    @property
    def edits_features(self) -> bool:
        """Whether the edit is defined by SAE features (ablation, or steering along their decoder)."""
        return self.kind != "patch" and self.probe is None

    def target_label(self) -> str:
        if self.kind == "patch":
            return f"patch from {self.reference}"
        if self.probe is not None:
            return f"steer along probe {self.probe[0]} - {self.probe[1]}"
        return f"{self.kind} {', '.join(map(str, self.features))}"

    def description(self) -> str:
        """The experiment in words (e.g. ``ablating features 3, 7 at `all` positions of lie scenarios``)."""
        plural = "s" if len(self.features) > 1 else ""
        if self.kind == "patch":
            what = f"patching from {self.reference}"
        elif self.probe is not None:
            what = f"steering along the probe direction {self.probe[0]} - {self.probe[1]}"
        else:
            verb = "ablating" if self.kind == "ablate" else "steering along"
            what = f"{verb} feature{plural} {', '.join(map(str, self.features))}"
        where = f" after layer {self.layer}" if self.layer is not None else ""
        return f"{what}{where} at `{self.positions}` positions of {self.condition} scenarios"

    def check(self, d_sae: int, n_layers: int | None = None) -> None:
        if self.kind not in KINDS:
            raise WorkbenchError(f"unknown intervention {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.probe is not None:
            if self.kind != "steer":
                raise WorkbenchError("a probe direction can be steered along, not ablated or patched")
            if self.probe[0] == self.probe[1]:
                raise WorkbenchError("the probe needs two different conditions (e.g. lie vs honest)")
            if self.scale == "feature":
                raise WorkbenchError("a probe direction has no typical firing: use the residual or unit scale")
        elif self.kind != "patch" and not self.features:
            raise WorkbenchError("name at least one feature to ablate or steer along")
        if self.layer is not None and self.kind == "ablate":
            raise WorkbenchError("ablation edits SAE features, which live at the SAE's site: leave the layer unset")
        if self.layer is not None and self.kind == "steer" and self.probe is None:
            raise WorkbenchError("SAE features are steered at the SAE's site: pick a probe direction to steer at "
                                 "another layer")
        for feature in self.features:
            if not 0 <= feature < d_sae:
                raise WorkbenchError(f"feature {feature} is out of range: this SAE has {d_sae} features (0 to {d_sae - 1})")
        allowed = PATCH_POSITIONS if self.kind == "patch" else INTERVENTION_POSITIONS
        if self.positions not in allowed:
            raise WorkbenchError(f"positions {self.positions!r} do not work for {self.kind}; choose one of {', '.join(allowed)}")
        if self.metric not in LOGIT_METRICS:
            raise WorkbenchError(f"unknown metric {self.metric!r}; choose one of {', '.join(LOGIT_METRICS)}")
        if self.n_scenarios < 1:
            raise WorkbenchError("use at least one scenario")
        if self.layer is not None and n_layers is not None and not 0 <= self.layer < n_layers:
            raise WorkbenchError(f"layer {self.layer} is out of range: this model has {n_layers} layers "
                                 f"(0 to {n_layers - 1})")
        check_strengths(self.strengths)


@dataclass(frozen=True)
class Curve:
    """Mean per-scenario effect at each strength, with bootstrap 95% intervals and n."""

    label: str
    role: Literal["target", "random", "other condition"]
    condition: str
    strengths: tuple[float, ...]
    effects: tuple[Estimate, ...]
    unedited: Estimate
    """The metric without the edit (strength 0) on the same scenarios."""


@dataclass(frozen=True)
class Generation:
    scenario_id: str
    question: str
    true_answer: str
    before: str
    after: str
    strength: float

    @property
    def truthful_before(self) -> bool:
        return answer_matches(self.before, self.true_answer)

    @property
    def truthful_after(self) -> bool:
        return answer_matches(self.after, self.true_answer)


@dataclass(frozen=True)
class LabResult:
    settings: LabSettings
    metric: str
    curves: tuple[Curve, ...]
    generations: tuple[Generation, ...] = ()
    random_sets: tuple[tuple[int, ...], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def target(self) -> Curve:
        return self.curves[0]

    def rows(self) -> list[dict[str, Any]]:
        """One row per curve and strength: the numbers behind the plot."""
        out = []
        for curve in self.curves:
            for strength, effect in zip(curve.strengths, curve.effects):
                out.append({"edit": curve.label, "condition": curve.condition, "strength": strength,
                            f"{self.metric} change": round(effect.value, 4),
                            "95% CI": f"[{effect.low:.4f}, {effect.high:.4f}]", "n": effect.n,
                            f"unedited {self.metric}": round(curve.unedited.value, 4)})
        return out


# ----------------------------------------------------------------------------- feature statistics


def feature_density(capture: Any, site: str, d_sae: int) -> torch.Tensor:
    """Fraction of captured tokens on which each feature fires ([d_sae])."""
    activations = capture.site(site)
    counts = torch.bincount(activations.features.long(), minlength=d_sae).float()
    return counts / max(int(capture.n_tokens), 1)


def mean_nonzero(capture: Any, site: str, features: Sequence[int], condition: str | None = None) -> list[float]:
    """Per feature, its mean activation over the tokens where it fires (of one condition's items,
    if given); 1.0 where it never fires."""
    activations = capture.site(site)
    keep = None
    if condition is not None:
        keep = torch.zeros(int(capture.n_tokens), dtype=torch.bool)
        for item in capture.items:
            if item.condition == condition:
                keep[item.token_start : item.token_start + item.n_tokens] = True
    out = []
    for feature in features:
        values = activations.feature_values(int(feature))
        if keep is not None:
            values = values[keep]
        active = values[values > 0]
        out.append(float(active.mean()) if active.numel() else 1.0)
    return out


def mean_activation(capture: Any, site: str, features: Sequence[int], condition: str) -> tuple[float, ...]:
    """Per feature, its mean activation over every token of one condition's captured items."""
    activations = capture.site(site)
    keep = torch.zeros(int(capture.n_tokens), dtype=torch.bool)
    for item in capture.items:
        if item.condition == condition:
            keep[item.token_start : item.token_start + item.n_tokens] = True
    if not keep.any():
        raise WorkbenchError(f"mean ablation needs captured {condition} scenarios; none are captured")
    return tuple(float(activations.feature_values(int(f))[keep].mean()) for f in features)


# ----------------------------------------------------------------------------- scenarios


def choose_scenarios(scenarios: Sequence[Scenario], condition: str, n: int) -> list[Scenario]:
    """The first ``n`` scenarios of a condition about facts the model knows (held-out facts
    first, then file order), so the same settings always test the same scenarios."""
    pool = [s for s in scenarios if s.condition.value == condition and s.fact_known is not False]
    if not pool:
        present = sorted({s.condition.value for s in scenarios})
        raise WorkbenchError(f"the scenario file has no {condition} scenarios about known facts "
                             f"(conditions present: {', '.join(present)})")
    pool.sort(key=lambda s: 0 if s.split.value == "heldout" else 1)
    return pool[:n]


def _render(model: LoadedModel, scenario: Scenario) -> RenderedItem:
    return render_conversation(model.tokenizer, [m.model_dump() for m in scenario.messages])


def paired_sources(scenarios: Sequence[Scenario], pool: Sequence[Scenario], condition: str) -> list[Scenario]:
    """For each scenario, the ``condition`` scenario about the same fact (patching source)."""
    by_fact: dict[str, Scenario] = {}
    for s in pool:
        if s.condition.value == condition:
            by_fact.setdefault(s.fact_id, s)
    missing = [s.id for s in scenarios if s.fact_id not in by_fact]
    if missing:
        raise WorkbenchError(f"no {condition} scenario about the same fact as {', '.join(missing[:3])}"
                             f"{'...' if len(missing) > 3 else ''}: pick another source condition")
    return [by_fact[s.fact_id] for s in scenarios]


# ----------------------------------------------------------------------------- the sweep


def edit_site(settings: LabSettings, model: LoadedModel, sae: LoadedSAE) -> str:
    """The site the edit acts on: the SAE's, or the residual stream after the chosen layer."""
    if settings.edits_features or settings.layer is None:
        return sae.site.name
    return layer_site(settings.layer, model.hf_model).name


def probe_direction(model: LoadedModel, site: str, scenarios: Sequence[Scenario], positive: str, negative: str,
                    max_per_condition: int = 64) -> torch.Tensor:
    """Difference-of-means direction (positive minus negative condition, unit norm, ``[d_model]``)
    at the site's last prompt token, from train-split scenarios about known facts."""
    train = [s for s in scenarios if s.split.value == "train" and s.fact_known is not False]
    groups = [[s for s in train if s.condition.value == c][:max_per_condition] for c in (positive, negative)]
    if min(len(g) for g in groups) < 2:
        raise WorkbenchError(f"the probe needs at least 2 train-split scenarios of {positive} and of {negative} about "
                             f"known facts; the scenario file has {len(groups[0])} and {len(groups[1])}")
    acts = residual_at_last_prompt_token(model, site, [_render(model, s) for s in groups[0] + groups[1]])
    return difference_of_means(acts[: len(groups[0])], acts[len(groups[0]) :])


def steering_scale(settings: LabSettings, model: LoadedModel, sae: LoadedSAE, features: Sequence[int],
                   scenarios: Sequence[Scenario], capture: Any = None) -> float:
    """Residual units per unit of strength (see ``LabSettings.scale``)."""
    if settings.scale == "unit":
        return 1.0
    if settings.scale == "residual":
        acts = residual_at_last_prompt_token(model, edit_site(settings, model, sae), [_render(model, s) for s in scenarios])
        return float(acts.norm(dim=1).mean())
    typical = sum(mean_nonzero(capture, sae.site.name, features)) if capture is not None else 1.0
    return typical * float(sae.sae.W_dec[list(features)].detach().float().sum(0).norm())


def build_edit(settings: LabSettings, model: LoadedModel, sae: LoadedSAE, features: Sequence[int],
               scenarios: Sequence[Scenario], pool: Sequence[Scenario], capture: Any = None, *,
               direction: torch.Tensor | None = None, scale: float | None = None):
    """The edit object for one set of features (the target's or a random control's), or for a
    given steering ``direction`` (a probe's or a random one) at ``scale``."""
    if settings.kind == "ablate":
        means = mean_activation(capture, sae.site.name, features, settings.reference) if settings.mode == "mean" else None
        return Ablation(features=tuple(features), mode=settings.mode, mean_values=means, positions=settings.positions)
    if settings.kind == "steer":
        if direction is None:
            direction = feature_direction(sae, features)
        if scale is None:
            scale = steering_scale(settings, model, sae, features, scenarios, capture)
        return Steering(direction=direction, scale=scale, positions=settings.positions)
    sources = paired_sources(scenarios, pool, settings.reference)
    return Patch(source=tuple(_render(model, s) for s in sources), positions="last_prompt_token")


def _located(sae: LoadedSAE, site: str | None) -> dict[str, Any]:
    """Where an edit acts, as the keyword arguments of ``edited_logits``/``edited_generate``: the
    SAE (its site) unless another site is named."""
    return {"sae": sae} if site is None or site == sae.site.name else {"site": site}


def measure(model: LoadedModel, sae: LoadedSAE, scenarios: Sequence[Scenario], edit, strengths: Sequence[float],
            metric: str, site: str | None = None) -> torch.Tensor:
    """The metric per scenario and strength ([n, k]) under the edit (at ``site``; default the SAE's)."""
    items = [_render(model, s) for s in scenarios]
    logits = edited_logits(model, items, edit, strengths=strengths, item_ids=[s.id for s in scenarios],
                           **_located(sae, site))
    true_ids, false_ids = answer_token_ids(model.tokenizer, scenarios)
    return logit_metrics(logits, true_ids, false_ids)[metric]


def _curve(label: str, role: str, condition: str, strengths: Sequence[float], values: torch.Tensor,
           clusters: Sequence[str], seed: int) -> Curve:
    zero = list(strengths).index(0.0)
    effects = values - values[:, zero : zero + 1]  # [n, k], paired per scenario
    return Curve(label=label, role=role, condition=condition, strengths=tuple(strengths),  # type: ignore[arg-type]
                 effects=tuple(mean_estimate(effects[:, k], seed=seed, cluster=clusters) for k in range(len(strengths))),
                 unedited=mean_estimate(values[:, zero], seed=seed, cluster=clusters))


def run_lab(model: LoadedModel, sae: LoadedSAE, scenarios: Sequence[Scenario], settings: LabSettings, *,
            capture: Any = None, density: torch.Tensor | None = None, progress: Progress | None = None,
            max_new_tokens: int = 6) -> LabResult:
    """Run the sweep on the target condition, the controls, and a few generations before/after.

    ``capture`` (of the same model and SAE) supplies feature densities for the random controls,
    typical firings for steering and means for mean ablation; without it random controls are
    skipped. Never leaves hooks on the model: every edit lives inside one nnsight trace.
    """
    settings.check(sae.d_sae, model.n_layers)
    say = progress or (lambda message, fraction: None)
    strengths = sorted({float(s) for s in settings.strengths} | {0.0})
    target_scenarios = choose_scenarios(scenarios, settings.condition, settings.n_scenarios)
    clusters = [s.fact_id for s in target_scenarios]
    features = tuple(settings.features)
    notes: list[str] = []
    steps = 1 + (settings.n_random > 0) * settings.n_random + (settings.control_condition is not None) + (settings.n_generations > 0)
    done = 0

    def step(message: str) -> None:
        nonlocal done
        say(message, done / steps)
        done += 1

    site = edit_site(settings, model, sae)
    direction = None
    # one scale for the target and every control, except per feature set on the feature scale
    scale = steering_scale(settings, model, sae, features, target_scenarios, capture) \
        if settings.kind == "steer" and settings.scale != "feature" else None
    if settings.probe is not None:
        say(f"probe direction {settings.probe[0]} - {settings.probe[1]} at {site} (train split)", 0.0)
        direction = probe_direction(model, site, scenarios, *settings.probe)
        notes.append(f"probe direction: difference of means {settings.probe[0]} - {settings.probe[1]} at {site}, "
                     f"train-split scenarios; 1 strength unit = {scale:.3g} residual units")

    def edit_for(chosen: Sequence[Scenario], random_features: Sequence[int] | None = None,
                 random_direction: torch.Tensor | None = None):
        if random_direction is not None:
            return build_edit(settings, model, sae, (), chosen, scenarios, capture, direction=random_direction,
                              scale=scale)
        return build_edit(settings, model, sae, features if random_features is None else random_features, chosen,
                          scenarios, capture, direction=direction, scale=scale)

    step(f"target: {settings.kind} on {len(target_scenarios)} {settings.condition} scenarios x {len(strengths)} strengths")
    values = measure(model, sae, target_scenarios, edit_for(target_scenarios), strengths, settings.metric, site)
    curves = [_curve(settings.target_label(), "target", settings.condition, strengths, values, clusters, settings.seed)]

    random_sets: list[tuple[int, ...]] = []
    if settings.n_random > 0:
        if settings.kind == "patch":
            step("random control: patch from another fact")
            shuffled = list(target_scenarios[1:]) + list(target_scenarios[:1])
            sources = paired_sources(shuffled, scenarios, settings.reference)
            control = Patch(source=tuple(_render(model, s) for s in sources), positions="last_prompt_token")
            if len(target_scenarios) > 1:
                control_values = measure(model, sae, target_scenarios, control, strengths, settings.metric, site)
                curves.append(_curve("patch from another fact", "random", settings.condition, strengths, control_values,
                                     clusters, settings.seed))
            else:
                notes.append("the patching control needs at least two scenarios")
        elif settings.probe is not None:
            per_set = []
            for index in range(settings.n_random):
                step(f"random control {index + 1}/{settings.n_random}: a random direction of the same scale")
                generator = torch.Generator().manual_seed(settings.seed + index)
                random_direction = torch.randn(model.d_model, generator=generator)
                per_set.append(measure(model, sae, target_scenarios, edit_for(target_scenarios, random_direction=random_direction),
                                       strengths, settings.metric, site))
            sets_label = "1 direction" if settings.n_random == 1 else f"{settings.n_random} directions, averaged"
            curves.append(_curve(f"random directions ({sets_label})", "random", settings.condition, strengths,
                                 torch.stack(per_set).mean(0), clusters, settings.seed))
        elif density is None:
            notes.append("random controls skipped: no feature densities (capture the scenarios first)")
        else:
            decoder_norm = sae.sae.W_dec.float().norm(dim=1).detach()
            random_sets = matched_random_features(features, density, decoder_norm, n_sets=settings.n_random,
                                                  seed=settings.seed)
            per_set = []
            for index, random_features in enumerate(random_sets):
                step(f"random control {index + 1}/{len(random_sets)}: features {', '.join(map(str, random_features))}")
                control = edit_for(target_scenarios, random_features=random_features)
                per_set.append(measure(model, sae, target_scenarios, control, strengths, settings.metric, site))
            mean_values = torch.stack(per_set).mean(0)
            sets_label = "1 set" if len(random_sets) == 1 else f"{len(random_sets)} sets, averaged"
            curves.append(_curve(f"random matched features ({sets_label})", "random",
                                 settings.condition, strengths, mean_values, clusters, settings.seed))

    if settings.control_condition is not None:
        if settings.control_condition == settings.condition:
            notes.append("the other-condition control is the target condition; skipped")
        else:
            step(f"same edit on {settings.control_condition}")
            try:
                others = choose_scenarios(scenarios, settings.control_condition, settings.n_scenarios)
                other_edit = edit_for(others)
            except WorkbenchError as error:
                notes.append(f"other-condition control skipped: {error}")
            else:
                other_values = measure(model, sae, others, other_edit, strengths, settings.metric, site)
                curves.append(_curve(f"same edit on {settings.control_condition}", "other condition",
                                     settings.control_condition, strengths, other_values,
                                     [s.fact_id for s in others], settings.seed))

    generations: list[Generation] = []
    if settings.n_generations > 0:
        strongest = max(strengths, key=abs)
        shown = target_scenarios[: settings.n_generations]
        step(f"generating {len(shown)} answers unedited and at strength {strongest:g}")
        if strongest != 0:
            answers = edited_generate(model, [_render(model, s) for s in shown], edit_for(shown),
                                      strengths=[0.0, strongest], max_new_tokens=max_new_tokens, **_located(sae, site))
            for scenario, (before, after) in zip(shown, answers):
                question = next((m.content for m in reversed(scenario.messages) if m.role == "user"), "")
                generations.append(Generation(scenario_id=scenario.id, question=question,
                                              true_answer=scenario.true_answer, before=before, after=after,
                                              strength=strongest))
    say("done", 1.0)
    return LabResult(settings=settings, metric=settings.metric, curves=tuple(curves), generations=tuple(generations),
                     random_sets=tuple(random_sets), notes=tuple(notes))


# ----------------------------------------------------------------------------- hypotheses from the lab


def hypothesis_from_lab(settings: LabSettings, *, name: str, claim: str, comparison: str, threshold: float,
                        model_ref: dict[str, Any], sae_ref: dict[str, Any], scenarios_file: str | None = None,
                        at_strength: float | None = None) -> Any:
    """A validated ``Hypothesis`` whose one causal test is the lab's experiment.

    Raises ``WorkbenchError`` listing every invalid field (e.g. an empty name)."""
    from workbench.hypotheses.runner import parse_hypothesis

    if settings.layer is not None:
        raise WorkbenchError("hypothesis files edit at the SAE's site: unset the layer to save this experiment")
    strengths = [s for s in settings.strengths if s != 0.0] or [1.0]
    intervention: dict[str, Any] = {"kind": settings.kind, "strengths": strengths, "positions": settings.positions}
    if settings.kind == "ablate":
        intervention |= {"mode": settings.mode, "mean_over": settings.reference}
    elif settings.kind == "steer":
        intervention["scale"] = settings.scale
    else:
        intervention["patch_from"] = settings.reference
    controls = ["random", "other_conditions"] + (["sign_flip"] if settings.kind != "patch" else [])
    test = {"name": f"{settings.kind}-{settings.condition}-{settings.metric}", "intervention": intervention,
            "condition": settings.condition, "metric": settings.metric, "comparison": comparison,
            "threshold": threshold, "controls": controls}
    if settings.control_condition:
        test["other_conditions"] = [settings.control_condition]
    if at_strength is not None:
        test["at_strength"] = at_strength
    data: dict[str, Any] = {"name": name.strip(), "claim": claim.strip(), "model": model_ref, "sae": sae_ref,
                            "tests": [test], "seed": settings.seed}
    if settings.probe is not None:
        data["direction"] = {"probe": "difference_of_means", "positive": settings.probe[0],
                             "negative": settings.probe[1]}
    else:
        data["features"] = list(settings.features)
    if scenarios_file:
        data["scenarios"] = {"source": "file", "file": scenarios_file}
    if not data["name"]:
        raise WorkbenchError("give the hypothesis a name")
    if not data["claim"]:
        raise WorkbenchError("state the claim in words")
    return parse_hypothesis(data, f"hypothesis {data['name']!r}")


def model_and_sae_refs(model_spec: Any, sae_spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hypothesis-file form (``model:``, ``sae:``) of the app's current model and SAE specs.

    A registry SAE on the model it was trained on is written as ``adapter: auto`` (portable: no
    adapter path of this machine in the file)."""
    from workbench.model.saes import default_model_spec

    model_ref: dict[str, Any] = {"source": model_spec.source, "adapter": model_spec.adapter,
                                 "gguf_file": model_spec.gguf_file}
    if sae_spec.path:
        sae_ref: dict[str, Any] = {"path": sae_spec.path}
    elif sae_spec.release:
        sae_ref = {"release": sae_spec.release, "id": sae_spec.sae_id}
    else:
        sae_ref = {"registry": sae_spec.registry_name}
        if model_spec == default_model_spec(sae_spec.registry_name):
            model_ref["adapter"] = "auto"
    return model_ref, sae_ref


def hypothesis_specs(hypothesis: Any) -> tuple[Any, Any]:
    """The ``ModelSpec`` and ``SAESpec`` a hypothesis names (as ``workbench.hypotheses.runner.load_for``
    resolves them), so an app can load them through its own cache."""
    from workbench.model.loading import ModelSpec
    from workbench.model.saes import SAESpec, default_model_spec

    ref, sae = hypothesis.model, hypothesis.sae
    uses_registry = sae.path is None and sae.release is None
    if ref.adapter == "auto":
        if ref.source == "default" and uses_registry and not ref.gguf_file:
            model_spec = default_model_spec(sae.registry)
        else:
            model_spec = ModelSpec(source=ref.source, gguf_file=ref.gguf_file)
    else:
        model_spec = ModelSpec(source=ref.source, gguf_file=ref.gguf_file, adapter=ref.adapter)
    sae_spec = SAESpec(registry_name=sae.registry, path=sae.path, release=sae.release, sae_id=sae.id,
                       site=hypothesis.site)
    return model_spec, sae_spec
