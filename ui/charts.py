"""Plotly figures for the app (every chart is plotly)."""

from __future__ import annotations

import plotly.graph_objects as go

from workbench.core.conditions import condition_colour
from workbench.core.positions import ROLE_COLOURS
from workbench.features.evidence import FeatureEvidence, FeatureExample


def histogram_figure(evidence: FeatureEvidence) -> go.Figure:
    edges = evidence.histogram.edges
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    figure = go.Figure(go.Bar(x=centres, y=evidence.histogram.counts, marker_color="#ea580c"))
    figure.update_layout(title=f"Non-zero activations (n={sum(evidence.histogram.counts)} tokens)",
                         xaxis_title="activation", yaxis_title="tokens", height=300, margin=dict(t=40, b=40))
    return figure


def per_condition_figure(evidence: FeatureEvidence) -> go.Figure:
    stats = evidence.per_condition
    figure = go.Figure(go.Bar(
        x=[f"{s.condition} (n={s.active_fraction.n})" for s in stats],
        y=[s.active_fraction.value for s in stats],
        error_y=dict(type="data", symmetric=False,
                     array=[s.active_fraction.high - s.active_fraction.value for s in stats],
                     arrayminus=[s.active_fraction.value - s.active_fraction.low for s in stats]),
        marker_color=[condition_colour(s.condition, index) for index, s in enumerate(stats)],
    ))
    figure.update_layout(title="Scenarios where it fires (Wilson 95% CI)", yaxis_title="fraction", yaxis_range=[0, 1],
                         height=300, margin=dict(t=40, b=40))
    return figure


def token_curve_figure(example: FeatureExample) -> go.Figure:
    figure = go.Figure(go.Scatter(
        x=list(range(len(example.values))), y=example.values, mode="lines+markers",
        marker=dict(color=[ROLE_COLOURS.get(r, "#374151") for r in example.roles], size=5),
        line=dict(color="#ea580c"), text=[f"{r}: {t!r}" for r, t in zip(example.roles, example.tokens)],
        hovertemplate="token %{x} %{text}<br>activation %{y:.3f}<extra></extra>",
    ))
    figure.add_vline(x=example.prompt_length - 0.5, line_dash="dot", annotation_text="answer starts")
    figure.update_layout(title=f"Activation over tokens: {example.item_id}", xaxis_title="token position",
                         yaxis_title="activation", height=260, margin=dict(t=40, b=40))
    return figure


def distribution_figure(values_a: list[float], values_b: list[float], name_a: str, name_b: str, feature: int) -> go.Figure:
    figure = go.Figure()
    for values, name, colour in ((values_a, name_a, condition_colour(name_a, 0)), (values_b, name_b, condition_colour(name_b, 1))):
        figure.add_trace(go.Box(y=values, name=f"{name} (n={len(values)})", boxpoints="all", jitter=0.4,
                                marker_color=colour, pointpos=0))
    figure.update_layout(title=f"Feature {feature} per scenario", yaxis_title="activation (aggregated)",
                         height=340, margin=dict(t=40, b=40))
    return figure


METRIC_LABELS = {"p_true": "P(true answer's first token)", "logit_diff": "logit(true) − logit(false)",
                 "lie_rate": "lie rate", "truth_rate": "truth rate", "parrot_rate": "parrot rate"}
CURVE_COLOURS = {"target": "#dc2626", "random": "#6b7280", "sign_flip": "#ca8a04", "other_condition": "#2563eb"}


def sweep_figure(result) -> go.Figure:
    """A causal experiment (``workbench.causal.experiment.ExperimentResult``): mean per-scenario change of
    the metric vs strength, one line per edit (target and each control), bootstrap 95% intervals as
    error bars, n in the legend."""
    label = METRIC_LABELS.get(result.experiment.metric, result.experiment.metric)
    figure = go.Figure()
    for curve in result.curves:
        n = curve.effects[0].n if curve.effects else 0
        figure.add_trace(go.Scatter(
            x=list(curve.strengths), y=[e.value for e in curve.effects], mode="lines+markers",
            name=f"{curve.label} on {curve.condition} (n={n})",
            line=dict(color=CURVE_COLOURS.get(curve.role, "#374151"), dash="solid" if curve.role == "target" else "dash"),
            error_y=dict(type="data", symmetric=False,  # no bar where n is too small for an interval
                         array=[e.high - e.value if e.has_interval else 0.0 for e in curve.effects],
                         arrayminus=[e.value - e.low if e.has_interval else 0.0 for e in curve.effects]),
            hovertemplate="strength %{x}<br>change %{y:.4f}<extra>%{fullData.name}</extra>",
        ))
    figure.add_hline(y=0, line_color="#9ca3af", line_width=1)
    figure.update_layout(title=f"Change in {label} vs strength (mean over scenarios, bootstrap 95% CI)",
                         xaxis_title=f"strength ({result.unit})" if len(result.unit) < 60 else "strength", yaxis_title=f"Δ {label}", height=380,
                         margin=dict(t=50, b=40), legend=dict(orientation="h", yanchor="top", y=-0.18))
    return figure
