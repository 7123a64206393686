"""The supervised baseline: linear probes on the residual stream at the same site as the SAE.

Two probes, as the deception-probe literature uses them: the difference of class means, and an
L2-regularised logistic regression on standardised activations. Both are trained on the train
split (positive condition vs negative condition) and scored on held-out scenarios by AUROC with a
bootstrap 95% interval, so an SAE-feature hypothesis can be compared with what a probe achieves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel

from workbench.core.errors import WorkbenchError
from workbench.model.loading import LoadedModel
from workbench.model.rendering import RenderedItem, pad_batch
from workbench.model.tracing import read_site, run_trace
from workbench.core.stats import Estimate, bootstrap_auroc

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


def residual_at_last_prompt_token(model: LoadedModel, site_name: str, items: Sequence[RenderedItem],
                                  batch_size: int = 32) -> torch.Tensor:
    """The site's activation at each item's last prompt token (``[n_items, d_model]``)."""
    site = model.site(site_name)
    pad_id = model.tokenizer.pad_token_id
    out = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        input_ids, attention = pad_batch(chunk, pad_id)
        last = torch.tensor([item.prompt_length - 1 for item in chunk])
        rows = torch.arange(len(chunk))

        def body(tracer: Any) -> torch.Tensor:
            return read_site(model, site)[rows, last].save()  # [chunk, d_model]

        out.append(run_trace(model, input_ids, attention, body, stop=True).detach().float())
    acts = torch.cat(out)
    if not torch.isfinite(acts).all():
        raise WorkbenchError("non-finite activations while reading probe inputs")
    return acts


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
) -> list[ProbeResult]:
    """Train each probe kind on each contrast (train split) and score it on the held-out split."""
    results = []
    for positive, negative in contrasts:
        def pick(condition: str, split: str) -> torch.Tensor:
            index = [i for i, (c, s) in enumerate(zip(conditions, splits)) if c == condition and s == split]
            return acts[index]

        tr_pos, tr_neg = pick(positive, "train"), pick(negative, "train")
        te_pos, te_neg = pick(positive, "heldout"), pick(negative, "heldout")
        for name, tensor in (("train " + positive, tr_pos), ("train " + negative, tr_neg),
                             ("held-out " + positive, te_pos), ("held-out " + negative, te_neg)):
            if len(tensor) < min_items:
                raise WorkbenchError(f"the probe baseline needs at least {min_items} {name} scenarios, got {len(tensor)}")
        for kind in kinds:
            scores, _ = probe_scores(kind, tr_pos, tr_neg, torch.cat([te_pos, te_neg]))
            point, low, high = bootstrap_auroc(scores[: len(te_pos)], scores[len(te_pos):], n_boot=n_boot, seed=seed)
            results.append(ProbeResult(
                kind=kind, site=site, positive=positive, negative=negative,
                n_train_positive=len(tr_pos), n_train_negative=len(tr_neg),
                auroc=Estimate(value=float(point), low=float(low), high=float(high),
                               n=len(te_pos) + len(te_neg), method="bootstrap"),
                n_heldout_positive=len(te_pos), n_heldout_negative=len(te_neg),
            ))
    return results
