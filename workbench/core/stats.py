"""Statistics with uncertainty: every number the workbench shows carries n and an interval."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from workbench.core.errors import WorkbenchError


MIN_BOOTSTRAP_N = 5
"""Fewer samples than this give no bootstrap interval worth showing (resampling 2 or 3 values
gives a range, not a 95% interval): displays say so instead of printing one."""


class Estimate(BaseModel):
    """A point estimate with its 95% interval and sample size."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    value: float
    low: float
    high: float
    n: int
    method: str
    """How the interval was obtained (``wilson``, ``bootstrap``...)."""

    @property
    def has_interval(self) -> bool:
        """Whether the interval is worth showing: a bootstrap needs ``MIN_BOOTSTRAP_N`` samples
        (a Wilson interval is sound at any n)."""
        return not (self.method.startswith("bootstrap") and self.n < MIN_BOOTSTRAP_N)

    def interval(self, spec: str = ".3f") -> str:
        """``[low, high]``, or why there is none."""
        if not self.has_interval:
            return f"no interval (n={self.n} < {MIN_BOOTSTRAP_N})"
        return f"[{self.low:{spec}}, {self.high:{spec}}]"

    def labelled_interval(self, spec: str = ".3f") -> str:
        """``95% CI [low, high]``, or why there is none."""
        return f"95% CI {self.interval(spec)}" if self.has_interval else self.interval(spec)

    def __str__(self) -> str:
        return f"{self.value:.3f} {self.interval()} (n={self.n})"


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> Estimate:
    """A proportion with its Wilson score 95% interval (sound at 0 and n)."""
    if n <= 0:
        return Estimate(value=float("nan"), low=0.0, high=1.0, n=0, method="wilson")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Estimate(value=p, low=max(0.0, centre - half), high=min(1.0, centre + half), n=n, method="wilson")


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """AUROC per column: P(pos > neg) + 0.5 P(pos == neg).

    ``positive`` is ``[n_pos, k]``, ``negative`` is ``[n_neg, k]``; returns ``[k]``.
    Exact with ties (Mann-Whitney), in O((n_pos + n_neg) log n) per column.
    """
    if positive.ndim == 1:
        return auroc(positive[:, None], negative[:, None])[0]
    n_pos, n_neg = positive.shape[0], negative.shape[0]
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs at least one sample on each side")
    sorted_neg = torch.sort(negative.T.contiguous(), dim=1).values  # [k, n_neg]
    queries = positive.T.contiguous()  # [k, n_pos]
    below = torch.searchsorted(sorted_neg, queries, right=False)  # negatives < pos
    below_or_equal = torch.searchsorted(sorted_neg, queries, right=True)
    wins = below.sum(dim=1).double() + 0.5 * (below_or_equal - below).sum(dim=1).double()
    return (wins / (n_pos * n_neg)).float()


def _bootstrap_interval(sizes: Sequence[int], statistic: Callable[..., torch.Tensor], *, n_boot: int,
                        seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile bootstrap 95% interval of ``statistic(*indices)``: each resample draws, in order, one
    index tensor per sample size in ``sizes`` (with replacement). Returns (low, high), shaped as the statistic."""
    generator = torch.Generator().manual_seed(seed)
    samples = [statistic(*[torch.randint(n, (n,), generator=generator) for n in sizes]) for _ in range(n_boot)]
    stacked = torch.stack(samples)  # [n_boot, ...]
    return torch.quantile(stacked, 0.025, dim=0), torch.quantile(stacked, 0.975, dim=0)


def bootstrap_auroc(
    positive: torch.Tensor,
    negative: torch.Tensor,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AUROC per column with a percentile bootstrap 95% interval (each side resampled).

    Returns (auroc [k], low [k], high [k]).
    """
    low, high = _bootstrap_interval((positive.shape[0], negative.shape[0]),
                                    lambda pos, neg: auroc(positive[pos], negative[neg]), n_boot=n_boot, seed=seed)
    return auroc(positive, negative), low, high


def auroc_estimate(positive: torch.Tensor, negative: torch.Tensor, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """AUROC of two 1-D samples with its bootstrap 95% interval; not measured (NaN) when a side is empty."""
    n = len(positive) + len(negative)
    if len(positive) == 0 or len(negative) == 0:
        nan = float("nan")
        return Estimate(value=nan, low=nan, high=nan, n=n, method="not measured: a side is empty")
    point, low, high = bootstrap_auroc(positive, negative, n_boot=n_boot, seed=seed)
    return Estimate(value=float(point), low=float(low), high=float(high), n=n, method="bootstrap")


def auroc_difference(first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor], *,
                     same_negatives: bool = True, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """AUROC of the ``first`` (positives, negatives) scores minus the ``second``'s, with a paired percentile
    bootstrap 95% interval: the positives are the same items in both (row i of each is one item), and so are
    the negatives when ``same_negatives`` (two detectors scored on the same responses, e.g. a white-box
    detector's gain over a black-box one); each resample draws the same items for both. Without
    ``same_negatives`` the two sets of negatives (e.g. honest answers and parroted ones) are resampled each on
    its own, the positives still together. n = the items of both (each counted once)."""
    (pos_a, neg_a), (pos_b, neg_b) = first, second
    if len(pos_a) != len(pos_b) or (same_negatives and len(neg_a) != len(neg_b)):
        raise WorkbenchError("a paired AUROC difference needs the same items scored by both: give aligned scores")
    n = len(pos_a) + len(neg_a) + (0 if same_negatives else len(neg_b))
    if len(pos_a) == 0 or len(neg_a) == 0 or len(neg_b) == 0:
        nan = float("nan")
        return Estimate(value=nan, low=nan, high=nan, n=n, method="not measured: a side is empty")
    pos_a, neg_a, pos_b, neg_b = (t.double().flatten() for t in (pos_a, neg_a, pos_b, neg_b))

    def difference(pos: torch.Tensor, neg: torch.Tensor, neg_other: torch.Tensor | None = None) -> torch.Tensor:
        other = neg if neg_other is None else neg_other
        return auroc(pos_a[pos], neg_a[neg]) - auroc(pos_b[pos], neg_b[other])

    sizes = (len(pos_a), len(neg_a)) if same_negatives else (len(pos_a), len(neg_a), len(neg_b))
    low, high = _bootstrap_interval(sizes, difference, n_boot=n_boot, seed=seed)
    point = difference(torch.arange(len(pos_a)), torch.arange(len(neg_a)), None if same_negatives
                       else torch.arange(len(neg_b)))
    return Estimate(value=float(point), low=float(low), high=float(high), n=n,
                    method="paired bootstrap" if same_negatives else "bootstrap, positives paired")


def bootstrap_mean(values: torch.Tensor, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Mean of a 1-D sample with a percentile bootstrap 95% interval."""
    n = int(values.numel())
    if n == 0:
        return Estimate(value=float("nan"), low=float("nan"), high=float("nan"), n=0, method="bootstrap")
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(n, (n_boot, n), generator=generator)
    means = values.float()[idx].mean(1)
    return Estimate(value=float(values.float().mean()), low=float(torch.quantile(means, 0.025)),
                    high=float(torch.quantile(means, 0.975)), n=n, method="bootstrap")


# ----------------------------------------------------------------------------- detection metrics

DEFAULT_FPR = 0.01
"""The false-positive rate detection metrics are reported at: 1%, as the deception-probe literature does
(recall at 1% FPR on a benign control set, e.g. Alpaca answers)."""


def percent(rate: float) -> str:
    """``1%`` for 0.01, ``0.5%`` for 0.005."""
    return f"{rate * 100:g}%"


def fpr_label(fpr: float = DEFAULT_FPR) -> str:
    """``recall@1%FPR`` for ``fpr=0.01``: the column name tables use."""
    return f"recall@{percent(fpr)}FPR"


def _check_scores(name: str, scores: torch.Tensor) -> torch.Tensor:
    if scores.shape[0] == 0:
        raise WorkbenchError(f"detection metrics need at least one {name} score")
    if not torch.isfinite(scores).all():
        raise WorkbenchError(f"the {name} scores hold NaN or infinite values: score every item with a finite number")
    return scores.double()


def _check_fpr(fpr: float) -> None:
    if not 0.0 < fpr < 1.0:
        raise WorkbenchError(f"the false-positive rate must lie strictly between 0 and 1, not {fpr}")


def fpr_threshold(control: torch.Tensor, fpr: float = DEFAULT_FPR) -> torch.Tensor:
    """The decision threshold at ``fpr`` on a control set: the ``1 - fpr`` quantile of the control scores
    per column (linear interpolation, numpy's and torch's default; what Apollo Research's deception probes
    use on their Alpaca control). ``control`` is ``[n]`` or ``[n, k]``; returns ``[]`` or ``[k]``."""
    _check_fpr(fpr)
    return torch.quantile(control.double(), 1.0 - fpr, dim=0)


def above(scores: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Scores strictly above a threshold, a rounding error aside: a quantile interpolated between control
    scores (``-2 + 0.8 * 5 = 1.9999999999999991``) must not call a score equal to it (2.0) above it, so
    that shifting every score by a constant changes no call."""
    threshold = torch.as_tensor(threshold, dtype=torch.double)
    return scores > threshold + 1e-9 * (1.0 + threshold.abs())


def resolves_fpr(n_control: int, fpr: float) -> bool:
    """Whether ``n_control`` control scores can resolve a false-positive rate of ``fpr``: one control above
    the threshold is already ``1/n``, so fewer than ``1/fpr`` scores cannot show a rate of ``fpr``."""
    return n_control * fpr >= 1.0 - 1e-9


def unresolved_note(n_control: int, fpr: float, control_fpr: float | None = None) -> str | None:
    """Why a recall at ``fpr`` on ``n_control`` control scores is not at that rate; None when it is."""
    if resolves_fpr(n_control, fpr):
        return None
    realised = "" if control_fpr is None else f", and {control_fpr:.1%} of them lie above it"
    return (f"{percent(fpr)} FPR cannot be resolved with {n_control} control scores (fewer than 1/FPR = {1 / fpr:g}): "
            f"the threshold is the {percent(1 - fpr)} quantile of {n_control} scores{realised}; the recall is at that "
            f"threshold, not at a measured {percent(fpr)} FPR: add control items")


def bootstrap_recall_at_fpr(
    positive: torch.Tensor,
    control: torch.Tensor,
    *,
    fpr: float = DEFAULT_FPR,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Recall at ``fpr`` per column: the fraction of positives strictly above the threshold
    :func:`fpr_threshold` sets on the control scores, with a percentile bootstrap 95% interval (positives
    and control resampled, the threshold set again on each resample of the control).

    ``positive`` is ``[n_pos, k]`` (or ``[n_pos]``), ``control`` ``[n_control, k]`` (or ``[n_control]``).
    Returns (recall [k], low [k], high [k], threshold [k]), or 0-d tensors for 1-D input.
    """
    if positive.ndim == 1:
        return tuple(t[0] for t in bootstrap_recall_at_fpr(positive[:, None], control[:, None], fpr=fpr,
                                                            n_boot=n_boot, seed=seed))
    positive, control = positive.double(), control.double()
    threshold = fpr_threshold(control, fpr)  # [k]
    low, high = _bootstrap_interval(
        (positive.shape[0], control.shape[0]),
        lambda pos, ctl: above(positive[pos], fpr_threshold(control[ctl], fpr)).double().mean(0), n_boot=n_boot,
        seed=seed)
    return above(positive, threshold).double().mean(0), low, high, threshold


def balanced_accuracy(positive: torch.Tensor, negative: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Mean of the true-positive rate (positives strictly above ``threshold``) and the true-negative rate
    (negatives at or below it); per column for ``[n, k]`` scores and a ``[k]`` threshold."""
    return (above(positive, threshold).double().mean(0) + (~above(negative, threshold)).double().mean(0)) / 2


def balanced_threshold(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """The decision threshold that maximises balanced accuracy on these (train) scores: a midpoint between
    two neighbouring distinct scores, or just below the lowest / above the highest (the lowest such
    threshold where several tie)."""
    positive, negative = _check_scores("positive", positive).flatten(), _check_scores("negative", negative).flatten()
    values = torch.unique(torch.cat([positive, negative]))  # sorted
    candidates = torch.cat([values[:1] - 1, (values[:-1] + values[1:]) / 2, values[-1:] + 1])
    at_or_below = [torch.searchsorted(torch.sort(side).values, candidates, right=True).double() / len(side)
                   for side in (positive, negative)]
    scores = (1 - at_or_below[0] + at_or_below[1]) / 2  # [n_candidates]: (TPR + TNR) / 2, as balanced_accuracy
    return float(candidates[int(torch.argmax(scores))])


class DetectionMetrics(BaseModel):
    """How well a score detects positives, as the deception-detection literature reports it: AUROC,
    balanced accuracy at a stated decision threshold, and recall at a fixed false-positive rate on a
    control set; each an :class:`Estimate` with its n and a bootstrap 95% interval. A score above the
    threshold calls an item positive."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    auroc: Estimate
    """P(positive > negative) + 0.5 P(tie); n = positives + negatives."""
    balanced_accuracy: Estimate
    """(true-positive rate + true-negative rate) / 2 on positives vs negatives at ``threshold``;
    n = positives + negatives."""
    threshold: float
    """The decision threshold of ``balanced_accuracy``."""
    threshold_rule: Literal["given", "control quantile"]
    """How ``threshold`` was set: ``given`` (by the caller, e.g. set on a train split) or ``control quantile``
    (the one ``recall_at_fpr`` uses: ``fpr`` on the control)."""
    recall_at_fpr: Estimate
    """Fraction of positives strictly above ``control_threshold``; n = positives. Its interval resamples
    positives and control. Its method names it ``unresolved`` when the control is too small (``note``)."""
    fpr: float
    """The false-positive rate the recall is reported at (0.01 = 1%)."""
    control_threshold: float
    """The ``1 - fpr`` quantile of the control scores (linear interpolation)."""
    control_fpr: float
    """Fraction of control scores strictly above ``control_threshold``: the false-positive rate realised."""
    control: str
    """What the control scores are (``negatives``, or e.g. ``held-out honest``)."""
    resolved: bool
    """Whether the control has at least 1/``fpr`` scores, so that ``fpr`` can be resolved at all."""
    n_positive: int
    n_negative: int
    n_control: int
    note: str | None = None
    """Set when ``fpr`` cannot be resolved on this control: what the recall means instead."""

    def recall_text(self) -> str:
        """``0.917 [0.833, 1.000] (n=24; control honest n=120)``, marked ``unresolved`` when the control
        cannot resolve ``fpr``."""
        mark = "" if self.resolved else f", unresolved: < {1 / self.fpr:g}"
        return (f"{self.recall_at_fpr.value:.3f} {self.recall_at_fpr.interval()} (n={self.n_positive}; "
                f"control {self.control} n={self.n_control}{mark})")


def _group_draws(groups: Sequence[Sequence[Hashable]], n_boot: int, seed: int):
    """Resampled indices into each of several item lists, drawing whole groups (e.g. facts) with replacement:
    every item of a drawn group, as often as the group is drawn. Yields one tuple of index tensors a draw."""
    labels = sorted({label for side in groups for label in side}, key=repr)
    number = {label: i for i, label in enumerate(labels)}
    group_of = [torch.tensor([number[label] for label in side], dtype=torch.long) for side in groups]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n_boot):
        counts = torch.bincount(torch.randint(len(labels), (len(labels),), generator=generator), minlength=len(labels))
        yield tuple(torch.repeat_interleave(torch.arange(len(side)), counts[side]) for side in group_of)


def _percentiles(samples: torch.Tensor) -> tuple[float, float]:
    """The 2.5% and 97.5% percentiles, leaving out resamples where the quantity is undefined (NaN)."""
    return float(torch.nanquantile(samples, 0.025)), float(torch.nanquantile(samples, 0.975))


def detection_metrics(
    positive: torch.Tensor,
    negative: torch.Tensor,
    control: torch.Tensor | None = None,
    *,
    fpr: float = DEFAULT_FPR,
    threshold: float | None = None,
    control_name: str | None = None,
    groups: tuple[Sequence[Hashable], Sequence[Hashable], Sequence[Hashable] | None] | None = None,
    group_name: str = "groups",
    n_boot: int = 1000,
    seed: int = 0,
) -> DetectionMetrics:
    """AUROC, balanced accuracy and recall at ``fpr`` of 1-D scores (higher = more positive).

    - AUROC: :func:`bootstrap_auroc` (positives vs negatives).
    - Recall at ``fpr``: the threshold is the ``1 - fpr`` quantile of the ``control`` scores (default: the
      negatives); recall is the fraction of positives strictly above it (:func:`bootstrap_recall_at_fpr`).
      With fewer than 1/``fpr`` control scores the rate cannot be resolved: ``resolved`` is False, ``note``
      says so and the estimate's method is marked ``unresolved``.
    - Balanced accuracy at ``threshold`` when given (e.g. set on a train split: :func:`balanced_threshold`),
      else at the recall's threshold; ``threshold_rule`` says which. Its interval resamples positives and
      negatives (and the control, whose threshold is set again on each resample, when it sets the threshold).

    Intervals resample items; given ``groups`` (a label per positive, negative and control score; None for
    the control when it is the negatives), they resample whole groups instead (``bootstrap over
    {group_name}``, e.g. facts whose scenarios are not independent).
    """
    _check_fpr(fpr)
    positive = _check_scores("positive", positive.flatten())
    negative = _check_scores("negative", negative.flatten())
    control_is_negative = control is None
    control = negative if control is None else _check_scores("control", control.flatten())
    n_pos, n_neg, n_control = len(positive), len(negative), len(control)
    cut = fpr_threshold(control, fpr)
    decision = float(cut) if threshold is None else float(threshold)
    recall = float(above(positive, cut).double().mean())
    if groups is None:
        method = "bootstrap"
        auc, auc_low, auc_high = bootstrap_auroc(positive, negative, n_boot=n_boot, seed=seed)
        _, recall_low, recall_high, _ = bootstrap_recall_at_fpr(positive, control, fpr=fpr, n_boot=n_boot, seed=seed)
        # the control is resampled only where it sets the threshold, and with the negatives when it is them
        own_control = threshold is None and not control_is_negative

        def resampled_balanced_accuracy(pos: torch.Tensor, neg: torch.Tensor, ctl: torch.Tensor | None = None):
            cut_here = threshold if threshold is not None else fpr_threshold(control[neg if ctl is None else ctl], fpr)
            return balanced_accuracy(positive[pos], negative[neg], cut_here)

        ba_low, ba_high = _bootstrap_interval((n_pos, n_neg, n_control) if own_control else (n_pos, n_neg),
                                              resampled_balanced_accuracy, n_boot=n_boot, seed=seed)
    else:
        method = f"bootstrap over {group_name}"
        sides = [list(groups[0]), list(groups[1]), list(groups[1] if groups[2] is None else groups[2])]
        if [len(side) for side in sides] != [n_pos, n_neg, n_control]:
            raise WorkbenchError("detection metrics need one group label per positive, negative and control score")
        auc = float(auroc(positive, negative))
        samples = []  # [auroc, balanced accuracy, recall] per resample
        for pos_idx, neg_idx, control_idx in _group_draws(sides, n_boot, seed):
            if not (len(pos_idx) and len(neg_idx) and len(control_idx)):
                samples.append([float("nan")] * 3)  # a side drawn empty: nothing to measure
                continue
            pos, neg, boot_cut = positive[pos_idx], negative[neg_idx], fpr_threshold(control[control_idx], fpr)
            samples.append([float(auroc(pos, neg)),
                            float(balanced_accuracy(pos, neg, boot_cut if threshold is None else threshold)),
                            float(above(pos, boot_cut).double().mean())])
        boot = torch.tensor(samples, dtype=torch.double)  # [n_boot, 3]
        (auc_low, auc_high), (ba_low, ba_high), (recall_low, recall_high) = (_percentiles(boot[:, j]) for j in range(3))
    control_fpr = float(above(control, cut).double().mean())
    resolved = resolves_fpr(n_control, fpr)
    marked = method if resolved else f"{method}; unresolved: {n_control} control scores < 1/FPR = {1 / fpr:g}"

    def estimate(value: float, low: float, high: float, n: int, how: str) -> Estimate:
        return Estimate(value=float(value), low=float(low), high=float(high), n=n, method=how)

    return DetectionMetrics(
        auroc=estimate(auc, auc_low, auc_high, n_pos + n_neg, method),
        balanced_accuracy=estimate(balanced_accuracy(positive, negative, decision), ba_low, ba_high, n_pos + n_neg,
                                   method if threshold is not None else marked),
        threshold=decision, threshold_rule="given" if threshold is not None else "control quantile",
        recall_at_fpr=estimate(recall, recall_low, recall_high, n_pos, marked),
        fpr=fpr, control_threshold=float(cut), control_fpr=control_fpr,
        control=control_name or ("negatives" if control_is_negative else "control"),
        resolved=resolved, n_positive=n_pos, n_negative=n_neg, n_control=n_control,
        note=unresolved_note(n_control, fpr, control_fpr),
    )


def read_behaviour(auroc: Estimate, threshold: float, prompt_separates: bool, n_false: int, n_truth: int,
                   min_n: int) -> Literal["behaviour", "instruction", "unclear", "too few"]:
    """What the features read, from the AUROC of lies vs resisted lies (``lie+false`` vs ``lie+truth``):
    ``behaviour`` if its interval is at or above ``threshold``; ``instruction`` if it is below while a
    prompt contrast's interval is at or above it (``prompt_separates``); ``too few`` under ``min_n``
    responses on a side; else ``unclear``."""
    if min(n_false, n_truth) < min_n or math.isnan(auroc.low) or math.isnan(auroc.high):
        return "too few"
    if auroc.low >= threshold:
        return "behaviour"
    if auroc.high < threshold and prompt_separates:
        return "instruction"
    return "unclear"


def balanced_accuracy_estimate(positive: torch.Tensor, negative: torch.Tensor, threshold: float = 0.5, *,
                               n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Balanced accuracy of a fixed decision (scores strictly above ``threshold`` called positive) on two
    1-D samples, with a percentile bootstrap 95% interval (each side resampled); not measured (NaN) when a
    side is empty. ``n`` counts both sides."""
    positive, negative = positive.double().flatten(), negative.double().flatten()
    n = len(positive) + len(negative)
    if len(positive) == 0 or len(negative) == 0:
        nan = float("nan")
        return Estimate(value=nan, low=nan, high=nan, n=n, method="not measured: a side is empty")
    low, high = _bootstrap_interval((len(positive), len(negative)),
                                    lambda pos, neg: balanced_accuracy(positive[pos], negative[neg], threshold),
                                    n_boot=n_boot, seed=seed)
    return Estimate(value=float(balanced_accuracy(positive, negative, threshold)), low=float(low), high=float(high),
                    n=n, method="bootstrap")
