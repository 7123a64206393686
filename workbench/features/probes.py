"""The supervised baseline: linear probes on the residual stream at the same site as the SAE.

Two probes, as the deception-probe literature uses them: the difference of class means, and an
L2-regularised logistic regression on standardised activations. Both are trained on the train
split (positive condition vs negative condition) and scored on held-out scenarios by AUROC with a
bootstrap 95% interval, so an SAE-feature hypothesis can be compared with what a probe achieves; and,
as deception-probe papers report them, by balanced accuracy at a threshold fixed on the train split and
by recall at 1% false-positive rate on a control set (``core.stats.detection_metrics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel

from workbench.core.errors import WorkbenchError
from workbench.model.loading import LoadedModel
from workbench.model.rendering import RenderedItem, last_prompt_token_batches
from workbench.model.tracing import read_site, run_trace
from workbench.core.stats import DEFAULT_FPR, DetectionMetrics, Estimate, balanced_threshold, detection_metrics

PROBE_KINDS = ("difference_of_means", "logistic_regression")


class ProbeResult(BaseModel):
    """One probe, trained on one contrast and scored on held-out scenarios."""

    kind: str
    site: str
    positive: str
    """The condition the probe scores high (e.g. ``lie``)."""
    negative: str
    n_train_positive: int
    n_train_negative: int
    auroc: Estimate
    """Held-out AUROC (positive vs negative) with a bootstrap 95% interval; n = held-out items."""
    n_heldout_positive: int
    n_heldout_negative: int
    detection: DetectionMetrics | None = None
    """The held-out scores as detection papers report them: AUROC (the same as ``auroc``), balanced
    accuracy at the threshold that maximises it on the train split (``threshold_rule`` = ``given``), and
    recall at 1% FPR on a control (``control``: the held-out negatives by default, or a benign control set),
    each with n. None in records written before these were measured."""


def residuals_at_last_prompt_token(model: LoadedModel, site_names: Sequence[str], items: Sequence[RenderedItem],
                                   batch_size: int = 32) -> torch.Tensor:
    """Each site's activation at each item's last prompt token, every site read in one pass per batch:
    ``[n_items, n_sites, d]``. Sites are given in the order the model runs them (nnsight reads them so)."""
    sites = [model.site(name) for name in site_names]
    out = []
    for input_ids, attention, rows, last in last_prompt_token_batches(items, model.tokenizer.pad_token_id, batch_size):

        def body(tracer: Any) -> list[torch.Tensor]:
            return [read_site(model, site)[rows, last].save() for site in sites]  # each [chunk, d]

        saved = run_trace(model, input_ids, attention, body, stop=True)
        out.append(torch.stack([value.detach().float() for value in saved], dim=1))
    if not out:
        return torch.zeros(0, len(sites), 0)
    acts = torch.cat(out)
    if not torch.isfinite(acts).all():
        raise WorkbenchError("non-finite activations while reading probe inputs")
    return acts


def residual_at_last_prompt_token(model: LoadedModel, site_name: str, items: Sequence[RenderedItem],
                                  batch_size: int = 32) -> torch.Tensor:
    """The site's activation at each item's last prompt token (``[n_items, d_model]``)."""
    return residuals_at_last_prompt_token(model, [site_name], items, batch_size)[:, 0]


def difference_of_means(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Unit direction from the negative class mean to the positive class mean (``[d]``)."""
    direction = positive.mean(0) - negative.mean(0)
    return direction / direction.norm().clamp(min=1e-8)


def logistic_regression(positive: torch.Tensor, negative: torch.Tensor, *, l2: float = 1e-2,
                        steps: int = 200) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit ``sigmoid(w · (x - mean) / std + b)``; returns (w, b, mean, std)."""
    x = torch.cat([positive, negative]).double()
    y = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    w = torch.zeros(z.shape[1], dtype=torch.double, requires_grad=True)
    b = torch.zeros(1, dtype=torch.double, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return w.detach(), b.detach(), mean, std


def probe_scores(kind: str, train_pos: torch.Tensor, train_neg: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores of ``test`` [n], the probe's direction in activation space [d])."""
    if kind == "difference_of_means":
        direction = difference_of_means(train_pos, train_neg)
        return test @ direction, direction
    if kind == "logistic_regression":
        w, b, mean, std = logistic_regression(train_pos, train_neg)
        scores = ((test.double() - mean) / std) @ w + b
        direction = (w / std).float()
        return scores.float(), direction / direction.norm().clamp(min=1e-8)
    raise WorkbenchError(f"unknown probe kind {kind!r}; choose one of {', '.join(PROBE_KINDS)}")


def evaluate_probes(
    acts: torch.Tensor,
    conditions: Sequence[str],
    splits: Sequence[str],
    *,
    site: str,
    contrasts: Sequence[tuple[str, str]] = (("lie", "honest"), ("lie", "parrot")),
    kinds: Sequence[str] = PROBE_KINDS,
    n_boot: int = 1000,
    seed: int = 0,
    min_items: int = 5,
    control_condition: str | None = None,
    control_acts: torch.Tensor | None = None,
    control_name: str = "control set",
    fpr: float = DEFAULT_FPR,
) -> list[ProbeResult]:
    """Train each probe kind on each contrast (train split) and score it on the held-out split.

    Recall at ``fpr`` is measured on a control: by default the held-out items of the contrast's negative
    condition; ``control_condition`` names another condition (its held-out items in ``acts``), or
    ``control_acts`` (``[n, d_model]``, named ``control_name``) gives a benign control set of the caller's.
    """
    if control_condition is not None and control_acts is not None:
        raise WorkbenchError("give the probes' control as a condition or as activations, not both")

    def pick(condition: str, split: str) -> torch.Tensor:
        index = [i for i, (c, s) in enumerate(zip(conditions, splits)) if c == condition and s == split]
        return acts[index]

    results = []
    for positive, negative in contrasts:
        tr_pos, tr_neg = pick(positive, "train"), pick(negative, "train")
        te_pos, te_neg = pick(positive, "heldout"), pick(negative, "heldout")
        if control_acts is not None:
            control, name = control_acts, control_name
        else:
            control_of = control_condition or negative
            control, name = pick(control_of, "heldout"), f"held-out {control_of}"
        for label, tensor in (("train " + positive, tr_pos), ("train " + negative, tr_neg),
                              ("held-out " + positive, te_pos), ("held-out " + negative, te_neg)):
            if len(tensor) < min_items:
                raise WorkbenchError(f"the probe baseline needs at least {min_items} {label} scenarios, got {len(tensor)}")
        if len(control) == 0:
            raise WorkbenchError(f"the probes' control ({name}) has no items: give control scenarios")
        sizes = [len(te_pos), len(te_neg), len(tr_pos), len(tr_neg), len(control)]
        for kind in kinds:
            scores, _ = probe_scores(kind, tr_pos, tr_neg, torch.cat([te_pos, te_neg, tr_pos, tr_neg, control]))
            s_te_pos, s_te_neg, s_tr_pos, s_tr_neg, s_control = torch.split(scores, sizes)
            detection = detection_metrics(s_te_pos, s_te_neg, s_control, fpr=fpr,
                                          threshold=balanced_threshold(s_tr_pos, s_tr_neg), control_name=name,
                                          n_boot=n_boot, seed=seed)
            results.append(ProbeResult(
                kind=kind, site=site, positive=positive, negative=negative,
                n_train_positive=len(tr_pos), n_train_negative=len(tr_neg), auroc=detection.auroc,
                n_heldout_positive=len(te_pos), n_heldout_negative=len(te_neg), detection=detection,
            ))
    return results
