"""Running a hypothesis: its contrasts, its causal tests (each an experiment of the one engine,
``causal.experiment.run_experiment``, plus a prediction judged on the result) and the probe
baseline, into a versioned run record. Every check that needs no compute (features in range, the
site, the conditions present, finite non-empty strength sweeps, settings the edit kind accepts)
runs before the model loads, on what the model's and the SAE's configs say (``model.resolve.check_refs``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from workbench.causal.experiment import ExperimentResult, check_experiment, run_experiment
from workbench.causal.measurements import mean_estimate
from workbench.core.conditions import check_conditions
from workbench.core.constants import DEFAULT_SCENARIOS, REPO_ROOT, repo_relative
from workbench.core.errors import WorkbenchError
from workbench.core.stats import MIN_BOOTSTRAP_N, Estimate, auroc_estimate, read_behaviour, wilson_interval
from workbench.hypotheses.records import (
    RECORD_VERSION,
    BehaviourCheck,
    CausalDetails,
    ContrastDetails,
    Environment,
    ExampleRecord,
    FeatureStat,
    PredictionResult,
    RunRecord,
    ScenarioSource,
    Setup,
)
from workbench.hypotheses.spec import CausalTest, ContrastPrediction, Hypothesis, to_experiment
from workbench.hypotheses.verdicts import decide_verdict, judge_causal_test, judge_prediction
from workbench.features.contrast import check_contrast_settings
from workbench.features.probes import ProbeResult
from workbench.model.identity import compare_identities

Progress = Callable[[str, float], None]


# ----------------------------------------------------------------------------- loading


def load_for(hypothesis: Hypothesis):
    """The model and SAE a hypothesis names (through the one resolver, ``model.resolve``)."""
    from workbench.model.resolve import load

    return load(hypothesis.model, hypothesis.sae, hypothesis.site)


def scenario_sets(hypothesis: Hypothesis):
    """(train scenarios, held-out scenarios) the hypothesis is run on."""
    from workbench.scenarios import Split, knowledge_from_scenarios, load_facts, protocol_scenarios, read_scenarios

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
    """Every check that needs no forward pass: features, conditions, position rules, and each causal
    test's experiment as the engine checks it. ``sae`` is a loaded SAE or, before anything loads, what
    its config says (``model.resolve.check_refs(...).sae``)."""
    for feature in hypothesis.features:
        sae.check_feature(feature)
    for contrast in hypothesis.contrasts:
        try:
            check_contrast_settings(contrast.a, contrast.b, contrast.position)
        except WorkbenchError as error:
            raise WorkbenchError(f"contrast {contrast.name!r}: {error}") from None
    check_conditions({c for contrast in hypothesis.contrasts for c in (contrast.a, contrast.b)},
                     {s.condition.value for s in heldout}, needed_by="the hypothesis", behaviour=True)
    for test in hypothesis.tests:
        try:
            check_experiment(to_experiment(hypothesis, test), None, sae, heldout)
        except WorkbenchError as error:
            raise type(error)(f"test {test.name!r}: {error}") from None


# ----------------------------------------------------------------------------- running


class _Context:
    """What every prediction of a run shares: model, SAE, scenarios and their renderings."""

    def __init__(self, hypothesis: Hypothesis, model, sae, train, heldout, progress: Progress | None):
        import random

        self.h, self.model, self.sae, self.progress = hypothesis, model, sae, progress
        self.train, self.heldout = list(train), list(heldout)
        self.rng = random.Random(hypothesis.seed)
        self._items: dict[str, Any] = {}
        #: The model's response to each held-out scenario (by id), from the held-out capture.
        self.responses: dict[str, str | None] = {}

    def item(self, scenario):
        if scenario.id not in self._items:
            from workbench.model.rendering import render_conversation

            self._items[scenario.id] = render_conversation(self.model.tokenizer, [m.model_dump() for m in scenario.messages])
        return self._items[scenario.id]

    def of_condition(self, condition: str) -> tuple[list[Any], Any]:
        """The held-out scenarios of a condition, or of one narrowed by behaviour (``lie+false``: judged
        from the model's responses), with how the responses were judged (``BehaviourSelection``)."""
        from workbench.scenarios.judging import select_by_behaviour

        selection = select_by_behaviour(self.heldout, condition, self.responses)
        return selection.scenarios, selection

    def sample(self, condition: str) -> list[Any]:
        """The held-out scenarios of a condition the causal tests use (the engine's seeded sample)."""
        from workbench.causal.experiment import select_scenarios

        return select_scenarios(self.heldout, condition, self.h.scenarios.max_per_condition, self.h.seed)

    def say(self, message: str, fraction: float) -> None:
        if self.progress:
            self.progress(message, fraction)


def _feature_matrix(ctx: _Context, scenarios: Sequence[Any], position: str,
                    features: Sequence[int] | None = None) -> torch.Tensor:
    """Max activation of each feature (default: the hypothesis') over the selected positions
    ([n, n_features])."""
    from workbench.core.positions import select_positions
    from workbench.features.capture import read_sites
    from workbench.model.rendering import pad_batch

    items = [ctx.item(s) for s in scenarios]
    features = list(ctx.h.features if features is None else features)
    out = []
    for start in range(0, len(items), 32):
        chunk = items[start : start + 32]
        input_ids, attention = pad_batch(chunk, ctx.model.tokenizer.pad_token_id)
        width = input_ids.shape[1]
        acts = read_sites(ctx.model, [ctx.sae], input_ids, attention)[ctx.sae.site.name]
        if not torch.isfinite(acts).all():
            bad = [scenarios[start + r].id for r in range(len(chunk)) if not torch.isfinite(acts[r]).all()]
            raise WorkbenchError(f"NaN or inf activations at {ctx.sae.site.name} for: {', '.join(bad)}")
        codes = ctx.sae.encode(acts)[..., features]  # [batch, pos, n_features]
        positions = torch.arange(width)[None, :].expand(len(chunk), -1)
        roles = torch.tensor([item.roles + [0] * (width - item.n_tokens) for item in chunk])
        prompt_length = torch.tensor([item.prompt_length for item in chunk])[:, None]
        mask = select_positions(position, positions, roles, prompt_length) & attention.bool()
        out.append(torch.where(mask[..., None], codes, torch.zeros_like(codes)).amax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, len(features))


def _contrast_prediction(ctx: _Context, prediction: ContrastPrediction) -> PredictionResult:
    (a, _), (b, _) = ctx.of_condition(prediction.a), ctx.of_condition(prediction.b)
    score_a = _feature_matrix(ctx, a, prediction.position).sum(1)
    score_b = _feature_matrix(ctx, b, prediction.position).sum(1)
    measured = auroc_estimate(score_a, score_b, seed=ctx.h.seed)
    return PredictionResult(
        name=prediction.name, kind="contrast",
        description=prediction.description or f"features separate {prediction.a} from {prediction.b}",
        metric=f"auroc {prediction.a} vs {prediction.b} at {prediction.position}",
        comparison=prediction.comparison, threshold=prediction.threshold, measured=measured,
        outcome=judge_prediction(measured, prediction.comparison, prediction.threshold),
        details=ContrastDetails(a=prediction.a, b=prediction.b, position=prediction.position, n_a=len(a), n_b=len(b),
                                mean_a=float(score_a.mean()), mean_b=float(score_b.mean()),
                                active_a=int((score_a > 0).sum()), active_b=int((score_b > 0).sum())),
    )


#: Fewest responses on each side of the behaviour check for a reading (the bootstrap's own minimum).
MIN_BEHAVIOUR_N = MIN_BOOTSTRAP_N


#: Conditions whose prompts carry an instruction the model can follow or resist (narrowed by behaviour).
INSTRUCTED = ("lie", "parrot")
#: What following and resisting each instruction is called in the behaviour check's summary.
_ACTS = {"lie": ("lied", "resisted", "lies", "the lie instruction"),
         "parrot": ("repeated the falsehood", "resisted it", "repetitions", "the instruction to repeat")}


def _behaviour_check(ctx: _Context, prompt_predictions: Sequence[PredictionResult]) -> BehaviourCheck | None:
    """Act or instruction: the features on prompts of the condition they are claimed to read (the first
    prompt contrast's higher side: ``lie`` for an intent hypothesis, ``parrot`` for a copying one) where the
    model followed the instruction (``lie+false``) against those where it resisted (``lie+truth``).

    Held to the threshold of the hypothesis' own prompt contrasts on that condition (0.8 without one):
    the features read the *behaviour* if the interval is above it, the *instruction* if it is below it
    while a prompt contrast's interval is above it, else it is unclear.
    """
    plain = [c for c in ctx.h.contrasts if "+" not in c.a and "+" not in c.b]
    base = next((c.a for c in plain if c.a in INSTRUCTED), "lie")
    if not ctx.h.features or not any(s.condition.value == base for s in ctx.heldout):
        return None
    on_base = [(c, p) for c, p in zip(ctx.h.contrasts, prompt_predictions) if c in plain and base in (c.a, c.b)]
    position = on_base[0][0].position if on_base else "last_prompt_token"
    threshold = min((c.threshold for c, _ in on_base), default=0.8)
    (followed, selection), (resisted, _) = ctx.of_condition(f"{base}+false"), ctx.of_condition(f"{base}+truth")
    score_false = _feature_matrix(ctx, followed, position).sum(1)
    score_truth = _feature_matrix(ctx, resisted, position).sum(1)
    auroc = auroc_estimate(score_false, score_truth, seed=ctx.h.seed)
    prompt_aurocs = [(p.name, p.measured.value) for _, p in on_base]
    prompt_separates = any(p.measured.low >= threshold for _, p in on_base)
    n_false, n_truth = len(followed), len(resisted)
    did, resisted_word, acts, instruction = _ACTS[base]
    pair = f"{base}+false vs {base}+truth"
    reading = read_behaviour(auroc, threshold, prompt_separates, n_false, n_truth, MIN_BEHAVIOUR_N)
    numbers = (f"AUROC {pair} {auroc.value:.3f} [{auroc.low:.3f}, {auroc.high:.3f}] (n={n_false} vs {n_truth})")
    if reading == "too few":
        summary = (f"Too few responses to tell the act from the instruction: the model {did} on {n_false} and "
                   f"{resisted_word} on {n_truth} {base} prompts (at least {MIN_BEHAVIOUR_N} each needed).")
    elif reading == "behaviour":
        summary = (f"The features separate the act from its refusal under the same kind of prompt: {numbers}, "
                   f"above {threshold:g}.")
    elif reading == "instruction":
        summary = (f"The features read {instruction}, not the act: they separate {base} prompts from others "
                   f"(AUROC {', '.join(f'{v:.3f}' for _, v in prompt_aurocs)}) but not the {acts} the model made from "
                   f"those it {resisted_word.split()[0]} under the same prompts: {numbers}, below {threshold:g}; they "
                   f"fire on {float((score_truth > 0).float().mean()):.0%} of the responses where it {resisted_word}.")
    else:
        summary = (f"Unclear whether the features read the act or {instruction}: {numbers} against a threshold of "
                   f"{threshold:g}.")
    return BehaviourCheck(
        condition=base, position=position, threshold=threshold, auroc=auroc, n_false=n_false, n_truth=n_truth,
        no_answer=selection.no_answer + selection.no_response,
        mean_false=float(score_false.mean()) if n_false else float("nan"),
        mean_truth=float(score_truth.mean()) if n_truth else float("nan"),
        active_truth=float((score_truth > 0).float().mean()) if n_truth else float("nan"),
        prompt_aurocs=prompt_aurocs, reading=reading, summary=summary)


def _causal_test(ctx: _Context, test: CausalTest, step: tuple[int, int]) -> PredictionResult:
    """One causal test: the engine runs its experiment; the prediction is judged at the judged strength
    against the random control."""
    label = f"test {step[0]}/{step[1]} {test.name}"
    result = run_experiment(ctx.model, ctx.sae, to_experiment(ctx.h, test), ctx.heldout, train=ctx.train,
                            progress=lambda message, fraction: ctx.say(f"{label}: {message}", fraction))
    return judge_causal_test(test, result)


def _feature_stats_and_examples(ctx: _Context) -> tuple[list[FeatureStat], list[ExampleRecord], torch.Tensor, torch.Tensor]:
    """Per feature and condition statistics, top examples in full context, and every feature's
    density and decoder norm (for matched random controls), from a capture of the held-out set."""
    from workbench.features.capture import inputs_from_scenarios, run_capture
    from workbench.features.contrast import item_feature_matrix
    from workbench.features.evidence import Histogram, item_example, item_maxima

    ctx.say("capturing feature activations on the held-out scenarios", 0.0)
    capture = run_capture(ctx.model, [ctx.sae], inputs_from_scenarios(ctx.heldout), generate_responses=True,
                          progress=True)
    ctx.responses = {item.item_id: item.response for item in capture.items if item.kind == "scenario"}
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
    # Recall at 1% FPR needs a control of at least 100: every held-out honest answer (the benign control set).
    benign = [s for s in ctx.heldout if s.condition.value == "honest"]
    control = None
    if ctx.h.probe_baseline and benign:
        ctx.say(f"probe baseline: reading {len(benign)} held-out honest residuals (the benign control)", 0.0)
        control = residual_at_last_prompt_token(ctx.model, ctx.sae.site.name, [ctx.item(s) for s in benign])
    results = evaluate_probes(acts, conditions, splits, site=ctx.sae.site.name, contrasts=present, seed=ctx.h.seed,
                              control_acts=control, control_name="held-out honest answers") \
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


#: Train responses per condition the black-box baseline is fitted on (a seeded sample: each costs a pass
#: per follow-up question).
BLACKBOX_TRAIN_PER_CONDITION = 48


def _blackbox_baseline(ctx: _Context):
    """The follow-up-question detector on the held-out responses the probe baseline scores (the engine's
    sample of each condition, answered in the held-out capture), fitted on a seeded sample of train
    scenarios, beside the probe and the hypothesis' features, with their white-box gains."""
    import random

    from workbench.features.blackbox import compare_with_blackbox

    if not ctx.h.blackbox_baseline:
        return None
    want = [("lie", "honest"), ("lie", "parrot")]
    train_conditions = {s.condition.value for s in ctx.train}
    heldout_conditions = {s.condition.value for s in ctx.heldout}
    present = [pair for pair in want if all(c in train_conditions and c in heldout_conditions for c in pair)]
    if not present:
        return None
    needed = sorted({c for pair in present for c in pair})
    rng = random.Random(f"{ctx.h.seed}:blackbox")
    train = []
    for condition in needed:
        pool = sorted((s for s in ctx.train if s.condition.value == condition), key=lambda s: s.id)
        train += sorted(rng.sample(pool, min(len(pool), BLACKBOX_TRAIN_PER_CONDITION)), key=lambda s: s.id)
    heldout = [s for c in needed for s in ctx.sample(c)]
    ctx.say(f"black-box baseline: follow-up questions after {len(train) + len(heldout)} responses", 0.0)
    return compare_with_blackbox(
        ctx.model, train, heldout, sae=ctx.sae, features=ctx.h.features, contrasts=present,
        responses=ctx.responses, max_new_tokens=ctx.h.max_new_tokens, seed=ctx.h.seed,
        progress=lambda message, fraction: ctx.say(f"black-box baseline: {message}", fraction))


def _portable(spec: Any) -> Any:
    """A model or SAE spec with its paths inside the repository written relative to it."""
    return dataclasses.replace(spec, **{key: repo_relative(value) for key in ("source", "adapter", "gguf_file", "path")
                                        if isinstance(value := getattr(spec, key, None), str)})


def run_hypothesis(hypothesis: Hypothesis, *, path: str | None = None, command: str | None = None,
                   progress: Progress | None = None, loaded=None) -> RunRecord:
    """Execute a hypothesis: contrasts, causal tests with controls, probe and black-box baselines → a run record."""
    from workbench.scenarios import scenario_set_hash

    started = time.perf_counter()
    torch.manual_seed(hypothesis.seed)
    train, heldout = scenario_sets(hypothesis)
    if loaded is None:  # files, specs and configs first: nothing loads for a hypothesis that cannot run
        from workbench.model.resolve import check_refs

        preflight(hypothesis, check_refs(hypothesis.model, hypothesis.sae, hypothesis.site).sae, heldout)
    model, sae = loaded if loaded is not None else load_for(hypothesis)
    preflight(hypothesis, sae, heldout)
    ctx = _Context(hypothesis, model, sae, train, heldout, progress)
    stats, examples, density, decoder_norm = _feature_stats_and_examples(ctx)
    probe, direction = _probe_baseline(ctx)
    blackbox = _blackbox_baseline(ctx)
    predictions = [_contrast_prediction(ctx, c) for c in hypothesis.contrasts] if hypothesis.features else []
    ctx.say("behaviour check: the features on lies vs resisted lies", 0.0)
    behaviour = _behaviour_check(ctx, predictions)
    for index, test in enumerate(hypothesis.tests):
        predictions.append(_causal_test(ctx, test, (index + 1, len(hypothesis.tests))))
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
        behaviour_check=behaviour,
        blackbox=blackbox,
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


def identity_differences(a: RunRecord, b: RunRecord) -> list[str]:
    """Model and SAE identities that differ between two runs, when both runs recorded v2 identities.

    An identity computed the old way (no ``v2/`` prefix; ``Setup.identity_notes`` says so) differs from the
    v2 identity of the same weights by construction, so it is not compared. ``compare_records`` stays about
    the numbers; this is for a rerun to print as a note beside them.
    """
    return compare_identities([("model", a.setup.model_identity, b.setup.model_identity),
                               ("SAE", a.setup.sae_identity, b.setup.sae_identity)])


__all__ = ["compare_records", "identity_differences", "load_for", "preflight", "run_hypothesis", "scenario_sets"]
