"""Statistics with uncertainty: every number the workbench shows carries n and an interval."""

from __future__ import annotations

import math
import torch
from pydantic import BaseModel, ConfigDict


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
    point = auroc(positive, negative)
    generator = torch.Generator().manual_seed(seed)
    n_pos, n_neg = positive.shape[0], negative.shape[0]
    samples = []
    for _ in range(n_boot):
        pos_idx = torch.randint(n_pos, (n_pos,), generator=generator)
        neg_idx = torch.randint(n_neg, (n_neg,), generator=generator)
        samples.append(auroc(positive[pos_idx], negative[neg_idx]))
    stacked = torch.stack(samples)  # [n_boot, k]
    low = torch.quantile(stacked, 0.025, dim=0)
    high = torch.quantile(stacked, 0.975, dim=0)
    return point, low, high


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
