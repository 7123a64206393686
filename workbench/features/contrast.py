"""Contrast between two conditions: every feature ranked by how well it separates them."""

from __future__ import annotations

import torch
from pydantic import BaseModel

from workbench.core import positions
from workbench.core.conditions import check_conditions
from workbench.core.errors import WorkbenchError
from workbench.features.capture import Capture
from workbench.core.stats import bootstrap_auroc

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


def check_contrast_settings(condition_a: str, condition_b: str, position_rule: str = "last_prompt_token",
                            aggregation: str = "max", present: set[str] | None = None) -> None:
    """Every check on a contrast's settings that needs no capture (the CLI's and a hypothesis file's, before
    anything loads): two different conditions of the table (and, given ``present``, ones the scenarios
    have), a known position rule and aggregation. (``contrast`` itself checks against the capture.)"""
    if condition_a == condition_b:
        raise WorkbenchError("contrast needs two different conditions")
    check_conditions((condition_a, condition_b), present, needed_by="the contrast")
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
) -> Contrast:
    """Rank every feature by how well it separates items of ``condition_a`` from ``condition_b``.

    A feature is ranked only if it is active in at least ``min_active`` items of A and B
    together; the rest are counted in ``dropped`` with the reason.
    """
    if condition_a == condition_b:
        raise WorkbenchError("contrast needs two different conditions")
    present = sorted({item.condition for item in capture.items if item.condition})
    for condition in (condition_a, condition_b):
        if condition not in present:
            raise WorkbenchError(
                f"no items of condition {condition!r} in this capture (present: {', '.join(present) or 'none'})"
            )
    matrix, selected = item_feature_matrix(capture, site, position_rule, aggregation)
    conditions = [item.condition for item in capture.items]
    index_a = [i for i, c in enumerate(conditions) if c == condition_a and selected[i] > 0]
    index_b = [i for i, c in enumerate(conditions) if c == condition_b and selected[i] > 0]
    excluded = sum(1 for i, c in enumerate(conditions) if c in (condition_a, condition_b) and selected[i] == 0)
    for condition, index in ((condition_a, index_a), (condition_b, index_b)):
        if len(index) < min_items:
            raise WorkbenchError(
                f"only {len(index)} items of {condition!r} have tokens at position rule "
                f"{position_rule!r}; at least {min_items} are needed (add scenarios, or pick another rule)"
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
    return Contrast(
        site=site, condition_a=condition_a, condition_b=condition_b, position_rule=position_rule,
        aggregation=aggregation, n_a=len(index_a), n_b=len(index_b), n_features=matrix.shape[1],
        n_ranked=len(rows), dropped=dropped, excluded_items=excluded, min_active=min_active,
        n_boot=n_boot, rows=rows[:top] if top else rows,
    )
