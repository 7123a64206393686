"""What a causal test measures, and the controls it is measured against.

Behavioural metrics (per scenario, so effects are paired):
- ``p_true``: probability of the true answer's first token as the first token of the reply.
- ``logit_diff``: logit of the true answer's first token minus the false answer's.
- ``lie_rate`` / ``truth_rate`` / ``parrot_rate``: whether the greedy answer is a falsehood of the
  right type / the truth / the false answer given in the context, judged by the same rules as the
  organism eval (``workbench.scenarios.judging``).
Side effects: ``neutral_kl``, the KL divergence KL(unedited || edited) of next-token distributions
on neutral text, per token, so an edit that merely breaks the model shows.
Controls: random features matched on density and decoder norm, the sign-flipped edit, and the
same edit on other conditions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from workbench.core.errors import WorkbenchError
from workbench.core.stats import Estimate

#: Neutral text for side effects: nothing about facts, lies or quoting.
NEUTRAL_TEXTS = (
    "The kettle clicked off and the kitchen went quiet again.",
    "To bake bread, mix flour, water, yeast and salt, then let the dough rise.",
    "She tied her running shoes and stepped out into the cold morning.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The meeting moved to Thursday because two people were travelling.",
    "A good password is long, unique and stored in a password manager.",
    "The river widened as it reached the plain, slowing to a lazy curve.",
    "He counted the coins twice before dropping them into the jar.",
)

GENERATION_METRICS = ("lie_rate", "truth_rate", "parrot_rate")
LOGIT_METRICS = ("p_true", "logit_diff")
METRICS = LOGIT_METRICS + GENERATION_METRICS


def first_answer_token(tokenizer, answer: str, after_prefill: bool = False) -> int:
    """The token a reply that starts with ``answer`` starts with: replies start without a space,
    continuations of a prefill (``The capital of Kenya is``) with one."""
    ids = tokenizer((" " + answer) if after_prefill else answer, add_special_tokens=False)["input_ids"]
    if not ids:
        raise WorkbenchError(f"the answer {answer!r} tokenises to nothing")
    return int(ids[0])


def answer_token_ids(tokenizer, scenarios) -> tuple[torch.Tensor, torch.Tensor]:
    """First tokens of each scenario's true and false answer (the true one where it has no false
    one), as the model would start them after the scenario's prompt (with a space after a prefill)."""
    def first(answer: str, scenario) -> int:
        return first_answer_token(tokenizer, answer, scenario.prefill is not None)

    true_ids = torch.tensor([first(s.true_answer, s) for s in scenarios], dtype=torch.long)
    false_ids = torch.tensor([first(s.false_answer or s.true_answer, s) for s in scenarios], dtype=torch.long)
    return true_ids, false_ids


def logit_metrics(logits: torch.Tensor, true_ids: torch.Tensor, false_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """``p_true`` and ``logit_diff`` from next-token logits ``[n, k, vocab]`` → each ``[n, k]``."""
    probs = torch.softmax(logits.float(), dim=-1)
    index_true = true_ids[:, None, None].expand(-1, logits.shape[1], 1)
    index_false = false_ids[:, None, None].expand(-1, logits.shape[1], 1)
    p_true = probs.gather(-1, index_true)[..., 0]
    diff = logits.gather(-1, index_true)[..., 0] - logits.gather(-1, index_false)[..., 0]
    return {"p_true": p_true, "logit_diff": diff}


def neutral_kl(base_log_probs: Sequence[torch.Tensor], edited_log_probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean KL(base || edited) per token of each text (``[n_texts]``), position 0 excluded.

    Each input is one ``[n_tokens, vocab]`` tensor of log-probabilities per text.
    """
    values = []
    for base, edited in zip(base_log_probs, edited_log_probs):
        kl = (base.exp() * (base - edited)).sum(-1)[1:]
        values.append(kl.mean() if kl.numel() else torch.tensor(0.0))
    return torch.stack(values)


def matched_random_features(
    features: Sequence[int],
    density: torch.Tensor,
    decoder_norm: torch.Tensor,
    *,
    n_sets: int = 3,
    seed: int = 0,
    pool: int = 20,
) -> list[tuple[int, ...]]:
    """``n_sets`` sets of random features, each feature matched to one target feature on density
    (log scale) and decoder norm: drawn among the ``pool`` nearest features that are not targets
    and were active at least once. Different sets share no feature where the pool allows it."""
    d_sae = density.shape[0]
    targets = {int(f) for f in features}
    if len(targets) >= d_sae:
        raise WorkbenchError("no features left to draw random controls from")
    log_density = torch.log10(density.double().clamp(min=1e-7))
    norm = decoder_norm.double()
    scale_density = log_density.std().clamp(min=1e-6)
    scale_norm = norm.std().clamp(min=1e-6)
    generator = torch.Generator().manual_seed(seed)
    used: set[int] = set()
    sets: list[tuple[int, ...]] = []
    candidates_ok = density > 0
    for _ in range(n_sets):
        chosen = []
        for feature in features:
            distance = ((log_density - log_density[feature]) / scale_density) ** 2 + ((norm - norm[feature]) / scale_norm) ** 2
            distance[list(targets | used | set(chosen))] = math.inf
            if candidates_ok.any():
                distance[~candidates_ok] = math.inf
            nearest = torch.argsort(distance)[:pool]
            nearest = nearest[torch.isfinite(distance[nearest])]
            if nearest.numel() == 0:
                raise WorkbenchError("not enough active features to draw matched random controls")
            pick = int(nearest[torch.randint(nearest.numel(), (1,), generator=generator)])
            chosen.append(pick)
        used.update(chosen)
        sets.append(tuple(chosen))
    return sets


def _bootstrap(values: torch.Tensor, n_boot: int, seed: int, cluster: Sequence[str] | None = None) -> tuple[float, float]:
    generator = torch.Generator().manual_seed(seed)
    if cluster is None:
        idx = torch.randint(values.numel(), (n_boot, values.numel()), generator=generator)
        means = values[idx].mean(1)
    else:
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(cluster):
            groups.setdefault(key, []).append(i)
        members = list(groups.values())
        means_list = []
        for _ in range(n_boot):
            picks = torch.randint(len(members), (len(members),), generator=generator).tolist()
            index = [i for p in picks for i in members[p]]
            means_list.append(values[index].mean())
        means = torch.stack(means_list)
    return float(torch.quantile(means, 0.025)), float(torch.quantile(means, 0.975))


def mean_estimate(values: torch.Tensor, *, n_boot: int = 1000, seed: int = 0,
                  cluster: Sequence[str] | None = None) -> Estimate:
    """Mean of per-scenario values with a percentile bootstrap 95% interval (resampling
    clusters, e.g. facts, when given)."""
    values = values.double().flatten()
    n = int(values.numel())
    if n == 0:
        return Estimate(value=float("nan"), low=float("nan"), high=float("nan"), n=0, method="bootstrap")
    if not torch.isfinite(values).all():
        raise WorkbenchError("a measured value is NaN or inf; the run stops here")
    low, high = _bootstrap(values, n_boot, seed, cluster)
    method = "bootstrap over facts" if cluster is not None else "bootstrap"
    return Estimate(value=float(values.mean()), low=low, high=high, n=n, method=method)


def unpaired_difference(a: torch.Tensor, b: torch.Tensor, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """mean(a) - mean(b) for two independent samples, with a bootstrap 95% interval."""
    a, b = a.double().flatten(), b.double().flatten()
    if a.numel() == 0 or b.numel() == 0:
        return Estimate(value=float("nan"), low=float("nan"), high=float("nan"), n=0, method="bootstrap")
    generator = torch.Generator().manual_seed(seed)
    ia = torch.randint(a.numel(), (n_boot, a.numel()), generator=generator)
    ib = torch.randint(b.numel(), (n_boot, b.numel()), generator=generator)
    samples = a[ia].mean(1) - b[ib].mean(1)
    return Estimate(value=float(a.mean() - b.mean()), low=float(torch.quantile(samples, 0.025)),
                    high=float(torch.quantile(samples, 0.975)), n=int(a.numel() + b.numel()), method="bootstrap")
