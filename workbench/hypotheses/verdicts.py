"""Verdicts: the rules that turn measurements into outcomes and a hypothesis' verdict, in one place.

A prediction *holds* when its whole 95% interval is on the predicted side of the threshold, is
*contradicted* when the whole interval is on the other side, and is *unclear* otherwise; a causal
test that clears its threshold but not its random control is unclear too. A hypothesis is
``supported`` only if every prediction holds, ``refuted`` if one is contradicted, else
``inconclusive``. The behaviour check reads *behaviour* when its lies-vs-resisted-lies interval is above
the prompt contrasts' threshold, the *instruction* when it is below while a prompt contrast is above,
and is *unclear* otherwise (``core.stats.read_behaviour``, shared with the incrimination protocol).
"""

from __future__ import annotations

import math

from workbench.causal.experiment import ExperimentResult
from workbench.core.errors import WorkbenchError
from workbench.core.stats import Estimate
from workbench.hypotheses.records import CausalDetails, Outcome, PredictionResult, Verdict
from workbench.hypotheses.spec import CausalTest


def decide_verdict(predictions: list[PredictionResult]) -> tuple[Verdict, str]:
    """``supported`` only if every prediction holds; ``refuted`` if one is contradicted;
    else ``inconclusive``."""
    if not predictions:
        return "inconclusive", "the hypothesis makes no predictions"
    contradicted = [p.name for p in predictions if p.outcome == "contradicted"]
    unclear = [p.name for p in predictions if p.outcome == "unclear"]
    if contradicted:
        return "refuted", f"contradicted with its interval clear of the threshold: {', '.join(contradicted)}"
    if unclear:
        return "inconclusive", f"interval overlaps the threshold: {', '.join(unclear)}"
    return "supported", "every prediction holds with its interval clear of the threshold"


def judge_prediction(measured: Estimate, comparison: str, threshold: float) -> Outcome:
    """Where the interval lies relative to the threshold."""
    low, high = measured.low, measured.high
    if measured.n == 0 or math.isnan(low) or math.isnan(high):  # nothing measured
        return "unclear"
    if comparison == ">=":
        return "holds" if low >= threshold else "contradicted" if high < threshold else "unclear"
    if comparison == "<=":
        return "holds" if high <= threshold else "contradicted" if low > threshold else "unclear"
    if comparison == "abs<":
        if -threshold < low and high < threshold:
            return "holds"
        return "contradicted" if low >= threshold or high <= -threshold else "unclear"
    raise WorkbenchError(f"unknown comparison {comparison!r}; use >=, <= or abs<")


# ----------------------------------------------------------------------------- files


def judge_causal_test(test: CausalTest, result: ExperimentResult) -> PredictionResult:
    """The prediction of a causal test judged on its experiment's result: the target's effect at the
    judged strength against the threshold and, for a directional prediction, against the random control
    (the difference's interval must clear 0 on the predicted side)."""
    judged = test.judged_strength
    target = result.target
    measured = target.effects[target.strengths.index(judged)]
    outcome = judge_prediction(measured, test.comparison, threshold=test.threshold)
    notes: list[str] = []
    for curve in result.curve("random"):
        if judged in curve.strengths and outcome == "holds" \
                and _beats_control(curve.target_minus_control[curve.strengths.index(judged)], test.comparison) is False:
            outcome = "unclear"
            notes.append("the effect clears the threshold but not the random control")
    edit = test.intervention
    return PredictionResult(
        name=test.name, kind="causal",
        description=test.description or f"{edit.kind} on {test.condition}: {test.metric} change",
        metric=f"{test.metric} change at strength {judged:g}", comparison=test.comparison, threshold=test.threshold,
        measured=measured, outcome=outcome, notes=notes,
        details=CausalDetails(result=result, judged_strength=judged),
    )


def _beats_control(difference: Estimate, comparison: str) -> bool | None:
    """Whether the target effect differs from the random control in the predicted direction
    (interval clear of 0). Not asked of ``abs<`` predictions (they predict no effect)."""
    if comparison == ">=":
        return difference.low > 0
    if comparison == "<=":
        return difference.high < 0
    return None
