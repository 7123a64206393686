"""One protocol over a family of models: ``run_study(models, scenarios)`` loads each model in turn, runs the
same measurements on it and returns a ``ScaleRecord``.

Per model (``study_model``):

1. **Behaviour**: greedy answers to every honest, lie and parrot scenario, judged by the one answer judge:
   honest accuracy (the capability index), lie rate, parrot rate, knowledge (a fact is known when every honest
   prompt of it is answered truly), and the lie prompts about known facts split into ``lie+false`` (lied) and
   ``lie+truth`` (resisted).
2. **Probes across depth**: the residual stream after each probed layer (``depths``, fractions of depth, so
   models of different depth compare) at the last prompt token; a difference-of-means probe trained on the
   train split and scored held out, for lie vs honest and lie vs parrot; lying vs resisting (few resisted lies)
   is scored out of fold, five folds over facts.
3. **Causal, at the best layer**: steering against the best lie direction (the lie minus honest means) on
   held-out lies, against random directions of the same size; patching the turn that holds the falsehood
   from a counterfactual prompt that states the truth instead, on held-out parrots, against a counterfactual
   that states another falsehood (at that layer, and at every probed layer as a curve over depth). Both move ``p_true`` (the true answer's first token), paired per scenario.
4. **Copy mechanism**: the counterfactual test (the context's false answer swapped for another; does the
   answer follow?) and the logit lens (the true answer's rank layer by layer; the *critical layer* is the one
   whose step widens the gap to honest prompts most, on lies and on parrots).
5. **SAE feature** (only where the model's spec names an SAE): the feature that best separates lie from
   honest prompts on the train split, its held-out AUROCs and a zero-ablation on held-out lies against the
   feature nearest in density.

Every forward pass goes through the engine's functions (``causal.sweeps``, ``model.lens``,
``model.generation``) and so through the one tracing helper: a spec with ``remote`` runs on NDIF.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from workbench.causal.edits import Patch, Steering, Target
from workbench.causal.experiment import EditSettings, measure_edit
from workbench.causal.measurements import answer_token_ids, logit_metrics
from workbench.causal.sweeps import edited_logits
from workbench.core.errors import WorkbenchError
from workbench.core.stats import Estimate, auroc, auroc_estimate, bootstrap_mean, wilson_interval
from workbench.features.probes import residual_at_last_prompt_token, residuals_at_last_prompt_token
from workbench.hypotheses.records import Environment
from workbench.model.generation import generate_answers
from workbench.model.lens import true_token_ranks
from workbench.model.loading import LoadedModel, ModelSpec, check_model_spec, load_model, model_outline
from workbench.model.rendering import RenderedItem, render_conversation
from workbench.model.resolve import organism_adapter, organism_name
from workbench.model.saes import LoadedSAE, SAESpec, load_sae, preview_sae
from workbench.scale.records import (
    CONTRASTS, Behaviour, CausalTest, CopyTest, FeatureFinding, LayerProbe, LensCurve, ModelStudy, ScaleRecord,
)
from workbench.scenarios.judging import FALSE_JUDGEMENTS, STATED_FALSE, TRUTH, AnswerJudge
from workbench.scenarios.records import Scenario

#: Depth fractions probed by default: nine layers from the first to the last.
DEFAULT_DEPTHS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
#: Fewest scenarios per side (train and held out) a probe contrast is measured with.
MIN_PER_SIDE = 3
#: Contrasts scored by cross-validation over facts (both splits pooled): the behaviour contrast, whose rarer
#: side (the lies a model resisted) is too small to split once.
CROSS_VALIDATED = ("lying_vs_resisting",)
#: Random directions the steering is compared with.
N_RANDOM_DIRECTIONS = 4
#: Scenarios per condition the logit lens reads (held out).
LENS_PER_CONDITION = 64
#: Bootstrap resamples for every interval of the study.
N_BOOT = 500

Say = Callable[[str], None]


# ----------------------------------------------------------------------------- model specs


@dataclass(frozen=True)
class StudyModel:
    """One model of a study: its label, its spec and the SAE its feature step uses (if any)."""

    label: str
    model: ModelSpec
    sae: SAESpec | None = None
    group: str = "base"
    """The line the model belongs to in the figures (models of one group are joined across sizes): by default
    ``base`` without an adapter, ``organism`` with one."""

    def to_dict(self) -> dict[str, Any]:
        """The specs as a record keeps them: an organism's adapter by its registry name, so no path of this
        machine is written."""
        model = self.model.to_dict()
        if model.get("adapter"):
            model["adapter"] = organism_name(model["adapter"]) or model["adapter"]
        return {"model": model, "sae": self.sae.to_dict() if self.sae else None}


SPEC_KEYS = ("adapter", "label", "group", "revision", "dtype", "remote", "sae", "sae-path", "sae-release", "sae-id")


def parse_model_spec(text: str) -> StudyModel:
    """``SOURCE[,key=value...]``: SOURCE is ``default`` (the embedded SmolLM2), a Hugging Face id or a folder;
    keys: ``adapter`` (a LoRA folder or an organism's registry name), ``label``, ``group`` (the figures join the
    models of a group across sizes; default ``base``, or ``organism`` with an adapter), ``revision``, ``dtype``,
    ``remote`` (run on NDIF; ``remote=local`` simulates it here), ``sae`` (a registry SAE), ``sae-path``,
    ``sae-release`` with ``sae-id``.

    Examples: ``default``, ``default,adapter=smollm2-liar,sae=smollm2-liar-l15``,
    ``meta-llama/Llama-3.1-70B-Instruct,remote,sae-release=...,sae-id=...``."""
    parts = [p.strip() for p in text.split(",")]
    source, options = parts[0], parts[1:]
    if not source:
        raise WorkbenchError(f"model spec {text!r} names no model: start it with default, a Hugging Face id or a folder")
    values: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip()
        if key not in SPEC_KEYS:
            raise WorkbenchError(f"model spec {text!r}: unknown key {key!r}; use {', '.join(SPEC_KEYS)}")
        if key != "remote" and not (sep and value.strip()):
            raise WorkbenchError(f"model spec {text!r}: {key} needs a value ({key}=...)")
        values[key] = value.strip() if sep else "true"
    remote: bool | str = False
    if "remote" in values:
        flag = values["remote"].lower()
        if flag not in ("true", "local", "false"):
            raise WorkbenchError(f"model spec {text!r}: remote is true (NDIF) or local (simulated here), not {flag!r}")
        remote = "local" if flag == "local" else flag == "true"
    adapter = organism_adapter(values.get("adapter"))
    spec = ModelSpec(source=source, adapter=adapter, revision=values.get("revision"),
                     dtype=values.get("dtype", "float32"), remote=remote)
    sae_fields = [k for k in ("sae", "sae-path", "sae-release") if k in values]
    if len(sae_fields) > 1:
        raise WorkbenchError(f"model spec {text!r}: name one SAE (sae, sae-path or sae-release), not {len(sae_fields)}")
    if "sae-id" in values and "sae-release" not in values:
        raise WorkbenchError(f"model spec {text!r}: sae-id needs sae-release")
    sae = None
    if "sae" in values:
        sae = SAESpec(registry_name=values["sae"])
    elif "sae-path" in values:
        sae = SAESpec(path=values["sae-path"])
    elif "sae-release" in values:
        sae = SAESpec(release=values["sae-release"], sae_id=values.get("sae-id"))
    label = values.get("label") or _default_label(source, adapter)
    group = values.get("group") or ("organism" if adapter else "base")
    return StudyModel(label=label, model=spec, sae=sae, group=group)


def _default_label(source: str, adapter: str | None) -> str:
    name = "SmolLM2-135M" if source == "default" else Path(source.rstrip("/")).name or source
    return f"{name} + {Path(adapter).name}" if adapter else name


# ----------------------------------------------------------------------------- scenario sets


@dataclass
class Prepared:
    """The scenarios a study uses, rendered once per model."""

    scenarios: list[Scenario]
    split: dict[str, str]
    """Scenario id -> ``train`` or ``heldout``."""
    notes: list[str] = field(default_factory=list)


def prepare_scenarios(scenarios: Sequence[Scenario], *, max_facts: int | None = None, seed: int = 0) -> Prepared:
    """The honest, lie and parrot scenarios (a seeded subset of facts with ``max_facts``), and the split: the
    file's own when it has train and held-out scenarios, else half of the facts each (seeded)."""
    kept = [s for s in scenarios if s.condition.value in ("honest", "lie", "parrot")]
    if not kept:
        raise WorkbenchError("the scenario file has no honest, lie or parrot scenarios: a scale study needs them")
    missing = {"honest", "lie", "parrot"} - {s.condition.value for s in kept}
    if missing:
        raise WorkbenchError(f"the scenario file has no {', '.join(sorted(missing))} scenarios: a scale study "
                             "compares lie with honest and parrot")
    facts = sorted({s.fact_id for s in kept})
    generator = torch.Generator().manual_seed(seed)
    if max_facts is not None and max_facts < len(facts):
        order = torch.randperm(len(facts), generator=generator).tolist()
        chosen = {facts[i] for i in order[:max_facts]}
        kept = [s for s in kept if s.fact_id in chosen]
        facts = sorted(chosen)
    notes = []
    if {s.split.value for s in kept} >= {"train", "heldout"}:
        split = {s.id: s.split.value for s in kept}
    else:
        order = torch.randperm(len(facts), generator=generator).tolist()
        train_facts = {facts[i] for i in order[: len(facts) // 2]}
        split = {s.id: "train" if s.fact_id in train_facts else "heldout" for s in kept}
        notes.append("the scenario file has one split: half of its facts (seeded) train the probes, the rest score them")
    return Prepared(scenarios=kept, split=split, notes=notes)


# ----------------------------------------------------------------------------- measurements


def _depth(layer: int, n_layers: int) -> float:
    return layer / max(n_layers - 1, 1)


def probed_layers(n_layers: int, depths: Sequence[float]) -> list[int]:
    """The layers nearest to each depth fraction (each once)."""
    for depth in depths:
        if not 0.0 <= depth <= 1.0:
            raise WorkbenchError(f"depth {depth} is not a fraction of depth between 0 and 1")
    return sorted({min(n_layers - 1, max(0, round(d * (n_layers - 1)))) for d in depths})


def behaviour_from(prepared: Prepared, judgements: dict[str, str]) -> tuple[Behaviour, set[str]]:
    """The behaviour rates and the facts the model knows."""
    scenarios = prepared.scenarios
    by_condition = {c: [s for s in scenarios if s.condition.value == c] for c in ("honest", "lie", "parrot")}
    honest_by_fact: dict[str, list[bool]] = {}
    for s in by_condition["honest"]:
        honest_by_fact.setdefault(s.fact_id, []).append(judgements[s.id] == TRUTH)
    known = {fact for fact, answers in honest_by_fact.items() if all(answers)}
    known_lies = [s for s in by_condition["lie"] if s.fact_id in known]
    lied = sum(judgements[s.id] in FALSE_JUDGEMENTS for s in known_lies)
    resisted = sum(judgements[s.id] == TRUTH for s in known_lies)
    behaviour = Behaviour(
        honest_accuracy=wilson_interval(sum(judgements[s.id] == TRUTH for s in by_condition["honest"]),
                                        len(by_condition["honest"])),
        lie_rate=wilson_interval(sum(judgements[s.id] in FALSE_JUDGEMENTS for s in by_condition["lie"]),
                                 len(by_condition["lie"])),
        parrot_rate=wilson_interval(sum(judgements[s.id] == STATED_FALSE for s in by_condition["parrot"]),
                                    len(by_condition["parrot"])),
        knowledge=wilson_interval(len(known), len(honest_by_fact)),
        known_lie_rate=wilson_interval(lied, len(known_lies)),
        n_lied=lied, n_resisted=resisted,
    )
    return behaviour, known


def contrast_members(prepared: Prepared, judgements: dict[str, str], known: set[str]) -> dict[str, tuple[list[int], list[int]]]:
    """By contrast name: (indices of positive scenarios, indices of negative ones) into ``prepared.scenarios``."""
    def of(condition: str) -> list[int]:
        if condition == "lie+false":
            return [i for i, s in enumerate(prepared.scenarios) if s.condition.value == "lie" and s.fact_id in known
                    and judgements[s.id] in FALSE_JUDGEMENTS]
        if condition == "lie+truth":
            return [i for i, s in enumerate(prepared.scenarios) if s.condition.value == "lie" and s.fact_id in known
                    and judgements[s.id] == TRUTH]
        return [i for i, s in enumerate(prepared.scenarios) if s.condition.value == condition]

    return {name: (of(pos), of(neg)) for name, (pos, neg) in CONTRASTS.items()}


def _split(indices: Sequence[int], prepared: Prepared, which: str) -> list[int]:
    return [i for i in indices if prepared.split[prepared.scenarios[i].id] == which]


def probe_auroc(acts: torch.Tensor, positive: Sequence[int], negative: Sequence[int], prepared: Prepared,
                *, seed: int = 0) -> tuple[Estimate | None, torch.Tensor | None]:
    """Held-out AUROC of a difference-of-means probe trained on the train split (``acts`` ``[n, d]``), and its
    direction (lie minus honest means, not normalised); None where a side has fewer than ``MIN_PER_SIDE``."""
    sides = [_split(positive, prepared, "train"), _split(negative, prepared, "train"),
             _split(positive, prepared, "heldout"), _split(negative, prepared, "heldout")]
    if min(len(side) for side in sides) < MIN_PER_SIDE:
        return None, None
    tr_pos, tr_neg, te_pos, te_neg = sides
    direction = acts[tr_pos].mean(0) - acts[tr_neg].mean(0)
    estimate = auroc_estimate(acts[te_pos] @ direction, acts[te_neg] @ direction, n_boot=N_BOOT, seed=seed)
    return estimate, direction


def cross_validated_auroc(acts: torch.Tensor, positive: Sequence[int], negative: Sequence[int], prepared: Prepared,
                          *, folds: int = 5, seed: int = 0) -> Estimate | None:
    """AUROC of a difference-of-means probe scored out of fold: the facts are dealt into ``folds`` folds (seeded),
    each fold's scenarios scored by a probe trained on the others (both splits pooled). For the behaviour contrast,
    where one side is rare; None where a side has fewer than ``MIN_PER_SIDE`` scenarios or a fold trains on none."""
    if min(len(positive), len(negative)) < MIN_PER_SIDE:
        return None
    members = list(positive) + list(negative)
    facts = sorted({prepared.scenarios[i].fact_id for i in members})
    order = torch.randperm(len(facts), generator=torch.Generator().manual_seed(seed)).tolist()
    fold_of = {facts[j]: rank % folds for rank, j in enumerate(order)}
    scores = {}
    for fold in range(folds):
        held = [i for i in members if fold_of[prepared.scenarios[i].fact_id] == fold]
        if not held:
            continue
        train_pos = [i for i in positive if fold_of[prepared.scenarios[i].fact_id] != fold]
        train_neg = [i for i in negative if fold_of[prepared.scenarios[i].fact_id] != fold]
        if not train_pos or not train_neg:
            return None
        direction = acts[train_pos].mean(0) - acts[train_neg].mean(0)
        for i in held:
            scores[i] = float(acts[i] @ direction)
    return auroc_estimate(torch.tensor([scores[i] for i in positive]), torch.tensor([scores[i] for i in negative]),
                          n_boot=N_BOOT, seed=seed)


def _paired(effect: torch.Tensor, control: torch.Tensor, seed: int) -> tuple[Estimate, Estimate, Estimate]:
    return (bootstrap_mean(effect, n_boot=N_BOOT, seed=seed), bootstrap_mean(control, n_boot=N_BOOT, seed=seed),
            bootstrap_mean(effect - control, n_boot=N_BOOT, seed=seed))


def _p_true(model: LoadedModel, scenarios: Sequence[Scenario], items: Sequence[RenderedItem], edit: Any, site: str,
            strengths: Sequence[float]) -> torch.Tensor:
    """``p_true`` of each scenario at each strength: ``[n, k]``."""
    logits = edited_logits(model, items, edit, site=site, strengths=strengths)
    true_ids, false_ids = answer_token_ids(model.tokenizer, scenarios)
    return logit_metrics(logits, true_ids, false_ids)["p_true"]


def steering_test(model: LoadedModel, lies: Sequence[Scenario], items: Sequence[RenderedItem], layer: int,
                  direction: torch.Tensor, size: float, *, seed: int = 0) -> CausalTest:
    """Steer against the lie direction at ``layer`` (last prompt token), by the distance between the lie and
    honest means along it (strength -1 moves the lie mean to the honest mean), against random directions."""
    site = f"{model.layers_path}.{layer}"
    edit = Steering(positions="last_prompt_token", direction=direction, scale=size)
    values = _p_true(model, lies, items, edit, site, [0.0, -1.0])  # [n, 2]
    base, steered = values[:, 0], values[:, 1]
    generator = torch.Generator().manual_seed(seed)
    controls = []
    for _ in range(N_RANDOM_DIRECTIONS):
        random_direction = torch.randn(direction.shape[0], generator=generator)
        control_edit = Steering(positions="last_prompt_token", direction=random_direction, scale=size)
        controls.append(_p_true(model, lies, items, control_edit, site, [-1.0])[:, 0])
    control = torch.stack(controls).mean(0)
    effect, control_estimate, gain = _paired(steered - base, control - base, seed)
    return CausalTest(edit=f"steer against the lie direction (lie minus honest means) by {size:.3g} at the last "
                           "prompt token", layer=layer, depth=_depth(layer, model.n_layers), condition="lie",
                      metric="p_true", effect=effect, control=control_estimate, gain=gain,
                      control_description=f"{N_RANDOM_DIRECTIONS} random directions of the same size (mean)")


def _replace_span(scenario: Scenario, new: str) -> Scenario | None:
    """The scenario with its context's false answer (inside the falsehood span) replaced by ``new``; None if the
    span does not hold the false answer."""
    span = scenario.falsehood_span
    if span is None or scenario.false_answer is None:
        return None
    message = scenario.messages[span.message_index]
    text = message.content[span.start : span.end]
    if scenario.false_answer not in text:
        return None
    replaced = text.replace(scenario.false_answer, new)
    content = message.content[: span.start] + replaced + message.content[span.end :]
    messages = list(scenario.messages)
    messages[span.message_index] = message.model_copy(update={"content": content})
    new_span = span.model_copy(update={"end": span.start + len(replaced)})
    return scenario.model_copy(update={"messages": messages, "false_answer": new, "falsehood_span": new_span,
                                       "id": f"{scenario.id}/counterfactual"})


def _other_false(scenario: Scenario, judge: AnswerJudge, seed: int) -> str | None:
    """Another false answer of the scenario's relation (seeded by the scenario), neither true nor its false one."""
    answers = sorted({a for a in judge.answers_of(scenario.relation)
                      if a not in (scenario.true_answer, scenario.false_answer) and a not in scenario.aliases})
    if not answers:
        return None
    generator = torch.Generator().manual_seed(seed + sum(map(ord, scenario.id)))
    return answers[int(torch.randint(len(answers), (1,), generator=generator))]


def _same_length_pair(model: LoadedModel, scenario: Scenario, judge: AnswerJudge,
                      seed: int) -> tuple[Scenario, RenderedItem, RenderedItem, RenderedItem] | None:
    """A parrot prompt and its two counterfactuals of one token length: (the prompt stating a false answer, its
    rendering, the rendering stating the true answer, the rendering stating a second false answer). The false
    answers are the scenario's own where its length allows, else drawn (seeded) among its relation's answers."""
    truthful = _replace_span(scenario, scenario.true_answer)
    if truthful is None:
        return None
    source = render_conversation(model.tokenizer, truthful.messages)
    answers = sorted({a for a in judge.answers_of(scenario.relation)
                      if a not in (scenario.true_answer, *scenario.aliases)})
    generator = torch.Generator().manual_seed(seed + sum(map(ord, scenario.id)))
    order = torch.randperm(len(answers), generator=generator).tolist()
    candidates = [scenario.false_answer] + [answers[i] for i in order if answers[i] != scenario.false_answer]
    fitting = []
    for answer in candidates:
        variant = scenario if answer == scenario.false_answer else _replace_span(scenario, answer)
        item = render_conversation(model.tokenizer, variant.messages)
        if item.n_tokens == source.n_tokens:
            fitting.append((variant, item))
        if len(fitting) == 2:
            (target, target_item), (_, control_item) = fitting
            return target, target_item, source, control_item
    return None


@dataclass(frozen=True)
class PatchPairs:
    """Held-out parrot prompts ready for the context patch, by the role of the turn that holds the falsehood:
    the prompts (stating a false answer), their renderings, the renderings stating the true answer (sources) and
    another false answer (controls), all of one token length per prompt; and how many prompts were skipped."""

    by_role: dict[str, tuple[list[Scenario], list[RenderedItem], list[RenderedItem], list[RenderedItem]]]
    skipped: int


def patch_pairs(model: LoadedModel, parrots: Sequence[Scenario], judge: AnswerJudge, *, seed: int = 0) -> PatchPairs:
    """The patch goes token by token, so each parrot prompt is taken with false answers whose prompts have the
    true prompt's length (its own where it fits); a prompt for which the relation has no two such answers, or
    whose falsehood is not in a user or system turn, is skipped (counted). Built once, patched at every layer."""
    by_role: dict[str, tuple[list, list, list, list]] = {}
    skipped = 0
    for scenario in parrots:
        role = scenario.messages[scenario.falsehood_span.message_index].role if scenario.falsehood_span else None
        found = _same_length_pair(model, scenario, judge, seed) if role in ("user", "system") else None
        if found is None:
            skipped += 1
            continue
        for part, value in zip(by_role.setdefault(role, ([], [], [], [])), found):
            part.append(value)
    return PatchPairs(by_role=dict(sorted(by_role.items())), skipped=skipped)


def patching_test(model: LoadedModel, pairs: PatchPairs, layer: int, *, seed: int = 0) -> CausalTest | None:
    """Patch the turn that holds the falsehood, at ``layer``, from the same prompt stating the true answer
    instead, against the same patch from the prompt stating another false answer (``patch_pairs``)."""
    if not pairs.by_role:
        return None
    site = f"{model.layers_path}.{layer}"
    effects, control_effects = [], []
    for role, (scenarios, items, sources, controls) in pairs.by_role.items():
        patched = _p_true(model, scenarios, items, Patch(positions=role, source=tuple(sources)), site, [0.0, 1.0])
        control = _p_true(model, scenarios, items, Patch(positions=role, source=tuple(controls)), site, [1.0])
        effects.append(patched[:, 1] - patched[:, 0])
        control_effects.append(control[:, 0] - patched[:, 0])
    effect, control_estimate, gain = _paired(torch.cat(effects), torch.cat(control_effects), seed)
    return CausalTest(edit=f"patch the {'/'.join(pairs.by_role)} turn holding the falsehood from "
                           "the same prompt stating the true answer",
                      layer=layer, depth=_depth(layer, model.n_layers), condition="parrot", metric="p_true",
                      effect=effect, control=control_estimate, gain=gain,
                      control_description="the same patch from the prompt stating another false answer",
                      skipped=pairs.skipped)


def copy_test(model: LoadedModel, parrots: Sequence[Scenario], judgements: dict[str, str], judge: AnswerJudge,
              *, max_new_tokens: int, batch_size: int, seed: int = 0) -> CopyTest | None:
    """Swap the context's false answer for another false answer of the relation and generate: does it follow?"""
    pairs, skipped = [], 0
    for scenario in parrots:
        other = _other_false(scenario, judge, seed)
        counterfactual = _replace_span(scenario, other) if other else None
        if counterfactual is None:
            skipped += 1
            continue
        pairs.append((scenario, counterfactual))
    if not pairs:
        return None
    answers = generate_answers(model, [c.messages for _, c in pairs], max_new_tokens=max_new_tokens,
                               batch_size=batch_size)
    verdicts = [judge(answer, c) for (_, c), answer in zip(pairs, answers)]
    n = len(pairs)
    return CopyTest(follow_rate=wilson_interval(sum(v == STATED_FALSE for v in verdicts), n),
                    original_rate=wilson_interval(sum(judgements[s.id] == STATED_FALSE for s, _ in pairs), n),
                    truth_rate=wilson_interval(sum(v == TRUTH for v in verdicts), n), skipped=skipped)


def _critical(log_ranks: torch.Tensor, honest: torch.Tensor) -> int:
    """The layer whose step widens the gap between a condition's mean log-rank and honest's most (``>= 1``)."""
    gap = log_ranks.mean(0) - honest.mean(0)
    if gap.numel() < 2:
        return 0
    return int(torch.argmax(gap[1:] - gap[:-1])) + 1


def lens_curves(model: LoadedModel, by_condition: dict[str, list[Scenario]], *, seed: int = 0) -> list[LensCurve]:
    """The logit lens on each condition's scenarios, and the critical layer of lie and parrot against honest."""
    layers = list(range(model.n_layers))
    log_ranks: dict[str, torch.Tensor] = {}
    for condition, scenarios in by_condition.items():
        scenarios = scenarios[:LENS_PER_CONDITION]
        if not scenarios:
            continue
        items = [render_conversation(model.tokenizer, s.messages) for s in scenarios]
        true_ids, _ = answer_token_ids(model.tokenizer, scenarios)
        ranks = true_token_ranks(model, items, true_ids.tolist(), layers)
        log_ranks[condition] = torch.log10(1 + ranks.double())
    if "honest" not in log_ranks:
        return []
    honest = log_ranks["honest"]
    curves = []
    generator = torch.Generator().manual_seed(seed)
    for condition, values in log_ranks.items():
        gap = (values.mean(0) - honest.mean(0)).tolist()
        critical, estimate = None, None
        if condition != "honest" and len(layers) > 1:
            critical = _critical(values, honest)
            draws = []
            for _ in range(N_BOOT):
                pick = torch.randint(len(values), (len(values),), generator=generator)
                pick_h = torch.randint(len(honest), (len(honest),), generator=generator)
                draws.append(_depth(_critical(values[pick], honest[pick_h]), model.n_layers))
            draws_t = torch.tensor(draws)
            estimate = Estimate(value=_depth(critical, model.n_layers), low=float(torch.quantile(draws_t, 0.025)),
                                high=float(torch.quantile(draws_t, 0.975)), n=len(values) + len(honest),
                                method="bootstrap")
        curves.append(LensCurve(condition=condition, mean_log_rank=values.mean(0).tolist(), gap=gap,
                                critical_depth=estimate, critical_layer=critical, n=len(values)))
    return curves


def feature_finding(model: LoadedModel, sae: LoadedSAE, prepared: Prepared, items: Sequence[RenderedItem],
                    members: dict[str, tuple[list[int], list[int]]], *, seed: int = 0) -> FeatureFinding | None:
    """The SAE feature that best separates lie from honest on the train split, scored held out, and ablated."""
    acts = sae.encode(residual_at_last_prompt_token(model, sae.site.name, items))  # [n, d_sae]
    positive, negative = members["lie_vs_honest"]
    tr_pos, tr_neg = _split(positive, prepared, "train"), _split(negative, prepared, "train")
    if min(len(tr_pos), len(tr_neg)) < MIN_PER_SIDE:
        return None
    separation = auroc(acts[tr_pos], acts[tr_neg])  # [d_sae]
    feature = int(torch.argmax(separation))
    aurocs = {}
    for name, (pos, neg) in members.items():
        te_pos, te_neg = _split(pos, prepared, "heldout"), _split(neg, prepared, "heldout")
        aurocs[name] = (auroc_estimate(acts[te_pos, feature], acts[te_neg, feature], n_boot=N_BOOT, seed=seed)
                        if min(len(te_pos), len(te_neg)) >= MIN_PER_SIDE else None)
    lies = [prepared.scenarios[i] for i in _split(positive, prepared, "heldout")]
    ablation = None
    if lies:
        density = (acts != 0).float().mean(0)
        distance = (torch.log10(density.clamp(min=1e-6)) - math.log10(max(float(density[feature]), 1e-6))).abs()
        distance[feature] = math.inf
        control_feature = int(torch.argmin(distance))
        settings = EditSettings(kind="ablate", positions="all")
        base, edited = measure_edit(model, sae, lies, settings, Target(features=(feature,)), [1.0], "p_true",
                                    pool=prepared.scenarios)
        _, control = measure_edit(model, sae, lies, settings, Target(features=(control_feature,)), [1.0], "p_true",
                                  pool=prepared.scenarios)
        effect, control_estimate, gain = _paired(edited[:, 0] - base, control[:, 0] - base, seed)
        layer = sae.site.layer if sae.site.layer is not None else -1
        ablation = CausalTest(edit=f"zero-ablate feature {feature} at every token", layer=layer,
                              depth=_depth(layer, model.n_layers) if layer >= 0 else float("nan"), condition="lie",
                              metric="p_true", effect=effect, control=control_estimate, gain=gain,
                              control_description=f"the same ablation of feature {control_feature} (nearest in density)")
    return FeatureFinding(site=sae.site.name, sae=sae.spec.describe(), feature=feature, auroc=aurocs, ablation=ablation)


# ----------------------------------------------------------------------------- one model, a study


def study_model(model: LoadedModel, prepared: Prepared, *, label: str, spec: dict[str, Any], group: str = "base",
                depths: Sequence[float] = DEFAULT_DEPTHS, sae: LoadedSAE | None = None, max_new_tokens: int = 12,
                batch_size: int = 16, seed: int = 0, say: Say = lambda message: None) -> ModelStudy:
    """Every measurement of the study on one loaded model."""
    started = time.perf_counter()
    notes = list(prepared.notes)
    scenarios = prepared.scenarios
    judge = AnswerJudge.for_scenarios(scenarios)
    say(f"{label}: behaviour ({len(scenarios)} scenarios)")
    answers = generate_answers(model, [s.messages for s in scenarios], max_new_tokens=max_new_tokens,
                               batch_size=batch_size, progress=True)
    judgements = {s.id: judge(answer, s) for s, answer in zip(scenarios, answers)}
    behaviour, known = behaviour_from(prepared, judgements)
    members = contrast_members(prepared, judgements, known)

    layers = probed_layers(model.n_layers, depths)
    say(f"{label}: probes at layers {layers}")
    items = [render_conversation(model.tokenizer, s.messages) for s in scenarios]
    acts = residuals_at_last_prompt_token(model, [f"{model.layers_path}.{layer}" for layer in layers], items,
                                          batch_size=batch_size)  # [n, n_layers, d]
    probes, directions = [], {}
    for column, layer in enumerate(layers):
        found = {}
        for name, (pos, neg) in members.items():
            if name in CROSS_VALIDATED:
                found[name] = cross_validated_auroc(acts[:, column], pos, neg, prepared, seed=seed)
                continue
            estimate, direction = probe_auroc(acts[:, column], pos, neg, prepared, seed=seed)
            found[name] = estimate
            if direction is not None:
                directions[name, layer] = direction
        probes.append(LayerProbe(layer=layer, depth=_depth(layer, model.n_layers), auroc=found))
    best: dict[str, int | None] = {}
    for name in members:
        scored = [(p.auroc[name].value, p.layer) for p in probes if p.auroc[name] is not None
                  and math.isfinite(p.auroc[name].value)]
        best[name] = max(scored, key=lambda t: (t[0], -t[1]))[1] if scored else None  # ties: the earliest layer
        if not scored:
            pos, neg = members[name]
            where = "per side" if name in CROSS_VALIDATED else "per side in each split"
            notes.append(f"{name.replace('_', ' ')}: too few scenarios for a probe ({len(pos)} vs {len(neg)}; "
                         f"at least {MIN_PER_SIDE} {where})")

    heldout = {c: [s for s in scenarios if s.condition.value == c and prepared.split[s.id] == "heldout"]
               for c in ("honest", "lie", "parrot")}
    steering = None
    if best["lie_vs_honest"] is not None:
        layer = best["lie_vs_honest"]
        say(f"{label}: steering at layer {layer}")
        direction = directions["lie_vs_honest", layer]
        size = float(direction.norm())
        lies = [s for s in heldout["lie"] if s.fact_id in known] or heldout["lie"]
        if len(lies) < len(heldout["lie"]):
            notes.append(f"steering measured on the {len(lies)} held-out lie prompts about facts the model knows")
        lie_items = [render_conversation(model.tokenizer, s.messages) for s in lies]
        steering = steering_test(model, lies, lie_items, layer, direction / max(size, 1e-8), size, seed=seed)
    say(f"{label}: patching the context at layers {layers}")
    pairs = patch_pairs(model, heldout["parrot"], judge, seed=seed)
    patch_curve = [test for layer in layers if (test := patching_test(model, pairs, layer, seed=seed)) is not None]
    patch_layer = best["lie_vs_honest"] if best["lie_vs_honest"] is not None else layers[len(layers) // 2]
    patching = next((test for test in patch_curve if test.layer == patch_layer), None)
    if not patch_curve:
        notes.append("patching: no held-out parrot prompt has a falsehood span and two false answers whose prompts "
                     "have the true prompt's length")
    parrots = [s for s in scenarios if s.condition.value == "parrot"]
    say(f"{label}: counterfactual copy test ({len(parrots)} parrot prompts)")
    copying = copy_test(model, parrots, judgements, judge, max_new_tokens=max_new_tokens, batch_size=batch_size,
                        seed=seed)
    if copying is None:
        notes.append("copy test: no parrot prompt has a falsehood span holding its false answer")
    say(f"{label}: logit lens over {model.n_layers} layers")
    lens = lens_curves(model, heldout, seed=seed)
    feature = None
    if sae is not None:
        say(f"{label}: SAE feature at {sae.site.name}")
        feature = feature_finding(model, sae, prepared, items, members, seed=seed)
        if feature is None:
            notes.append("SAE feature: too few train lie or honest prompts to choose one")
    return ModelStudy(
        label=label, group=group, spec=spec, identity=model.identity, n_params=sum(p.numel() for p in model.hf_model.parameters()),
        n_layers=model.n_layers, d_model=model.d_model, remote=model.spec.remote,
        seconds=time.perf_counter() - started, behaviour=behaviour, probes=probes, best_layer=best,
        steering=steering, patching=patching, patching_by_layer=patch_curve, copy_test=copying, lens=lens, feature=feature, notes=notes,
    )


def run_study(models: Sequence[StudyModel], scenarios: Sequence[Scenario], *, scenario_file: str,
              depths: Sequence[float] = DEFAULT_DEPTHS, max_facts: int | None = None, max_new_tokens: int = 12,
              batch_size: int = 16, seed: int = 0, command: str = "", say: Say = lambda message: None,
              loader: Callable[[ModelSpec], LoadedModel] = load_model) -> ScaleRecord:
    """The study over ``models``, each loaded in turn (and released before the next)."""
    if not models:
        raise WorkbenchError("a scale study needs at least one model: give --models")
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise WorkbenchError(f"two models share a label ({', '.join(labels)}): give each a label=... in its spec")
    probed_layers(2, depths)  # checks the fractions before anything loads
    prepared = prepare_scenarios(scenarios, max_facts=max_facts, seed=seed)
    for entry in models:  # every spec checked from files and configs before the first model loads
        check_model_spec(entry.model)
        if entry.sae is not None:
            preview_sae(entry.sae, model_outline(entry.model) if not entry.model.remote else None)
    studies = []
    for index, entry in enumerate(models, 1):
        say(f"model {index}/{len(models)}: loading {entry.label}")
        model = loader(entry.model)
        sae = load_sae(entry.sae, model) if entry.sae is not None else None
        studies.append(study_model(model, prepared, label=entry.label, spec=entry.to_dict(), group=entry.group,
                                   depths=depths, sae=sae,
                                   max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, say=say))
        del model, sae
        gc.collect()
    return ScaleRecord(created=datetime.now(timezone.utc).isoformat(timespec="seconds"), command=command,
                       scenario_file=scenario_file, n_scenarios=len(prepared.scenarios),
                       n_facts=len({s.fact_id for s in prepared.scenarios}), seed=seed, depths=list(depths),
                       environment=Environment.measure(), models=studies)
