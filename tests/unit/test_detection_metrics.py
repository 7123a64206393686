"""Detection metrics as the literature reports them (``core.stats.detection_metrics``): invariants over
random scores (hypothesis) and small cases computed by hand."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.core.errors import WorkbenchError
from workbench.core.stats import (
    balanced_accuracy,
    balanced_threshold,
    bootstrap_recall_at_fpr,
    detection_metrics,
    fpr_label,
    fpr_threshold,
    resolves_fpr,
)

# Whole-number scores: shifting them by a whole number is exact in float64, so invariance is tested exactly.
scores = st.lists(st.integers(min_value=-10, max_value=10).map(float), min_size=1, max_size=30)
rates = st.sampled_from([0.01, 0.05, 0.1, 0.25, 0.5])
N_BOOT = 40


def metrics(pos, neg, control=None, **kwargs):
    return detection_metrics(torch.tensor(pos), torch.tensor(neg),
                             None if control is None else torch.tensor(control), n_boot=N_BOOT, **kwargs)


def numbers(m) -> dict:
    """Every number of a result but the thresholds (which move with a shift)."""
    return m.model_dump(exclude={"threshold", "control_threshold"})


@settings(max_examples=60, deadline=None)
@given(scores, scores, rates, st.integers(min_value=1, max_value=5))
def test_perfectly_separated_scores_give_recall_one_and_balanced_accuracy_one(neg, pos, fpr, gap):
    pos = [p - min(pos) + max(neg) + gap for p in pos]  # every positive above every negative
    m = metrics(pos, neg, fpr=fpr)
    assert m.auroc.value == 1.0 and m.recall_at_fpr.value == 1.0
    assert m.recall_at_fpr.low == 1.0  # every resample of separated scores stays separated
    inside = metrics(pos, neg, fpr=fpr, threshold=max(neg) + gap / 2)  # a threshold in the gap
    assert inside.balanced_accuracy.value == 1.0 and inside.threshold_rule == "given"


@settings(max_examples=60, deadline=None)
@given(scores, scores, st.one_of(st.none(), scores), rates, st.integers(min_value=-50, max_value=50),
       st.one_of(st.none(), st.integers(min_value=-10, max_value=10).map(lambda t: t + 0.5)))
def test_shifting_every_score_by_a_constant_changes_nothing(pos, neg, control, fpr, shift, threshold):
    before = metrics(pos, neg, control, fpr=fpr, threshold=threshold)
    moved = metrics([p + shift for p in pos], [n + shift for n in neg],
                    None if control is None else [c + shift for c in control], fpr=fpr,
                    threshold=None if threshold is None else threshold + shift)
    assert numbers(moved) == numbers(before)
    assert moved.threshold == pytest.approx(before.threshold + shift, abs=1e-9)
    assert moved.control_threshold == pytest.approx(before.control_threshold + shift, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(scores, scores)
def test_swapping_positives_and_negatives_maps_auroc_to_one_minus_auroc(pos, neg):
    assert metrics(neg, pos).auroc.value == pytest.approx(1.0 - metrics(pos, neg).auroc.value, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(scores, scores, st.one_of(st.none(), scores), rates)
def test_counts_ranges_and_the_realised_false_positive_rate(pos, neg, control, fpr):
    m = metrics(pos, neg, control, fpr=fpr)
    n_control = len(neg if control is None else control)
    assert (m.n_positive, m.n_negative, m.n_control) == (len(pos), len(neg), n_control)
    assert m.auroc.n == m.balanced_accuracy.n == len(pos) + len(neg) and m.recall_at_fpr.n == len(pos)
    for estimate in (m.auroc, m.balanced_accuracy, m.recall_at_fpr):
        assert 0.0 <= estimate.low <= estimate.high <= 1.0 and 0.0 <= estimate.value <= 1.0
    # linear interpolation sets the threshold between two control scores: at most one more above it
    assert m.control_fpr <= fpr + 1.0 / n_control + 1e-12
    assert m.threshold == m.control_threshold and m.threshold_rule == "control quantile"
    # a control too small to resolve the rate is said and marked, never shown as resolved
    assert m.resolved == (n_control * fpr >= 1) == (m.note is None)
    assert ("unresolved" in m.recall_at_fpr.method) == (not m.resolved)


@settings(max_examples=40, deadline=None)
@given(scores, scores)
def test_recall_never_falls_as_the_allowed_false_positive_rate_rises(pos, control):
    recalls = [float(bootstrap_recall_at_fpr(torch.tensor(pos), torch.tensor(control), fpr=f, n_boot=1)[0])
               for f in (0.01, 0.05, 0.25, 0.5, 0.9)]
    assert recalls == sorted(recalls)


def test_a_small_case_by_hand():
    pos, neg = [1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 1.5, 2.5]
    m = metrics(pos, neg, fpr=0.25)
    # 13 of 16 pairs have the positive above
    assert m.auroc.value == pytest.approx(13 / 16)
    # 75% quantile of the negatives: index 0.75 * 3 = 2.25 between 1.5 and 2.5 -> 1.75
    assert m.control_threshold == pytest.approx(1.75) and m.control_fpr == pytest.approx(0.25)
    assert m.recall_at_fpr.value == pytest.approx(0.75)  # 2, 3, 4 above 1.75
    assert m.balanced_accuracy.value == pytest.approx((0.75 + 0.75) / 2)
    assert m.resolved and m.note is None and m.control == "negatives"
    # a threshold set elsewhere (e.g. on a train split): 2, 3, 4 above 1.25; 0, 0.5 at or below it
    given_threshold = metrics(pos, neg, fpr=0.25, threshold=1.25)
    assert given_threshold.balanced_accuracy.value == pytest.approx((0.75 + 0.5) / 2)
    assert given_threshold.threshold == 1.25 and given_threshold.recall_at_fpr == m.recall_at_fpr


def test_a_separate_control_sets_the_recall_threshold_and_a_small_one_is_unresolved():
    pos, neg = [1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 1.5, 2.5]
    control = [float(v) for v in range(100)]  # 0..99: the 99% quantile is 98.01
    m = metrics(pos, neg, control, fpr=0.01, control_name="benign answers")
    assert m.control_threshold == pytest.approx(98.01) and m.control_fpr == pytest.approx(0.01)
    assert m.recall_at_fpr.value == 0.0 and m.resolved and m.control == "benign answers"
    small = metrics(pos, neg, fpr=0.01)  # the 4 negatives as control: 1% cannot be resolved
    assert not small.resolved and "unresolved" in small.recall_at_fpr.method
    assert "1% FPR cannot be resolved with 4 control scores (fewer than 1/FPR = 100)" in small.note
    assert "25.0% of them lie above it" in small.note  # 2.5 is above the 99% quantile 2.47
    assert small.control_threshold == pytest.approx(2.47) and small.recall_at_fpr.value == pytest.approx(0.5)
    assert "unresolved" in small.recall_text() and "control negatives n=4" in small.recall_text()


def test_fpr_threshold_is_the_quantile_numpy_uses():
    import numpy as np

    values = np.random.default_rng(0).normal(size=(137, 3))
    assert np.allclose(fpr_threshold(torch.tensor(values), 0.01).numpy(), np.quantile(values, 0.99, axis=0))
    assert resolves_fpr(100, 0.01) and not resolves_fpr(99, 0.01) and resolves_fpr(20, 0.05)
    assert fpr_label(0.01) == "recall@1%FPR" and fpr_label(0.005) == "recall@0.5%FPR"


def test_balanced_threshold_maximises_train_balanced_accuracy():
    assert balanced_threshold(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 1.0])) == 2.0  # the gap's midpoint
    # no perfect cut: 0.75 and 1.75 both reach 0.75; the lower one
    assert balanced_threshold(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.0, 0.5, 1.5, 2.5])) == 0.75
    # all scores equal: nothing separates them; the cut below everything calls all positive (0.5)
    assert balanced_threshold(torch.tensor([1.0]), torch.tensor([1.0])) == 0.0


@settings(max_examples=60, deadline=None)
@given(scores, scores)
def test_no_threshold_beats_the_balanced_one_on_its_own_scores(pos, neg):
    pos, neg = torch.tensor(pos, dtype=torch.double), torch.tensor(neg, dtype=torch.double)
    best = float(balanced_accuracy(pos, neg, balanced_threshold(pos, neg)))
    for t in torch.cat([pos, neg, pos - 0.5, neg + 0.5]).tolist():
        assert float(balanced_accuracy(pos, neg, t)) <= best + 1e-12


def test_bad_scores_say_what_is_wrong():
    with pytest.raises(WorkbenchError, match="at least one positive score"):
        metrics([], [1.0])
    with pytest.raises(WorkbenchError, match="negative scores hold NaN"):
        metrics([1.0], [float("nan")])
    with pytest.raises(WorkbenchError, match="strictly between 0 and 1"):
        metrics([1.0], [0.0], fpr=0.0)


def test_intervals_can_resample_whole_groups():
    generator = torch.Generator().manual_seed(0)
    # 10 facts, each with 10 copies of one score per side: items are not independent, facts are
    pos_fact, neg_fact = torch.randn(10, generator=generator) + 1, torch.randn(10, generator=generator)
    pos, neg = pos_fact.repeat_interleave(10), neg_fact.repeat_interleave(10)
    facts = [f"f{i}" for i in range(10) for _ in range(10)]
    control = torch.arange(200.0) / 200 - 1.0
    control_facts = [f"f{i % 10}" for i in range(200)]
    items = detection_metrics(pos, neg, control, n_boot=300)
    grouped = detection_metrics(pos, neg, control, groups=(facts, facts, control_facts), group_name="facts",
                                n_boot=300)
    for name in ("auroc", "balanced_accuracy", "recall_at_fpr"):
        a, b = getattr(items, name), getattr(grouped, name)
        assert a.value == b.value and b.method == "bootstrap over facts"
        assert b.high - b.low > a.high - a.low  # 10 facts, not 100 independent items
    # one group holding everything: every resample is the whole set
    one = detection_metrics(pos, neg, groups=(["x"] * 100, ["x"] * 100, None), n_boot=20)
    assert (one.auroc.low, one.auroc.high) == (one.auroc.value, one.auroc.value)
    with pytest.raises(WorkbenchError, match="one group label per positive, negative and control score"):
        detection_metrics(pos, neg, groups=(facts[:5], facts, None))
