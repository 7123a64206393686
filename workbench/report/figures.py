"""The report's charts, drawn with plotly from the typed record parts, and their PNG export.

Every label is HTML-escaped: plotly renders label text as pseudo-HTML, so a condition or a
prediction name holding markup shows as text. Colours of conditions come from
``workbench.core.conditions``. plotly is imported inside the functions, so building a report
document (e.g. for the terminal) costs nothing until a figure is drawn.

PNG export uses kaleido (>= 1), which drives a locally installed Chrome/Chromium through
choreographer: nothing is downloaded at run time (kaleido takes plotly.js from the plotly package;
MathJax is disabled). ``render_pngs`` raises when kaleido or a browser is missing; callers keep
their tables then.
"""

from __future__ import annotations

import html
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from workbench.core.conditions import FALLBACK_COLOURS, condition_colour
from workbench.core.stats import Estimate
from workbench.hypotheses.records import FeatureStat, PredictionResult

#: Colours of prediction outcomes (thresholds are drawn in the outcome's colour).
OUTCOME_COLOURS = {"holds": "#047857", "contradicted": "#b91c1c", "unclear": "#b45309"}
#: Colours of the curves of a causal test by role.
ROLE_COLOURS = {"target": "#111827", "random": "#9ca3af", "sign_flip": "#0891b2", "other_condition": "#7c3aed"}


def label(text: Any) -> str:
    """Text for a plotly label: escaped, since plotly renders labels as pseudo-HTML."""
    return html.escape(str(text))


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _has_interval(e: Estimate) -> bool:
    return _finite(e.value) and _finite(e.low) and _finite(e.high) and e.has_interval


def _layout(fig: Any, title: str, height: int = 320) -> Any:
    fig.update_layout(
        title={"text": label(title), "x": 0.012, "xanchor": "left", "font": {"size": 14}},
        template="plotly_white", height=height, margin={"l": 60, "r": 20, "t": 48, "b": 48},
        font={"family": "Helvetica, Arial, sans-serif", "size": 12, "color": "#1f2937"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _wrap(text: str, width: int) -> str:
    """Shorten a long axis label (the full name is in the table beside the chart)."""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _error(estimates: Sequence[Estimate]) -> dict[str, Any]:
    return {"type": "data", "symmetric": False,
            "array": [e.high - e.value if _has_interval(e) else 0.0 for e in estimates],
            "arrayminus": [e.value - e.low if _has_interval(e) else 0.0 for e in estimates]}


def _thresholds(prediction: PredictionResult) -> list[float]:
    t = prediction.threshold
    return [-t, t] if prediction.comparison == "abs<" else [t]


def feature_conditions_figure(title: str, stats: Sequence[FeatureStat]) -> Any:
    """Mean activation and active fraction per condition, with 95% intervals."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    parts = (("mean activation", lambda s: s.mean), ("active fraction", lambda s: s.active_fraction))
    fig = make_subplots(rows=1, cols=2, subplot_titles=[name for name, _ in parts])
    for col, (name, pick) in enumerate(parts, start=1):
        shown = [s for s in stats if _finite(pick(s).value)]
        fig.add_trace(go.Scatter(
            x=[label(s.condition) for s in shown], y=[pick(s).value for s in shown],
            error_y=_error([pick(s) for s in shown]), mode="markers", showlegend=False, name=name,
            marker={"size": 11, "color": [condition_colour(s.condition, i) for i, s in enumerate(shown)]},
            hovertext=[f"n={pick(s).n}" for s in shown],
        ), row=1, col=col)
    return _layout(fig, f"{title}: per condition, 95% intervals", height=300)


def feature_distribution_figure(title: str, stats: Sequence[FeatureStat]) -> Any:
    """Every scenario's activation per condition (points over a box), or the histograms when the
    record kept no values."""
    import plotly.graph_objects as go

    fig = go.Figure()
    with_values = [s for s in stats if s.values]
    if with_values:
        for i, stat in enumerate(with_values):
            colour = condition_colour(stat.condition, i)
            fig.add_trace(go.Box(
                y=stat.values, name=label(f"{stat.condition} (n={len(stat.values)})"), boxpoints="all", jitter=0.45,
                pointpos=0, marker={"color": colour, "size": 5, "opacity": 0.7}, line={"color": colour},
                fillcolor="rgba(0,0,0,0)", showlegend=False,
            ))
        fig.update_yaxes(title_text="activation")
        return _layout(fig, f"{title}: every scenario's activation, per condition", height=320)
    for i, stat in enumerate(s for s in stats if s.histogram):
        edges, counts = stat.histogram.edges, stat.histogram.counts
        total = sum(counts) or 1
        fig.add_trace(go.Scatter(
            x=edges, y=[c / total for c in counts] + [counts[-1] / total], mode="lines",
            line={"shape": "hv", "width": 2, "color": condition_colour(stat.condition, i)},
            name=label(f"{stat.condition} (n={total})"),
        ))
    fig.update_xaxes(title_text="activation")
    fig.update_yaxes(title_text="share of scenarios")
    return _layout(fig, f"{title}: distribution of activations", height=300)


def effects_figure(prediction: PredictionResult) -> Any:
    """The measured effect and each control's at the judged strength, against the threshold."""
    import plotly.graph_objects as go

    entries = [("target: " + prediction.name, prediction.measured, ROLE_COLOURS["target"])]
    entries += [(f"control: {c.name}", c.effect, ROLE_COLOURS.get(c.role, "#9ca3af")) for c in prediction.controls]
    entries = [e for e in entries if _finite(e[1].value)]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        y=[label(_wrap(name, 46)) for name, _, _ in entries], x=[e.value for _, e, _ in entries], mode="markers",
        showlegend=False, error_x=_error([e for _, e, _ in entries]),
        marker={"size": 11, "color": [c for _, _, c in entries]}, hovertext=[f"n={e.n}" for _, e, _ in entries],
    ))
    for t in _thresholds(prediction):
        fig.add_vline(x=t, line={"dash": "dash", "color": OUTCOME_COLOURS[prediction.outcome]},
                      annotation_text=label(f"threshold {t:g}"), annotation_position="top")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text=label(prediction.metric))
    return _layout(fig, f"{prediction.name}: effect vs controls (95% intervals)", height=150 + 45 * len(entries))


def curves_figure(prediction: PredictionResult) -> Any:
    """A causal test's effect over strengths: the target curve with its band, each control curve."""
    import plotly.graph_objects as go

    causal = prediction.causal
    assert causal is not None, "curves_figure needs a causal prediction"
    result = causal.result
    fig = go.Figure()
    for index, curve in enumerate(result.curves):
        colour = ROLE_COLOURS.get(curve.role, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])
        if curve.role == "other_condition":
            colour = condition_colour(curve.condition, index)
        xs, ys = curve.strengths, [e.value for e in curve.effects]
        banded = [e for e in curve.effects if _has_interval(e)]
        if len(xs) > 1 and len(banded) == len(xs):
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=[e.high for e in curve.effects] + [e.low for e in curve.effects][::-1],
                                     fill="toself", line={"width": 0}, fillcolor=colour, opacity=0.18,
                                     showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers" if len(xs) > 1 else "markers", name=label(curve.label),
            line={"color": colour, "width": 2.5 if curve.role == "target" else 1.5},
            error_y=_error(curve.effects) if len(xs) == 1 else None, hovertext=[f"n={e.n}" for e in curve.effects],
        ))
    for t in _thresholds(prediction):
        fig.add_hline(y=t, line={"dash": "dash", "color": OUTCOME_COLOURS[prediction.outcome]},
                      annotation_text=label(f"threshold {t:g}"), annotation_position="top left")
    if len(result.target.strengths) > 1:
        fig.add_vline(x=causal.judged_strength, line={"dash": "dot", "color": "#6b7280"},
                      annotation_text="judged here", annotation_position="bottom right")
    fig.update_xaxes(title_text=label(f"strength ({_wrap(result.unit, 60)})"))
    fig.update_yaxes(title_text=label(f"{result.experiment.metric} change"))
    return _layout(fig, f"{prediction.name}: effect over strengths, target and controls (95% intervals)", height=340)


def render_pngs(figures: Mapping[str, Any]) -> dict[str, bytes]:
    """PNG bytes per figure, from one headless browser session (kaleido >= 1).

    kaleido finds Chrome/Chromium itself (``BROWSER_PATH`` overrides); MathJax is disabled so
    that nothing is fetched from a CDN; plotly.js comes from the plotly package.
    """
    import kaleido

    with tempfile.TemporaryDirectory(prefix="workbench-figures-") as tmp:
        specs = [{"fig": fig.to_dict(), "path": Path(tmp) / f"{name}.png",
                  "opts": {"format": "png", "width": 820, "height": int(fig.layout.height or 320), "scale": 2}}
                 for name, fig in figures.items()]
        kaleido.write_fig_from_object_sync(specs, kopts={"mathjax": False, "timeout": 60})
        missing = [name for name in figures if not (Path(tmp) / f"{name}.png").is_file()]
        if missing:
            raise RuntimeError(f"kaleido wrote no image for {', '.join(missing)}")
        return {name: (Path(tmp) / f"{name}.png").read_bytes() for name in figures}


# ----------------------------------------------------------------------------- scale studies

#: Colours of the series of a scale study's figures.
SERIES_COLOURS = ("#b91c1c", "#1d4ed8", "#047857", "#7c3aed", "#b45309", "#0891b2", "#4b5563", "#be185d")


def panels_figure(title: str, panels: Sequence[tuple[str, Sequence[tuple[str, Sequence[float], Sequence[Estimate | None],
                                                                        Sequence[str]]]]],
                  *, x_title: str, y_title: str, log_x: bool = False, y_range: tuple[float, float] | None = None,
                  reference: float | None = None, height: int = 340,
                  style: Callable[[str], tuple[str, str]] | None = None) -> Any:
    """Side-by-side panels (lie | parrot) of series: each ``(name, xs, estimates, point labels)``, drawn as points
    joined by lines with their 95% intervals; a point without an estimate is left out. Hover shows the point's
    label, value, interval and n. ``reference`` draws a dotted line (chance, no effect). ``style(name)`` gives a
    series' (colour key, line dash): series of one colour key share a colour (one metric, several groups)."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[label(name) for name, _ in panels],
                        shared_yaxes=True, horizontal_spacing=0.06)
    seen: set[str] = set()
    names = [name for _, series in panels for name, *_ in series]
    style = style or (lambda name: (name, "solid"))
    keys = list(dict.fromkeys(style(name)[0] for name in names))
    colours = {name: SERIES_COLOURS[keys.index(style(name)[0]) % len(SERIES_COLOURS)] for name in names}
    for column, (_, series) in enumerate(panels, start=1):
        for name, xs, estimates, labels in series:
            kept = [(x, e, point) for x, e, point in zip(xs, estimates, labels) if e is not None and _finite(e.value)]
            if not kept:
                continue
            hover = [f"{label(point)}<br>{label(name)}: {e.value:.3f} "
                     f"{'[%.3f, %.3f]' % (e.low, e.high) if _has_interval(e) else '(no interval)'} n={e.n}"
                     for _, e, point in kept]
            fig.add_trace(go.Scatter(
                x=[x for x, _, _ in kept], y=[e.value for _, e, _ in kept], name=label(name), mode="lines+markers",
                error_y=_error([e for _, e, _ in kept]), hovertext=hover, hoverinfo="text",
                line={"color": colours[name], "dash": style(name)[1]},
                marker={"size": 8, "symbol": "circle" if style(name)[1] == "solid" else "diamond"},
                legendgroup=name, showlegend=name not in seen,
            ), row=1, col=column)
            seen.add(name)
        if reference is not None:
            fig.add_hline(y=reference, line={"dash": "dot", "color": "#9ca3af"}, row=1, col=column)
        fig.update_xaxes(title_text=label(x_title), type="log" if log_x else "linear", row=1, col=column)
    fig.update_yaxes(title_text=label(y_title), row=1, col=1)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    fig = _layout(fig, title, height=height)
    # the legend below the axis titles, not over them
    fig.update_layout(legend={"orientation": "h", "y": -0.32}, margin={"l": 60, "r": 20, "t": 60, "b": 110})
    return fig
