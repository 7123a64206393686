"""Evidence for one feature: where it fires, shown in the whole conversation.

Every example is an entire captured item (system, user and assistant turns, or the
whole free text) with the feature's value at every token, never a snippet.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from pydantic import BaseModel

from workbench.features.capture import Capture
from workbench.model.loading import LoadedModel
from workbench.model.rendering import token_text
from workbench.model.saes import LoadedSAE
from workbench.core.conditions import condition_choices, ordered_conditions
from workbench.features.contrast import condition_items
from workbench.scenarios.records import Scenario
from workbench.core.positions import ROLES
from workbench.core.stats import Estimate, bootstrap_mean, wilson_interval


class FeatureExample(BaseModel):
    """One whole item with a feature's activation at every token."""

    item_id: str
    kind: str
    condition: str | None
    tokens: list[str]
    roles: list[str]
    """Speaker turn of every token (``system``/``user``/``assistant``/``text``)."""
    values: list[float]
    """The feature's activation at every token."""
    prompt_length: int
    """First token of the response (answer) in ``tokens``."""
    max_position: int
    max_value: float
    response: str | None = None


class Histogram(BaseModel):
    """Histogram of the feature's non-zero activations."""

    edges: list[float]
    counts: list[int]


class QuantileBin(BaseModel):
    """Examples whose maximum activation falls in one quantile range of active items."""

    low: float
    high: float
    n_items: int
    examples: list[FeatureExample]


class ConditionStats(BaseModel):
    """How the feature behaves on one condition's items."""

    condition: str
    active_fraction: Estimate
    """Fraction of items where the feature fires at least once (Wilson interval)."""
    mean_max: Estimate
    """Mean over items of the feature's maximum activation (bootstrap interval)."""


class LogitEffect(BaseModel):
    token: str
    value: float


class FeatureEvidence(BaseModel):
    """Everything the explorer shows about one feature."""

    site: str
    feature: int
    n_tokens: int
    n_items: int
    density: Estimate
    """Fraction of tokens where the feature is active (Wilson interval)."""
    max_value: float
    histogram: Histogram
    top_examples: list[FeatureExample]
    quantile_bins: list[QuantileBin]
    per_condition: list[ConditionStats]
    promoted: list[LogitEffect] = []
    """Tokens whose logits the decoder direction raises most (direct path through the unembedding)."""
    suppressed: list[LogitEffect] = []


def item_example(capture: Capture, values: torch.Tensor, item_position: int) -> FeatureExample:
    """The whole item ``capture.items[item_position]`` with the given per-token values."""
    item = capture.items[item_position]
    span = slice(item.token_start, item.token_start + item.n_tokens)
    item_values = values[span]
    max_position = int(torch.argmax(item_values)) if item.n_tokens else 0
    return FeatureExample(
        item_id=item.item_id, kind=item.kind, condition=item.condition,
        tokens=capture.meta.token_strings[span],
        roles=[ROLES[r] for r in capture.roles[span].tolist()],
        values=[round(v, 5) for v in item_values.tolist()],
        prompt_length=item.prompt_length, max_position=max_position,
        max_value=float(item_values[max_position]) if item.n_tokens else 0.0,
        response=item.response,
    )


def item_maxima(capture: Capture, values: torch.Tensor) -> torch.Tensor:
    """Maximum of per-token values within each item ([n_items])."""
    maxima = torch.full((len(capture.items),), float("-inf"))
    maxima.scatter_reduce_(0, capture.item_index.long(), values, reduce="amax")
    return maxima


def decoder_logits(model: LoadedModel, sae: LoadedSAE, feature: int) -> torch.Tensor:
    """The feature's decoder direction through the unembedding: its direct effect on every logit ([vocab])."""
    sae.check_feature(feature)
    with torch.no_grad():
        direction = sae.sae.W_dec[feature].float()  # [d_in]
        unembed = model.hf_model.get_output_embeddings().weight.float()  # [vocab, d_model]
        return unembed @ direction  # [vocab]


def logit_effects(model: LoadedModel, sae: LoadedSAE, feature: int, k: int = 10) -> tuple[list[LogitEffect], list[LogitEffect]]:
    """Top promoted / suppressed tokens of the feature's decoder direction through the unembedding.

    Direct effect only (final norm ignored), as Neuronpedia-style dashboards show it.
    """
    logits = decoder_logits(model, sae, feature)
    with torch.no_grad():
        top = torch.topk(logits, k)
        bottom = torch.topk(-logits, k)
    def decode(token_id: int) -> str:
        return token_text(model.tokenizer, token_id)

    return (
        [LogitEffect(token=decode(int(i)), value=float(v)) for v, i in zip(top.values, top.indices)],
        [LogitEffect(token=decode(int(i)), value=float(-v)) for v, i in zip(bottom.values, bottom.indices)],
    )


def feature_evidence(
    capture: Capture,
    site: str,
    feature: int,
    *,
    top_k: int = 5,
    n_quantiles: int = 4,
    per_quantile: int = 2,
    n_bins: int = 40,
    seed: int = 0,
    model: LoadedModel | None = None,
    sae: LoadedSAE | None = None,
    scenarios: Sequence[Scenario] | None = None,
) -> FeatureEvidence:
    """Density, histogram, top and quantile examples (whole items), per-condition statistics,
    and (given the model and SAE) logit effects of one feature.

    Given the ``scenarios`` the capture was made from (and a capture with responses), the per-condition
    statistics also hold each condition narrowed by what the model did (``lie+false``, ``lie+truth``...):
    a feature that fires as often where the model resisted a lie prompt as where it lied reads the
    prompt, not the act. Narrowed conditions with no response of their kind are left out."""
    activations = capture.site(site)
    if not 0 <= feature < activations.d_sae:
        from workbench.core.errors import FeatureIndexError

        raise FeatureIndexError(
            f"feature {feature} is out of range: the SAE at {site} has {activations.d_sae} features "
            f"(0 to {activations.d_sae - 1})"
        )
    values = activations.feature_values(feature)
    active = values > 0
    nonzero = values[values != 0]
    if nonzero.numel():
        counts, edges = torch.histogram(nonzero, bins=n_bins)
    else:
        counts, edges = torch.zeros(0), torch.zeros(0)
    maxima = item_maxima(capture, values)
    ranked = torch.argsort(maxima, descending=True)
    top = [item_example(capture, values, int(i)) for i in ranked[:top_k] if maxima[i] > 0]

    bins: list[QuantileBin] = []
    active_items = torch.nonzero(maxima > 0).flatten()
    if active_items.numel():
        rng = random.Random(seed)
        bounds = torch.quantile(maxima[active_items], torch.linspace(0, 1, n_quantiles + 1))
        for q in range(n_quantiles):
            low, high = float(bounds[q]), float(bounds[q + 1])
            upper_ok = maxima[active_items] <= high if q == n_quantiles - 1 else maxima[active_items] < high
            members = active_items[(maxima[active_items] >= low) & upper_ok].tolist()
            chosen = rng.sample(members, min(per_quantile, len(members)))
            bins.append(QuantileBin(low=low, high=high, n_items=len(members),
                                    examples=[item_example(capture, values, i) for i in chosen]))

    per_condition = []
    present = [item.condition for item in capture.items if item.condition]
    conditions = ordered_conditions(present)
    groups = [[i for i, item in enumerate(capture.items) if item.condition == c] for c in conditions]
    if scenarios is not None and any(item.response is not None for item in capture.items):
        narrowed = [c for c in condition_choices(present) if c not in conditions]
        narrowed_groups, _ = condition_items(capture, narrowed, scenarios)
        conditions += narrowed
        groups += narrowed_groups
    for condition, group in zip(conditions, groups):
        if not group:
            continue
        members = torch.tensor(group)
        member_max = maxima[members].clamp(min=0)
        per_condition.append(ConditionStats(
            condition=condition,
            active_fraction=wilson_interval(int((member_max > 0).sum()), len(members)),
            mean_max=bootstrap_mean(member_max, seed=seed),
        ))

    promoted, suppressed = logit_effects(model, sae, feature) if model is not None and sae is not None else ([], [])
    return FeatureEvidence(
        site=site, feature=feature, n_tokens=capture.n_tokens, n_items=len(capture.items),
        density=wilson_interval(int(active.sum()), capture.n_tokens),
        max_value=float(values.max()) if values.numel() else 0.0,
        histogram=Histogram(edges=edges.tolist(), counts=[int(c) for c in counts.tolist()]),
        top_examples=top, quantile_bins=bins, per_condition=per_condition,
        promoted=promoted, suppressed=suppressed,
    )
