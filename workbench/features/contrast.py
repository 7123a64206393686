"""Contrast between two conditions: every feature ranked by how well it separates them.

A condition may be narrowed by what the model did (``lie+false`` vs ``lie+truth``: the same kind of prompt,
lied on or resisted), judged from each captured response against its scenario
(``scenarios.judging.select_by_behaviour``). Beside its AUROC, each feature gets its recall of A at 1%
false-positive rate on a control condition (:func:`default_control`: ``honest`` when neither side is), as
deception-probe papers report it on a benign control set.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import BaseModel

from workbench.core import positions
from workbench.core.conditions import Condition, check_conditions, parse_condition
from workbench.core.errors import WorkbenchError
from workbench.core.stats import DEFAULT_FPR, bootstrap_auroc, bootstrap_recall_at_fpr, unresolved_note
from workbench.features.capture import Capture
from workbench.scenarios.judging import AnswerJudge, select_by_behaviour
from workbench.scenarios.records import Scenario

AGGREGATIONS = ("max", "mean")


class ContrastRow(BaseModel):
    """One feature's separation of condition A from condition B."""

    feature: int
    auroc: float
    """P(a > b) + 0.5 P(a = b) over items of A vs items of B; 0.5 = no separation."""
    auroc_low: float
    """Lower end of the bootstrap 95% interval."""
    auroc_high: float
    mean_a: float
    mean_b: float
    mean_difference: float
    active_a: int
    """Items of A where the feature is non-zero at the selected positions."""
    active_b: int
    recall_at_fpr: float | None = None
    """Fraction of A's items whose value is above the ``1 - fpr`` quantile of the control's values (recall at
    ``Contrast.fpr`` on ``Contrast.control``); None in contrasts made before it was measured."""
    recall_at_fpr_low: float | None = None
    """Lower end of its bootstrap 95% interval (A's items and the control's resampled)."""
    recall_at_fpr_high: float | None = None


class BehaviourSplit(BaseModel):
    """How the responses to one condition's scenarios were judged, for a side narrowed by behaviour."""

    condition: str
    """The condition, without a behaviour (``lie``)."""
    n: int
    """Captured scenarios of the condition."""
    by_behaviour: dict[str, int]
    """Responses per behaviour (``false``, ``truth``: ``core.conditions.BEHAVIOURS``)."""
    no_answer: int
    """Responses that state neither the truth nor a false answer: on neither side."""
    no_response: int
    """Scenarios captured without a response (generation off): not judged, on neither side."""


class Contrast(BaseModel):
    """Features ranked by separation (|AUROC - 0.5|, largest first)."""

    site: str
    condition_a: str
    condition_b: str
    position_rule: str
    aggregation: str
    n_a: int
    """Items of condition A that have at least one token at the selected positions."""
    n_b: int
    n_features: int
    n_ranked: int
    dropped: dict[str, int]
    """Features not ranked, by reason."""
    excluded_items: int
    """Items of A or B with no token at the selected positions (e.g. no response)."""
    min_active: int
    n_boot: int
    rows: list[ContrastRow]
    behaviour: list[BehaviourSplit] = []
    """For each condition a side (or the control) narrows by behaviour (``lie`` in ``lie+false``), how its
    responses were judged; empty when none is narrowed."""
    control: str | None = None
    """The condition whose items set each row's recall threshold (:func:`default_control` unless chosen)."""
    n_control: int = 0
    """Items of the control with at least one token at the selected positions."""
    fpr: float = DEFAULT_FPR
    """The false-positive rate on the control that the rows' recall is at."""
    recall_note: str | None = None
    """Set when the control has fewer than 1/``fpr`` items, so that ``fpr`` cannot be resolved: the rows'
    recall is at the control's ``1 - fpr`` quantile, not at a measured ``fpr``."""


def check_sides(condition_a: str, condition_b: str, present: set[str] | None = None) -> None:
    """Two different conditions of the table or narrowed by behaviour (and, given ``present``, ones whose
    condition the scenarios have) that share no scenario: ``lie`` vs ``lie+false`` is refused."""
    if condition_a == condition_b:
        raise WorkbenchError("contrast needs two different conditions")
    check_conditions((condition_a, condition_b), present, needed_by="the contrast", behaviour=True)
    (base_a, behaviour_a), (base_b, behaviour_b) = parse_condition(condition_a), parse_condition(condition_b)
    if base_a == base_b and None in (behaviour_a, behaviour_b):
        narrowed = condition_b if behaviour_a is None else condition_a
        raise WorkbenchError(f"{condition_a} and {condition_b} overlap: every {narrowed} scenario is a {base_a} "
                             f"scenario; contrast {base_a}+false with {base_a}+truth, or either with another condition")


def default_control(condition_a: str, condition_b: str, present: set[str] | None = None) -> str:
    """The control condition of a contrast's recall at 1% FPR: ``honest`` (answers to plain questions, the
    benign control) when the scenarios have it (``present``; None = assume so) and neither side is honest
    (narrowed or not); else side B."""
    honest = Condition.honest.value
    if (present is None or honest in present) and honest not in {parse_condition(c)[0] for c in (condition_a,
                                                                                                  condition_b)}:
        return honest
    return condition_b


def check_control(condition_a: str, control: str, present: set[str] | None = None) -> None:
    """A control condition of the table or narrowed by behaviour (given ``present``, one the scenarios have)
    that shares no scenario with side A: the recall of A is measured against it."""
    check_conditions((control,), present, needed_by="the control", behaviour=True)
    (base_a, behaviour_a), (base_c, behaviour_c) = parse_condition(condition_a), parse_condition(control)
    if control == condition_a or (base_a == base_c and None in (behaviour_a, behaviour_c)):
        raise WorkbenchError(f"the control {control} shares scenarios with side A ({condition_a}): recall at a "
                             "false-positive rate needs a control of other scenarios, e.g. honest or side B")


def condition_items(capture: Capture, conditions: Sequence[str], scenarios: Sequence[Scenario] | None = None,
                    judge: AnswerJudge | None = None) -> tuple[list[list[int]], list[BehaviourSplit]]:
    """The captured items (indices into ``capture.items``) of each condition, and for each condition a
    narrowed one is based on, how its captured responses were judged. A narrowed condition (``lie+false``)
    needs ``scenarios`` (those the capture was made from: their true and false answers) and judges each
    captured response with ``judge`` (default ``AnswerJudge.for_scenarios`` of those scenarios)."""
    items = capture.items
    narrowed = [c for c in conditions if parse_condition(c)[1] is not None]
    members: list[list[int]] = []
    splits: dict[str, BehaviourSplit] = {}
    if narrowed:
        if scenarios is None:
            raise WorkbenchError(f"{', '.join(narrowed)} narrow(s) a condition by what the model did, judged from each "
                                 "response against its scenario's answers: give the scenarios the capture was made from")
        captured = {item.item_id: index for index, item in enumerate(items) if item.kind == "scenario"}
        by_id = {s.id: s for s in scenarios if s.id in captured}
        bases = {parse_condition(c)[0] for c in narrowed}
        lacking = [item.item_id for item in items if item.condition in bases and item.item_id not in by_id]
        if lacking:
            raise WorkbenchError(f"{len(lacking)} captured scenario(s) have no match among the scenarios given "
                                 f"(e.g. {lacking[0]!r}): give the scenarios the capture was made from")
        responses = {item.item_id: item.response for item in items if item.item_id in by_id}
        judge = judge or AnswerJudge.for_scenarios(by_id.values())
    for condition in conditions:
        if parse_condition(condition)[1] is None:
            members.append([index for index, item in enumerate(items) if item.condition == condition])
            continue
        selection = select_by_behaviour(by_id.values(), condition, responses, judge)
        members.append(sorted(captured[s.id] for s in selection.scenarios))
        splits.setdefault(selection.base, BehaviourSplit(
            condition=selection.base, n=selection.n_base, by_behaviour=selection.by_behaviour,
            no_answer=selection.no_answer, no_response=selection.no_response))
    return members, list(splits.values())


def describe_split(split: BehaviourSplit) -> str:
    """``lie responses (n=24): 10 false, 8 truth, 6 no answer (on neither side)``, and any without a response."""
    text = (f"{split.condition} responses (n={split.n}): "
            + ", ".join(f"{count} {behaviour}" for behaviour, count in split.by_behaviour.items())
            + f", {split.no_answer} no answer (on neither side)")
    if split.no_response:
        text += f", {split.no_response} without a response (generate responses to judge them)"
    return text


def check_contrast_settings(condition_a: str, condition_b: str, position_rule: str = "last_prompt_token",
                            aggregation: str = "max", present: set[str] | None = None,
                            control: str | None = None) -> None:
    """Every check on a contrast's settings that needs no capture (the CLI's and a hypothesis file's, before
    anything loads): two conditions (:func:`check_sides`; given ``present``, the conditions the scenarios
    have), a control if one is chosen (:func:`check_control`), a known position rule and aggregation.
    (``contrast`` itself checks against the capture.)"""
    check_sides(condition_a, condition_b, present)
    if control is not None:
        check_control(condition_a, control, present)
    positions.position_rule(position_rule)
    if aggregation not in AGGREGATIONS:
        raise WorkbenchError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")


def item_feature_matrix(capture: Capture, site: str, position_rule: str, aggregation: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item feature values at the selected positions.

    Returns ``(matrix [n_items, d_sae], selected_tokens [n_items])``: the max (or mean) of
    each feature over the item's selected tokens, and how many tokens were selected.
    """
    if aggregation not in AGGREGATIONS:
        raise WorkbenchError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
    activations = capture.site(site)
    mask = capture.position_mask(position_rule)
    n_items, d_sae = len(capture.items), activations.d_sae
    selected = torch.zeros(n_items, dtype=torch.long)
    selected.index_add_(0, capture.item_index.long(), mask.long())
    keep = mask[activations.rows]
    items = capture.item_index.long()[activations.rows[keep]]
    flat_index = items * d_sae + activations.features[keep].long()
    matrix = torch.zeros(n_items * d_sae)
    if aggregation == "max":
        matrix.scatter_reduce_(0, flat_index, activations.values[keep], reduce="amax")
    else:
        matrix.index_add_(0, flat_index, activations.values[keep])
    matrix = matrix.view(n_items, d_sae)
    if aggregation == "mean":
        matrix = matrix / selected.clamp(min=1)[:, None]
    return matrix, selected


def contrast(
    capture: Capture,
    site: str,
    condition_a: str,
    condition_b: str,
    *,
    position_rule: str = "last_prompt_token",
    aggregation: str = "max",
    min_active: int = 5,
    min_items: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    top: int | None = None,
    scenarios: Sequence[Scenario] | None = None,
    judge: AnswerJudge | None = None,
    control: str | None = None,
    fpr: float = DEFAULT_FPR,
) -> Contrast:
    """Rank every feature by how well it separates items of ``condition_a`` from ``condition_b``.

    A feature is ranked only if it is active in at least ``min_active`` items of A and B
    together; the rest are counted in ``dropped`` with the reason. A condition narrowed by behaviour
    (``lie+false``) is judged from the captured responses (:func:`condition_items`: it needs ``scenarios``);
    how they were judged is in ``behaviour``. Each returned row also gets its recall of A at ``fpr`` on the
    ``control`` condition (default :func:`default_control`), with a bootstrap interval.
    """
    check_sides(condition_a, condition_b)
    present = sorted({item.condition for item in capture.items if item.condition})
    control = control or default_control(condition_a, condition_b, set(present))
    check_control(condition_a, control)
    for condition in (condition_a, condition_b, control):
        base = parse_condition(condition)[0]
        if base not in present:
            raise WorkbenchError(
                f"no items of condition {base!r} in this capture (present: {', '.join(present) or 'none'})"
            )
    matrix, selected = item_feature_matrix(capture, site, position_rule, aggregation)
    (members_a, members_b, members_control), splits = condition_items(
        capture, (condition_a, condition_b, control), scenarios, judge)
    index_a = [i for i in members_a if selected[i] > 0]
    index_b = [i for i in members_b if selected[i] > 0]
    index_control = [i for i in members_control if selected[i] > 0]
    excluded = len(members_a) + len(members_b) - len(index_a) - len(index_b)
    # the control needs one item to set a threshold; fewer than 1/fpr leave the rate unresolved (``recall_note``)
    for condition, members, index, role, needed in (
            (condition_a, members_a, index_a, "", min_items), (condition_b, members_b, index_b, "", min_items),
            (control, members_control, index_control, "the control ", 1)):
        if len(index) < needed:
            base = parse_condition(condition)[0]
            judged = [f"; {describe_split(split)}" for split in splits if split.condition == base
                      and condition != base]
            hint = "add scenarios" if len(members) < needed else "add scenarios, or pick another rule"
            if role:
                hint += ", or choose another control"
            raise WorkbenchError(
                f"only {len(index)} items of {role}{condition!r} have tokens at position rule "
                f"{position_rule!r}; at least {needed} {'is' if needed == 1 else 'are'} needed ({hint}){''.join(judged)}"
            )
    values_a, values_b = matrix[index_a], matrix[index_b]
    active_a = (values_a > 0).sum(0)
    active_b = (values_b > 0).sum(0)
    total_active = active_a + active_b
    keep = torch.nonzero(total_active >= min_active).flatten()
    never = int((total_active == 0).sum())
    dropped = {
        "never active on either condition": never,
        f"active in fewer than {min_active} items": int(((total_active > 0) & (total_active < min_active)).sum()),
    }
    rows: list[ContrastRow] = []
    if keep.numel():
        point, low, high = bootstrap_auroc(values_a[:, keep], values_b[:, keep], n_boot=n_boot, seed=seed)
        mean_a, mean_b = values_a[:, keep].mean(0), values_b[:, keep].mean(0)
        order = torch.argsort((point - 0.5).abs(), descending=True, stable=True)
        for j in order.tolist():
            feature = int(keep[j])
            rows.append(ContrastRow(
                feature=feature, auroc=float(point[j]), auroc_low=float(low[j]), auroc_high=float(high[j]),
                mean_a=float(mean_a[j]), mean_b=float(mean_b[j]), mean_difference=float(mean_a[j] - mean_b[j]),
                active_a=int(active_a[feature]), active_b=int(active_b[feature]),
            ))
    shown = rows[:top] if top else rows
    if shown:  # recall only for the rows returned: the ranking is by AUROC
        columns = [row.feature for row in shown]
        recall, low, high, _ = bootstrap_recall_at_fpr(values_a[:, columns], matrix[index_control][:, columns],
                                                       fpr=fpr, n_boot=n_boot, seed=seed)
        shown = [row.model_copy(update={"recall_at_fpr": float(recall[j]), "recall_at_fpr_low": float(low[j]),
                                        "recall_at_fpr_high": float(high[j])}) for j, row in enumerate(shown)]
    return Contrast(
        site=site, condition_a=condition_a, condition_b=condition_b, position_rule=position_rule,
        aggregation=aggregation, n_a=len(index_a), n_b=len(index_b), n_features=matrix.shape[1],
        n_ranked=len(rows), dropped=dropped, excluded_items=excluded, min_active=min_active,
        n_boot=n_boot, rows=shown, behaviour=splits, control=control, n_control=len(index_control), fpr=fpr,
        recall_note=unresolved_note(len(index_control), fpr),
    )
