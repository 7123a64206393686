"""Hypothesis reports generated from a run record: HTML, Markdown or JSON.

- **HTML** is one self-contained file: plotly.js is inlined once, nothing is fetched, and a
  print stylesheet makes it printable. It opens offline and can be mailed as it is.
- **Markdown** carries the same content. Numbers are always in tables (they survive
  pasting anywhere); ``write_report`` also exports the figures as PNG files into a sibling
  folder ``<stem>_files/`` and links them relatively. PNG export uses plotly + kaleido (>= 1),
  which drives a locally installed Chrome/Chromium through choreographer: nothing is
  downloaded at run time (kaleido takes plotly.js from the plotly package; MathJax is
  disabled). Where kaleido or a browser is missing, the Markdown says so and keeps the tables.
- **JSON** is the run record itself at the current record version.

Sections, in order: the claim and the verdict; setup (model, adapter, SAE, sites, versions,
commit, seeds, the command that reruns it); evidence (whole-context examples, activation
distributions per condition, contrast statistics, the probe baseline); predictions and
causal tests with their controls; per-response verdicts; limitations derived from the data.

Every piece of user-supplied text (claim, descriptions, tokens, responses, ids) is escaped:
in HTML with ``html.escape`` (also inside figures, whose labels plotly renders as pseudo-HTML),
in Markdown by escaping ``|``, backticks, emphasis characters and ``<``/``>``.

The record fields ``feature_stats``, ``probe`` and ``details`` are free-form dictionaries, so
they are rendered defensively: known shapes become charts, anything else a table of its keys.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workbench.core.errors import WorkbenchError
from workbench.core.io import write_bytes_atomically, write_text_atomically
from workbench.hypotheses.records import ExampleRecord, PredictionResult, RunRecord, read_record
from workbench.core.stats import Estimate

__all__ = [
    "FORMATS", "ReportFormat", "export_figures", "limitations", "md_escape", "render_html", "render_markdown",
    "render_report", "report_command", "report_figures", "write_report",
]

ReportFormat = Literal["html", "md", "json"]
FORMATS: tuple[str, ...] = ("html", "md", "json")
SUFFIXES = {"html": ".html", "md": ".md", "json": ".json"}

#: Below this many samples an estimate is called small in the limitations.
SMALL_N = 30
#: An interval wider than this on a rate, probability or AUROC is called wide.
WIDE_INTERVAL = 0.3
#: Mean next-token KL (nats) on neutral text above which an edit is said to have side effects.
SIDE_EFFECT_KL = 0.1

VERDICT_COLOURS = {"supported": "#047857", "refuted": "#b91c1c", "inconclusive": "#b45309"}
OUTCOME_COLOURS = {"holds": "#047857", "contradicted": "#b91c1c", "unclear": "#b45309"}
CONDITION_COLOURS = {"honest": "#2563eb", "lie": "#dc2626", "parrot": "#7c3aed", "ignorant": "#6b7280"}
FALLBACK_COLOURS = ["#0891b2", "#ca8a04", "#db2777", "#65a30d", "#9333ea", "#0f766e"]
#: What each condition's response should be called if the protocol gets it right.
EXPECTED_VERDICT = {"honest": "honest", "lie": "intentional lie", "parrot": "parroting", "ignorant": "ignorance"}

SECTIONS = [
    ("claim", "Claim and verdict"),
    ("setup", "Setup"),
    ("evidence", "Evidence"),
    ("predictions", "Predictions and causal tests"),
    ("responses", "Per-response verdicts"),
    ("limitations", "Limitations"),
]

MAX_ROWS = 50
"""Longest list rendered row by row inside a details table (the JSON report keeps all)."""


# --------------------------------------------------------------------------------------------
# Public API


def render_report(record: RunRecord, fmt: ReportFormat) -> str:
    """The report as text. Markdown from here has tables only (no files to link figures to);
    ``write_report`` adds PNG figures next to the ``.md``."""
    fmt = _check_format(fmt)
    if fmt == "json":
        return record.model_dump_json(indent=1)
    if fmt == "html":
        return render_html(record)
    return render_markdown(record)


def write_report(
    record: RunRecord,
    fmt: ReportFormat,
    path: str | os.PathLike[str],
    *,
    figures: bool = True,
) -> Path:
    """Write the report atomically (temporary file, then rename) and return its path.

    For Markdown with ``figures``, the charts are exported as PNG files into
    ``<stem>_files/`` beside ``path`` first (each written atomically), then the ``.md`` that
    links them; if the export cannot run here, the report says why and keeps its tables.
    """
    fmt = _check_format(fmt)
    path = Path(path)
    if fmt == "md":
        figure_paths: dict[str, str] | None = None
        note = None
        if figures:
            figure_paths, note = export_figures(record, path.parent / f"{path.stem}_files")
            figure_paths = {name: f"{path.stem}_files/{file}" for name, file in figure_paths.items()}
        text = render_markdown(record, figure_paths=figure_paths, figure_note=note)
    else:
        text = render_report(record, fmt)
    write_text_atomically(path, text)
    return path


def report_command(record_path: Path, fmt: str, out: Path) -> Path:
    """What ``workbench report`` runs: read (and migrate) a record, write its report to ``out``.

    ``out`` may be a file or an existing folder (the report is then named after the record).
    Returns the written path; a ``WorkbenchError`` says what to fix for a bad format or record.
    """
    fmt = _check_format(fmt)
    record = read_record(record_path)
    out = Path(out)
    if out.is_dir():
        out = out / (Path(record_path).stem + SUFFIXES[fmt])
    if out.resolve() == Path(record_path).resolve():
        raise WorkbenchError(f"{out} is the run record itself: give another output path for the {fmt} report")
    try:
        return write_report(record, fmt, out)  # type: ignore[arg-type]
    except OSError as error:
        raise WorkbenchError(f"could not write the report to {out}: {error.strerror or error}") from None


def limitations(record: RunRecord) -> list[str]:
    """Plain statements of what weakens the verdict, derived from the record's numbers."""
    found: list[str] = []
    small = {c: n for c, n in record.scenario_counts.items() if n < SMALL_N}
    if small:
        listed = ", ".join(f"{c} {n}" for c, n in small.items())
        found.append(f"Few scenarios per condition (fewer than {SMALL_N}): {listed}. "
                     "Per-condition statistics from so few items can move a lot on a rerun.")
    small_tests = [f"{p.name} n={p.measured.n}" for p in record.predictions
                   if 0 < p.measured.n < SMALL_N and _finite(p.measured.value)]
    if small_tests:
        found.append(f"Small samples (fewer than {SMALL_N}) behind: {', '.join(small_tests)}.")
    for prediction in record.predictions:
        name = prediction.name
        measured = prediction.measured
        if measured.n == 0 or not _finite(measured.value):
            found.append(f"{name}: nothing was measured (n={measured.n}).")
            continue
        width = measured.high - measured.low
        if _bounded_metric(prediction.metric, measured) and width > WIDE_INTERVAL:
            found.append(f"{name}: the 95% interval of {prediction.metric} is wide "
                         f"([{_num(measured.low)}, {_num(measured.high)}], width {_num(width)}).")
        if prediction.outcome == "unclear":
            found.append(f"{name}: unclear: the interval [{_num(measured.low)}, {_num(measured.high)}] "
                         f"overlaps the threshold ({_prediction_rule(prediction)}), so it neither holds nor "
                         "is contradicted.")
        kl = _estimate_from(prediction.details, "neutral_kl") if isinstance(prediction.details, Mapping) else None
        if kl is not None and _finite(kl.value) and kl.value > SIDE_EFFECT_KL:
            found.append(f"{name}: the edit also changes the model on neutral text (mean next-token KL "
                         f"{_estimate(kl)} nats, above {SIDE_EFFECT_KL:g}): part of its effect may be damage "
                         "rather than the mechanism.")
        if prediction.kind == "causal" and not prediction.controls:
            found.append(f"{name}: a causal test without controls; its effect is not compared with any "
                         "control edit.")
        for control in prediction.controls:
            diff = control.target_minus_control
            state, _ = separation(prediction, diff)
            if state == "overlaps":
                found.append(f"{name}: the target effect is not separated from the control "
                             f"\u201c{control.name}\u201d (target minus control {_estimate(diff)} includes 0).")
            elif state == "wrong way":
                found.append(f"{name}: the control \u201c{control.name}\u201d moves {prediction.metric} more than "
                             f"the target edit in the predicted direction (target minus control {_estimate(diff)}).")
    for row in record.probe:
        auroc = _estimate_from(row, "auroc")
        if auroc is not None and _finite(auroc.low) and _finite(auroc.high) and auroc.high - auroc.low > WIDE_INTERVAL:
            label = " ".join(str(row[k]) for k in ("kind", "comparison") if k in row) or "probe"
            if "positive" in row and "negative" in row:
                label = f"{row.get('kind', 'probe')}, {row['positive']} vs {row['negative']}"
            found.append(f"Probe baseline ({label}): wide AUROC interval [{_num(auroc.low)}, {_num(auroc.high)}].")
    judged = [r for r in record.responses if r.condition in EXPECTED_VERDICT]
    disagree = [r for r in judged if r.verdict != EXPECTED_VERDICT[r.condition]]
    if disagree:
        found.append(f"Per-response verdicts disagree with the scenario's condition on {len(disagree)} of "
                     f"{len(judged)} responses ({', '.join(r.scenario_id for r in disagree[:5])}"
                     f"{', ...' if len(disagree) > 5 else ''}).")
    dirty = _find_value(record.environment, ("git_dirty", "dirty"))
    if dirty is True:
        found.append("The working tree had uncommitted changes when this ran: the recorded commit alone does "
                     "not reproduce it.")
    if not record.examples:
        found.append("The record holds no whole-context examples of the features.")
    return found


# --------------------------------------------------------------------------------------------
# Formatting helpers


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise WorkbenchError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _num(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:.3f}"


def _estimate(e: Estimate) -> str:
    if e.n == 0 or not _finite(e.value):
        return f"n/a (n={e.n})"
    return f"{_num(e.value)} [{_num(e.low)}, {_num(e.high)}] n={e.n}"


def _is_estimate_like(value: Any) -> bool:
    return isinstance(value, Mapping) and {"value", "low", "high"} <= set(value)


def _as_estimate(value: Mapping[str, Any]) -> Estimate | None:
    try:
        return Estimate(value=float(value["value"]), low=float(value["low"]), high=float(value["high"]),
                        n=int(value.get("n", 0) or 0), method=str(value.get("method", "")))
    except (TypeError, ValueError, KeyError):
        return None


def _estimate_from(row: Mapping[str, Any], key: str) -> Estimate | None:
    """``row[key]`` as an estimate: an estimate-like dict, or a number with ``key_low``/``key_high``."""
    value = row.get(key)
    if _is_estimate_like(value):
        return _as_estimate(value)
    if _finite(value) and _finite(row.get(f"{key}_low")) and _finite(row.get(f"{key}_high")):
        n = row.get("n", 0)
        return Estimate(value=float(value), low=float(row[f"{key}_low"]), high=float(row[f"{key}_high"]),
                        n=int(n) if _finite(n) else 0, method=str(row.get("method", "")))
    return None


def _bounded_metric(metric: str, measured: Estimate) -> bool:
    """Rates, probabilities and AUROCs: where an interval width of 0.3 means something."""
    words = ("auroc", "auc", "rate", "fraction", "accuracy", "prob", "p_true", "p_false")
    return measured.method == "wilson" or any(word in metric.lower() for word in words)


def _prediction_rule(p: PredictionResult) -> str:
    if p.comparison == "abs<":
        return f"|{p.metric}| < {_num(p.threshold)}"
    return f"{p.metric} {p.comparison} {_num(p.threshold)}"


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys; lists of scalars kept as lists."""
    if isinstance(data, Mapping):
        rows: list[tuple[str, Any]] = []
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping) and value and not _is_estimate_like(value):
                rows.extend(_flatten(value, name))
            else:
                rows.append((name, value))
        return rows
    return [(prefix, data)]


def _scalar_text(value: Any) -> str:
    """A short text for any JSON value (estimate-like dicts as ``v [lo, hi] n``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return _num(value)
    if _is_estimate_like(value):
        estimate = _as_estimate(value)
        return _estimate(estimate) if estimate else json.dumps(value, default=str)
    if isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value):
        shown = ", ".join(_scalar_text(v) for v in value[:MAX_ROWS])
        return f"[{shown}{', ...' if len(value) > MAX_ROWS else ''}]"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def _find_value(data: Mapping[str, Any], names: Iterable[str]) -> Any:
    """The first of ``names`` found in ``data`` or one level down."""
    names = list(names)
    for name in names:
        if name in data:
            return data[name]
    for value in data.values():
        if isinstance(value, Mapping):
            for name in names:
                if name in value:
                    return value[name]
    return None


# --------------------------------------------------------------------------------------------
# Content shared by the HTML and Markdown renderers


@dataclass
class SetupFacts:
    """The setup, picked out of the record's free-form ``setup`` and ``environment``."""

    rows: list[tuple[str, str]]
    packages: list[tuple[str, str]]
    all_setup: list[tuple[str, Any]]


def setup_facts(record: RunRecord) -> SetupFacts:
    setup, env = record.setup, record.environment
    rows: list[tuple[str, str]] = []
    model = setup.get("model")
    if isinstance(model, Mapping):
        source = model.get("source") or model.get("name") or model.get("id")
        text = str(source) if source is not None else json.dumps(model, default=str)
        if model.get("gguf_file"):
            text += f" (GGUF {model['gguf_file']})"
        if model.get("revision"):
            text += f" @ {model['revision']}"
        if setup.get("model_name"):
            text = f"{setup['model_name']} ({text})" if str(source) not in str(setup["model_name"]) else \
                str(setup["model_name"])
        rows.append(("Model", text))
        adapter = model.get("adapter")
    else:
        if model is not None:
            rows.append(("Model", str(model)))
        adapter = None
    adapter = adapter or setup.get("adapter")
    rows.append(("Adapter", str(adapter) if adapter else "none"))
    for key in ("model_hash", "model_id", "model_identity"):
        if key in setup:
            rows.append(("Model identity", str(setup[key])))
            break
    sae = setup.get("sae")
    if isinstance(sae, Mapping):
        if sae.get("registry_name"):
            text = f"registry: {sae['registry_name']}"
        elif sae.get("path"):
            text = f"local: {sae['path']}"
        elif sae.get("release"):
            text = f"{sae['release']}/{sae.get('sae_id')}"
        else:
            text = "registry default" if not any(sae.values()) else json.dumps(sae, default=str)
        rows.append(("SAE", text))
    elif sae is not None:
        rows.append(("SAE", str(sae)))
    for key in ("sae_hash", "sae_id_hash", "sae_identity"):
        if key in setup:
            rows.append(("SAE identity", str(setup[key])))
            break
    sites = setup.get("sites") or setup.get("site") or record.hypothesis.get("sites") or record.hypothesis.get("site")
    if sites:
        rows.append(("Site(s)", ", ".join(map(str, sites)) if isinstance(sites, list) else str(sites)))
    features = record.hypothesis.get("features") or record.hypothesis.get("feature")
    if features is not None:
        rows.append(("Feature(s)", ", ".join(map(str, features)) if isinstance(features, list) else str(features)))
    scenarios = setup.get("scenarios") or setup.get("scenario_file") or setup.get("scenarios_path")
    if isinstance(scenarios, Mapping):
        scenarios = ", ".join(f"{k}={_scalar_text(v)}" for k, v in scenarios.items() if v is not None)
    if scenarios:
        rows.append(("Scenarios", str(scenarios)))
    hashes = [(k, v) for k, v in setup.items() if k.endswith("_hash") and k not in ("model_hash", "sae_hash")]
    if hashes:
        rows.append(("Scenario set hashes", ", ".join(f"{k.removesuffix('_hash')} {v}" for k, v in hashes)))
    counts = ", ".join(f"{c} {n}" for c, n in record.scenario_counts.items())
    if counts:
        rows.append(("Scenarios per condition", counts))
    seeds = [(k, v) for k, v in _flatten(setup) if "seed" in k.lower()]
    rows.append(("Seeds", ", ".join(f"{k}={_scalar_text(v)}" for k, v in seeds) if seeds else "not recorded"))
    commit = _find_value(env, ("git_commit", "commit", "git"))
    if isinstance(commit, Mapping):
        commit = commit.get("commit") or commit.get("sha") or json.dumps(commit, default=str)
    dirty = _find_value(env, ("git_dirty", "dirty"))
    rows.append(("Git commit", (str(commit) if commit else "not recorded")
                 + (" (uncommitted changes)" if dirty is True else "")))
    for key, label in (("python", "Python"), ("platform", "Platform")):
        if key in env:
            rows.append((label, str(env[key])))
    rows.append(("Finished", record.created))
    if record.seconds:
        rows.append(("Run time", f"{record.seconds:.1f} s"))
    if record.hypothesis_path:
        rows.append(("Hypothesis file", record.hypothesis_path))
    packages_value = _find_value(env, ("packages", "package_versions", "versions"))
    packages = ([(str(k), "not installed" if v is None else str(v)) for k, v in packages_value.items()]
                if isinstance(packages_value, Mapping) else [])
    return SetupFacts(rows=rows, packages=packages, all_setup=_flatten(setup))


@dataclass
class FeatureCondition:
    condition: str
    estimates: dict[str, Estimate] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)
    histogram: tuple[list[float], list[float]] | None = None
    """(edges, counts)."""
    values: list[float] | None = None
    """Per-item values, when the record keeps them (plotted as points over a box)."""


@dataclass
class FeatureStats:
    label: str
    rows: list[FeatureCondition] = field(default_factory=list)


_META_KEYS = ("site", "feature", "latent", "index", "name", "condition", "per_condition", "conditions")


def _histogram(row: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    hist = row.get("histogram")
    edges, counts = None, None
    if isinstance(hist, Mapping):
        edges, counts = hist.get("edges"), hist.get("counts")
    elif "histogram_edges" in row:
        edges, counts = row.get("histogram_edges"), row.get("histogram_counts")
    if (isinstance(edges, list) and isinstance(counts, list) and counts
            and len(edges) == len(counts) + 1 and all(_finite(v) for v in edges + counts)):
        return [float(e) for e in edges], [float(c) for c in counts]
    return None


def _feature_condition(condition: str, row: Mapping[str, Any]) -> FeatureCondition:
    out = FeatureCondition(condition=condition, histogram=_histogram(row), values=_numbers(row.get("values")))
    for key, value in row.items():
        if key in _META_KEYS or key in ("histogram", "histogram_edges", "histogram_counts", "values"):
            continue
        if key.endswith(("_low", "_high")) and key.rsplit("_", 1)[0] in row:
            continue
        estimate = _estimate_from(row, key)
        if estimate is not None:
            out.estimates[key] = estimate
        elif not isinstance(value, (list, dict)):
            out.scalars[key] = value
    return out


def feature_stats(record: RunRecord) -> list[FeatureStats]:
    """``record.feature_stats`` grouped by feature, whichever of the likely shapes it has:
    one dict per (feature, condition), or one per feature with ``per_condition``/``conditions``
    (a list of dicts or a dict keyed by condition)."""
    grouped: dict[str, FeatureStats] = {}
    for entry in record.feature_stats:
        if not isinstance(entry, Mapping):
            continue
        feature = next((entry[k] for k in ("feature", "latent", "index") if k in entry), None)
        site = entry.get("site")
        if feature is not None:
            label = f"feature {feature}" + (f" at {site}" if site else "")
        else:
            label = str(entry.get("name") or site or "feature")
        stats = grouped.setdefault(label, FeatureStats(label=label))
        nested = entry.get("per_condition", entry.get("conditions"))
        if isinstance(nested, Mapping):
            nested = [{"condition": c, **v} for c, v in nested.items() if isinstance(v, Mapping)]
        if isinstance(nested, list):
            for sub in nested:
                if isinstance(sub, Mapping):
                    stats.rows.append(_feature_condition(str(sub.get("condition", "all")), sub))
        else:
            stats.rows.append(_feature_condition(str(entry.get("condition", "all")), entry))
    return list(grouped.values())


@dataclass
class Curve:
    """One x/y series of a prediction's ``details`` (e.g. the effect over steering strengths)."""

    x_name: str
    x: list[float]
    series: list[tuple[str, list[float], list[float] | None, list[float] | None]]
    """(name, y, low or None, high or None) per series."""
    keys: set[str] = field(default_factory=set)
    """The ``details`` keys this curve shows (left out of the details table)."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Scalars stored beside the curve (e.g. ``unedited_mean``), shown under its table."""


_X_NAMES = ("strengths", "strength", "alphas", "alpha", "scales", "scale", "coefficients", "x", "layers", "k")


def _numbers(value: Any) -> list[float] | None:
    if isinstance(value, list) and value and all(_finite(v) for v in value):
        return [float(v) for v in value]
    return None


def _series_values(value: Any) -> tuple[list[float], list[float] | None, list[float] | None] | None:
    """A y series: a list of numbers, or of estimates (value with its interval)."""
    numbers = _numbers(value)
    if numbers is not None:
        return numbers, None, None
    if isinstance(value, list) and value and all(_is_estimate_like(v) and _finite(v.get("value")) for v in value):
        ys = [float(v["value"]) for v in value]
        if all(_finite(v.get("low")) and _finite(v.get("high")) for v in value):
            return ys, [float(v["low"]) for v in value], [float(v["high"]) for v in value]
        return ys, None, None
    return None


def _columns_curve(data: Mapping[str, Any]) -> tuple[Curve | None, set[str]]:
    """An x list (``strengths``...) with y lists of the same length in one mapping."""
    x_key = next((k for k in _X_NAMES if _numbers(data.get(k))), None)
    if x_key is None:
        return None, set()
    x = _numbers(data[x_key]) or []
    series = []
    used = {x_key}
    for key, value in data.items():
        if key == x_key or key in ("low", "high") or key.endswith(("_low", "_high")):
            continue
        found = _series_values(value)
        if found is None or len(found[0]) != len(x):
            continue
        ys, low, high = found
        if low is None:
            low_key = f"{key}_low" if f"{key}_low" in data else "low" if key == "curve" else None
            high_key = f"{key}_high" if f"{key}_high" in data else "high" if key == "curve" else None
            low = _numbers(data.get(low_key)) if low_key else None
            high = _numbers(data.get(high_key)) if high_key else None
            if low is not None and high is not None and len(low) == len(high) == len(x):
                used |= {low_key, high_key}  # type: ignore[arg-type]
            else:
                low = high = None
        series.append((key, ys, low, high))
        used.add(key)
    if not series:
        return None, set()
    notes = {k: v for k, v in data.items() if k not in used and not isinstance(v, (list, dict))}
    return Curve(x_name=x_key, x=x, series=series, keys=used, notes=notes), used


def curves(details: Mapping[str, Any]) -> list[Curve]:
    """Curves a prediction's ``details`` holds, in any of these shapes:

    - an x list (``strengths``...) beside y lists of the same length (numbers or estimates,
      optional ``*_low``/``*_high`` bands), at the top level or inside ``details["curve"]``
      (what ``workbench.hypotheses.runner`` writes: ``{"strengths": [...], "target": [estimates]}``);
    - ``curve`` as a list of points (dicts) or an ``{x: y}`` dict.
    """
    found: list[Curve] = []
    top, _ = _columns_curve(details)
    if top is not None:
        top.notes = {}
        found.append(top)
    curve = details.get("curve")
    if isinstance(curve, Mapping) and curve:
        nested, _ = _columns_curve(curve)
        if nested is not None:
            nested.keys = {"curve"}
            found.append(nested)
        else:
            try:
                points = sorted((float(k), float(v)) for k, v in curve.items())
            except (TypeError, ValueError):
                points = []
            if points:
                found.append(Curve(x_name="x", x=[p[0] for p in points],
                                   series=[("curve", [p[1] for p in points], None, None)], keys={"curve"}))
    elif isinstance(curve, list) and curve and all(isinstance(p, Mapping) for p in curve):
        keys = [k for k in curve[0] if all(_finite(p.get(k)) for p in curve)]
        x_name = next((k for k in keys if k in _X_NAMES), keys[0] if keys else None)
        if x_name is not None:
            x = [float(p[x_name]) for p in curve]
            value_keys = [k for k in keys if k != x_name and not k.endswith(("low", "high")) and k != "n"]
            series = []
            for key in value_keys:
                low_key = next((k for k in (f"{key}_low", "low") if k in keys), None)
                high_key = next((k for k in (f"{key}_high", "high") if k in keys), None)
                series.append((key, [float(p[key]) for p in curve],
                               [float(p[low_key]) for p in curve] if low_key else None,
                               [float(p[high_key]) for p in curve] if high_key else None))
            if series:
                found.append(Curve(x_name=x_name, x=x, series=series, keys={"curve"}))
    return found


def _curve_keys(found: list[Curve]) -> set[str]:
    """Detail keys already shown as curves (left out of the details table)."""
    return set().union(*(curve.keys for curve in found)) if found else set()


# --------------------------------------------------------------------------------------------
# Figures (plotly). Labels are HTML-escaped: plotly renders label text as pseudo-HTML.


def _label(text: Any) -> str:
    return html.escape(str(text))


def _condition_colour(condition: str, index: int) -> str:
    return CONDITION_COLOURS.get(condition, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


def _layout(fig: Any, title: str, height: int = 320) -> Any:
    fig.update_layout(
        title={"text": _label(title), "x": 0.012, "xanchor": "left", "font": {"size": 14}},
        template="plotly_white", height=height, margin={"l": 60, "r": 20, "t": 48, "b": 48},
        font={"family": "Helvetica, Arial, sans-serif", "size": 12, "color": "#1f2937"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def report_figures(record: RunRecord) -> dict[str, Any]:
    """Every chart of the report by a stable file-safe name (``feature-1``, ``prediction-2-effects``...)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figures: dict[str, Any] = {}
    for f_index, stats in enumerate(feature_stats(record), start=1):
        rows = stats.rows
        keys = list(dict.fromkeys(k for row in rows for k in row.estimates))[:3]
        if keys:
            fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[_label(k.replace("_", " ")) for k in keys])
            for col, key in enumerate(keys, start=1):
                shown = [r for r in rows if key in r.estimates and _finite(r.estimates[key].value)]
                fig.add_trace(go.Scatter(
                    x=[_label(r.condition) for r in shown], y=[r.estimates[key].value for r in shown],
                    error_y={"type": "data", "symmetric": False,
                             "array": [r.estimates[key].high - r.estimates[key].value for r in shown],
                             "arrayminus": [r.estimates[key].value - r.estimates[key].low for r in shown]},
                    mode="markers", showlegend=False, name=_label(key),
                    marker={"size": 11, "color": [_condition_colour(r.condition, i) for i, r in enumerate(shown)]},
                    hovertext=[f"n={r.estimates[key].n}" for r in shown],
                ), row=1, col=col)
            _layout(fig, f"{stats.label}: per condition, 95% intervals", height=300)
            figures[f"feature-{f_index}"] = fig
        with_values = [r for r in rows if r.values]
        with_hist = [r for r in rows if r.histogram]
        if with_values:
            fig = go.Figure()
            for i, row in enumerate(with_values):
                colour = _condition_colour(row.condition, i)
                fig.add_trace(go.Box(
                    y=row.values, name=_label(f"{row.condition} (n={len(row.values or [])})"), boxpoints="all",
                    jitter=0.45, pointpos=0, marker={"color": colour, "size": 5, "opacity": 0.7},
                    line={"color": colour}, fillcolor="rgba(0,0,0,0)", showlegend=False,
                ))
            fig.update_yaxes(title_text="activation")
            _layout(fig, f"{stats.label}: every item's activation, per condition", height=320)
            figures[f"feature-{f_index}-distribution"] = fig
        elif with_hist:
            fig = go.Figure()
            for i, row in enumerate(with_hist):
                edges, counts = row.histogram  # type: ignore[misc]
                total = sum(counts) or 1.0
                fig.add_trace(go.Scatter(
                    x=edges, y=[c / total for c in counts] + [counts[-1] / total], mode="lines",
                    line={"shape": "hv", "width": 2, "color": _condition_colour(row.condition, i)},
                    name=_label(f"{row.condition} (n={int(total)})"),
                ))
            fig.update_xaxes(title_text="activation")
            fig.update_yaxes(title_text="share of items")
            _layout(fig, f"{stats.label}: distribution of activations", height=300)
            figures[f"feature-{f_index}-distribution"] = fig

    for p_index, prediction in enumerate(record.predictions, start=1):
        entries = [("target: " + prediction.name, prediction.measured, "#111827")]
        entries += [(f"control: {c.name}", c.effect, "#9ca3af") for c in prediction.controls]
        entries = [e for e in entries if _finite(e[1].value)]
        if entries:
            fig = go.Figure()
            labels = [_label(_wrap(name, 46)) for name, _, _ in entries]
            fig.add_trace(go.Scatter(
                y=labels, x=[e.value for _, e, _ in entries], mode="markers", showlegend=False,
                error_x={"type": "data", "symmetric": False, "array": [e.high - e.value for _, e, _ in entries],
                         "arrayminus": [e.value - e.low for _, e, _ in entries]},
                marker={"size": 11, "color": [c for _, _, c in entries]},
                hovertext=[f"n={e.n}" for _, e, _ in entries],
            ))
            thresholds = [-prediction.threshold, prediction.threshold] if prediction.comparison == "abs<" \
                else [prediction.threshold]
            for t in thresholds:
                fig.add_vline(x=t, line={"dash": "dash", "color": OUTCOME_COLOURS[prediction.outcome]},
                              annotation_text=_label(f"threshold {_num(t)}"), annotation_position="top")
            fig.update_yaxes(autorange="reversed")
            fig.update_xaxes(title_text=_label(prediction.metric))
            _layout(fig, f"{prediction.name}: effect vs controls (95% intervals)",
                    height=150 + 45 * len(entries))
            figures[f"prediction-{p_index}-effects"] = fig
        for c_index, curve in enumerate(curves(prediction.details), start=1):
            fig = go.Figure()
            for s_index, (name, ys, low, high) in enumerate(curve.series):
                colour = FALLBACK_COLOURS[s_index % len(FALLBACK_COLOURS)]
                if low and high:
                    fig.add_trace(go.Scatter(x=curve.x + curve.x[::-1], y=high + low[::-1], fill="toself",
                                             line={"width": 0}, fillcolor=colour, opacity=0.2,
                                             showlegend=False, hoverinfo="skip"))
                fig.add_trace(go.Scatter(x=curve.x, y=ys, mode="lines+markers",
                                         name=_label(_series_label(name, prediction.metric)),
                                         line={"color": colour}))
            names = [_series_label(name, prediction.metric) for name, *_ in curve.series]
            if len(curve.series) == 1:
                fig.update_layout(showlegend=False)
                if _is_judged_series(curve.series[0][0]):  # on the threshold's scale: show it
                    thresholds = [-prediction.threshold, prediction.threshold] if prediction.comparison == "abs<" \
                        else [prediction.threshold]
                    for t in thresholds:
                        fig.add_hline(y=t, line={"dash": "dash", "color": OUTCOME_COLOURS[prediction.outcome]},
                                      annotation_text=_label(f"threshold {_num(t)}"),
                                      annotation_position="top left")
            judged = prediction.details.get("judged_strength")
            if _finite(judged) and judged in curve.x and len(curve.x) > 1:
                fig.add_vline(x=judged, line={"dash": "dot", "color": "#6b7280"},
                              annotation_text="judged here", annotation_position="bottom right")
            fig.update_xaxes(title_text=_label(curve.x_name))
            fig.update_yaxes(title_text=_label(names[0] if len(names) == 1 else prediction.metric))
            _layout(fig, f"{prediction.name}: {', '.join(names)} over {curve.x_name}", height=300)
            figures[f"prediction-{p_index}-curve-{c_index}"] = fig
    return figures


def _series_label(name: str, metric: str) -> str:
    """A series called ``curve`` is the prediction's metric over the x values; ``target`` is the
    target edit's effect (what ``workbench.hypotheses.runner`` measures per strength)."""
    return {"curve": metric, "target": "effect of the target edit"}.get(name, name)


def _is_judged_series(name: str) -> bool:
    """Series on the scale of the prediction's threshold."""
    return name in ("curve", "target")


def _wrap(text: str, width: int) -> str:
    """Shorten a long axis label (the full name is in the controls table)."""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def export_figures(record: RunRecord, folder: Path) -> tuple[dict[str, str], str | None]:
    """Write the report's figures as PNG files into ``folder`` (each atomically).

    Returns ``({figure name: file name}, None)``, or ``({}, reason)`` when PNG export cannot
    run here (kaleido or a Chrome/Chromium missing); the Markdown report then keeps its tables.
    """
    figures = report_figures(record)
    if not figures:
        return {}, None
    try:
        images = _render_pngs(figures)
    # Broad on purpose: kaleido missing, no browser, a browser that crashed or timed out all
    # mean the same here (no PNGs), and the report must still be written with its tables.
    except Exception as error:  # noqa: BLE001
        return {}, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip(": ")
    written: dict[str, str] = {}
    for name, data in images.items():
        write_bytes_atomically(folder / f"{name}.png", data)
        written[name] = f"{name}.png"
    return written, None


def _render_pngs(figures: Mapping[str, Any]) -> dict[str, bytes]:
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


# --------------------------------------------------------------------------------------------
# HTML

_CSS = """
:root { --ink: #1f2937; --muted: #6b7280; --rule: #e5e7eb; --panel: #f9fafb; }
* { box-sizing: border-box; }
body { margin: 0; background: #f3f4f6; color: var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1000px; margin: 24px auto; background: #fff; padding: 32px 44px 48px;
  border: 1px solid var(--rule); border-radius: 8px; }
h1 { font-size: 1.55em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 2px solid var(--rule); }
h3 { font-size: 1.05em; margin: 24px 0 8px; }
h4 { font-size: 0.95em; margin: 16px 0 6px; color: #374151; }
p { margin: 6px 0 10px; }
.subtitle { color: var(--muted); font-size: 0.9em; margin-bottom: 20px; }
.verdict { border-left: 8px solid; border-radius: 6px; padding: 14px 18px; margin: 16px 0; background: var(--panel); }
.verdict .label { font-size: 0.8em; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted); }
.verdict .word { font-size: 1.7em; font-weight: 700; text-transform: uppercase; letter-spacing: 0.03em; }
.verdict .reason { margin-top: 4px; }
blockquote.claim { margin: 8px 0 16px; padding: 10px 16px; border-left: 4px solid #94a3b8; background: #f8fafc;
  font-size: 1.08em; white-space: pre-wrap; }
.chip { display: inline-block; padding: 1px 9px; border-radius: 999px; color: #fff; font-size: 0.8em;
  font-weight: 600; white-space: nowrap; }
.kind { display: inline-block; padding: 0 7px; border: 1px solid var(--rule); border-radius: 4px; font-size: 0.78em;
  color: var(--muted); margin-left: 6px; vertical-align: middle; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 14px; font-size: 0.88em; }
th, td { text-align: left; vertical-align: top; padding: 5px 9px; border-bottom: 1px solid var(--rule); }
.table-wrap { overflow-x: auto; }
th { background: var(--panel); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fcfcfd; }
td.num { font-variant-numeric: tabular-nums; }
table.kv th { width: 28%; }
table.nested { margin: 0; font-size: 1em; }
table.compact { width: auto; min-width: 45%; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em; }
pre.command { background: #111827; color: #f9fafb; padding: 10px 14px; border-radius: 6px; white-space: pre-wrap;
  word-break: break-all; }
.prediction { border: 1px solid var(--rule); border-radius: 8px; padding: 4px 18px 10px; margin: 18px 0; }
.prediction h3 { margin-top: 14px; }
.measure { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; }
.measure dt { color: var(--muted); }
.measure dd { margin: 0; }
.figure { margin: 8px 0 14px; break-inside: avoid; page-break-inside: avoid; }
.wb-conversation { border: 1px solid var(--rule); border-radius: 6px; padding: 8px 12px; margin: 8px 0 16px;
  background: #fff; }
.limitations li { margin: 4px 0; }
.muted { color: var(--muted); }
.agree { color: #047857; font-weight: 600; }
.disagree { color: #b91c1c; font-weight: 600; }
nav.toc { font-size: 0.88em; color: var(--muted); margin: 8px 0 0; }
nav.toc a { color: #2563eb; text-decoration: none; margin-right: 12px; }
footer { margin-top: 36px; font-size: 0.8em; color: var(--muted); }
@media print {
  @page { margin: 14mm; }
  body { background: #fff; font-size: 11pt; }
  main { max-width: none; margin: 0; padding: 0; border: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  nav.toc, .modebar-container { display: none !important; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h3, h4 { break-after: avoid; }
  .prediction, .verdict, tr, .wb-conversation > div { break-inside: avoid; page-break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _chip(word: str, colours: Mapping[str, str]) -> str:
    return f'<span class="chip" style="background:{colours.get(word, "#4b5563")}">{_e(word)}</span>'


def _html_value(value: Any, depth: int = 0) -> str:
    """Any JSON value as HTML: lists of records as nested tables, dicts as key/value tables."""
    if isinstance(value, Mapping) and value and not _is_estimate_like(value) and depth < 3:
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_html_value(v, depth + 1)}</td></tr>" for k, v in value.items())
        return f'<table class="nested kv">{rows}</table>'
    if (isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value) and depth < 3):
        return _html_table_of_dicts(value[:MAX_ROWS], depth + 1) + (
            f'<p class="muted">{len(value) - MAX_ROWS} more rows in the JSON record</p>' if len(value) > MAX_ROWS else "")
    if isinstance(value, str):
        return _e_breakable(value)
    return _e(_scalar_text(value))


def _e_breakable(text: str) -> str:
    """Escaped text that may wrap after ``_``, ``.`` and ``/`` (identifiers in narrow columns)."""
    return re.sub(r"([_./])", r"\1<wbr>", _e(text))


def _html_table_of_dicts(rows: list[Mapping[str, Any]], depth: int = 0) -> str:
    """Columns = keys in order of first appearance; ``k`` with ``k_low``/``k_high`` shown as one interval."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    merged = {k for k in columns if any(_estimate_from(row, k) for row in rows)}
    columns = [k for k in columns
               if not (k.endswith(("_low", "_high")) and k.rsplit("_", 1)[0] in merged)]
    head = "".join(f'<th title="{_e(k)}">{_e(k.replace("_", " "))}</th>' for k in columns)
    body = []
    for row in rows:
        cells = []
        for k in columns:
            estimate = _estimate_from(row, k) if k in merged else None
            if estimate is not None:
                text = f"{_num(estimate.value)} [{_num(estimate.low)}, {_num(estimate.high)}]"
                cells.append(f'<td class="num">{_e(text)}</td>')
            elif k in row:
                value = row[k]
                cls = ' class="num"' if _finite(value) else ""
                cells.append(f"<td{cls}>{_html_value(value, depth)}</td>")
            else:
                cells.append("<td></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = f"<table class=\"{'nested' if depth else ''}\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return table if depth else f'<div class="table-wrap">{table}</div>'


def _html_kv(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_html_value(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _html_figure(figures: Mapping[str, Any], name: str) -> str:
    import plotly.io as pio

    fig = figures.get(name)
    if fig is None:
        return ""
    div = pio.to_html(fig, full_html=False, include_plotlyjs=False,
                      config={"displaylogo": False, "responsive": True,
                              "modeBarButtonsToRemove": ["sendDataToCloud"]})
    return f'<div class="figure">{div}</div>'


def _example_html(example: ExampleRecord) -> str:
    from workbench.features.evidence import FeatureExample
    from workbench.report.conversation import conversation_html

    data = example.model_dump()
    data["kind"] = "scenario" if example.prompt_length < len(example.tokens) else "text"
    return conversation_html(FeatureExample(**data))


def render_html(record: RunRecord) -> str:
    """The self-contained HTML report (plotly.js inline once, no external URL)."""
    import plotly.offline

    figures = report_figures(record)
    hypothesis = record.hypothesis
    title = str(hypothesis.get("name") or (Path(record.hypothesis_path).stem if record.hypothesis_path else "hypothesis"))
    claim = hypothesis.get("claim") or hypothesis.get("description") or "(the hypothesis states no claim)"
    parts: list[str] = []
    add = parts.append

    add(f"<h1>Hypothesis report: {_e(title)}</h1>")
    add(f'<div class="subtitle">Run finished {_e(record.created)} · record version {record.version}'
        f'{" · " + _e(record.hypothesis_path) if record.hypothesis_path else ""}</div>')
    add('<nav class="toc">' + "".join(f'<a href="#{sid}">{i}. {_e(name)}</a>'
                                      for i, (sid, name) in enumerate(SECTIONS, start=1)) + "</nav>")

    # 1. Claim and verdict
    colour = VERDICT_COLOURS.get(record.verdict, "#4b5563")
    add(f'<section id="claim"><h2>1. {SECTIONS[0][1]}</h2>')
    add(f'<blockquote class="claim">{_e(claim)}</blockquote>')
    add(f'<div class="verdict" id="verdict" style="border-color:{colour}"><div class="label">Verdict</div>'
        f'<div class="word" style="color:{colour}">{_e(record.verdict)}</div>'
        f'<div class="reason">{_e(record.verdict_reason)}</div></div>')
    if record.predictions:
        rows = "".join(
            f'<tr><td><a href="#prediction-{i}">{_e(p.name)}</a><span class="kind">{_e(p.kind)}</span></td>'
            f'<td><code>{_e(_prediction_rule(p))}</code></td><td class="num">{_e(_estimate(p.measured))}</td>'
            f"<td>{_chip(p.outcome, OUTCOME_COLOURS)}</td></tr>"
            for i, p in enumerate(record.predictions, start=1))
        add("<table><thead><tr><th>Prediction</th><th>Predicted</th><th>Measured (95% interval)</th>"
            f"<th>Outcome</th></tr></thead><tbody>{rows}</tbody></table>")
    else:
        add('<p class="muted">The hypothesis makes no predictions.</p>')
    add("</section>")

    # 2. Setup
    facts = setup_facts(record)
    add(f'<section id="setup"><h2>2. {SECTIONS[1][1]}</h2>')
    add(_html_kv(facts.rows))
    add("<h4>Command to rerun</h4>")
    add(f'<pre class="command">{_e(record.command)}</pre>')
    if facts.packages:
        add("<h4>Package versions</h4>")
        add("<table class=\"compact\"><thead><tr><th>Package</th><th>Version</th></tr></thead><tbody>"
            + "".join(f"<tr><td>{_e(k)}</td><td class=\"num\">{_e(v)}</td></tr>" for k, v in facts.packages)
            + "</tbody></table>")
    if facts.all_setup:
        add("<details><summary>All setup fields</summary>" + _html_kv(facts.all_setup) + "</details>")
    add("</section>")

    # 3. Evidence
    add(f'<section id="evidence"><h2>3. {SECTIONS[2][1]}</h2>')
    add("<h3>Examples in full context</h3>")
    if record.examples:
        add('<p class="muted">Each example is the whole conversation. Tokens are shaded by the feature\'s '
            "activation (hover for the value); the maximum is outlined; <code>│answer→</code> marks where the "
            "response starts.</p>")
        for example in record.examples:
            add(_example_html(example))
    else:
        add('<p class="muted">The record holds no examples.</p>')
    stats = feature_stats(record)
    add("<h3>Activation per condition</h3>")
    if stats:
        for f_index, feature in enumerate(stats, start=1):
            add(f"<h4>{_e(feature.label)}</h4>")
            add(_html_figure(figures, f"feature-{f_index}"))
            add(_html_figure(figures, f"feature-{f_index}-distribution"))
            add(_feature_table_html(feature))
    else:
        add('<p class="muted">The record holds no per-condition feature statistics.</p>')
    contrasts = [p for p in record.predictions if p.kind in ("contrast", "probe")]
    add("<h3>Contrast statistics</h3>")
    if contrasts:
        rows = "".join(
            f"<tr><td>{_e(p.name)}</td><td>{_e(p.description)}</td><td>{_e(p.metric)}</td>"
            f'<td class="num">{_e(_estimate(p.measured))}</td><td>{_e(p.measured.method)}</td></tr>'
            for p in contrasts)
        add("<table><thead><tr><th>Prediction</th><th>What</th><th>Metric</th><th>Value [95% interval] n</th>"
            f"<th>Interval</th></tr></thead><tbody>{rows}</tbody></table>")
    else:
        add('<p class="muted">No contrast predictions in this hypothesis.</p>')
    add("<h3>Probe baseline</h3>")
    if record.probe:
        add('<p class="muted">A supervised probe on the same site: how well the site separates the conditions '
            "at all, for comparison with the features.</p>")
        add(_html_table_of_dicts([r for r in record.probe if isinstance(r, Mapping)]))
    else:
        add('<p class="muted">No probe baseline in this record.</p>')
    add("</section>")

    # 4. Predictions and causal tests
    add(f'<section id="predictions"><h2>4. {SECTIONS[3][1]}</h2>')
    if not record.predictions:
        add('<p class="muted">The hypothesis makes no predictions.</p>')
    for index, prediction in enumerate(record.predictions, start=1):
        add(_prediction_html(prediction, index, figures))
    add("</section>")

    # 5. Responses
    add(f'<section id="responses"><h2>5. {SECTIONS[4][1]}</h2>')
    if record.responses:
        add(_responses_html(record))
    else:
        add('<p class="muted">This run did not judge individual responses.</p>')
    add("</section>")

    # 6. Limitations
    add(f'<section id="limitations"><h2>6. {SECTIONS[5][1]}</h2>')
    found = limitations(record)
    if found:
        add('<ul class="limitations">' + "".join(f"<li>{_e(item)}</li>" for item in found) + "</ul>")
    else:
        add(f'<p>None found by the automatic checks (every n at least {SMALL_N}, rate and AUROC intervals '
            f"narrower than {WIDE_INTERVAL}, every control separated from the target, no unclear outcome).</p>")
    add("</section>")
    add(f"<footer>Generated by the intent workbench from the run record (version {record.version}). "
        "Rerun with the command in the setup section; the JSON report holds every number.</footer>")

    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}: {_e(record.verdict)}</title><style>{_CSS}</style>"
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        f"</head><body><main>{''.join(parts)}</main></body></html>\n"
    )


def _feature_table_html(feature: FeatureStats) -> str:
    estimate_keys = list(dict.fromkeys(k for row in feature.rows for k in row.estimates))
    scalar_keys = list(dict.fromkeys(k for row in feature.rows for k in row.scalars))
    head = "".join(f"<th>{_e(k)}</th>" for k in ["condition", *estimate_keys, *scalar_keys])
    body = []
    for row in feature.rows:
        cells = [f"<td>{_e(row.condition)}</td>"]
        cells += [f'<td class="num">{_e(_estimate(row.estimates[k]) if k in row.estimates else "")}</td>'
                  for k in estimate_keys]
        cells += [f'<td class="num">{_e(_scalar_text(row.scalars[k]) if k in row.scalars else "")}</td>'
                  for k in scalar_keys]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _prediction_html(p: PredictionResult, index: int, figures: Mapping[str, Any]) -> str:
    out = [f'<div class="prediction" id="prediction-{index}">',
           f"<h3>{index}. {_e(p.name)}<span class=\"kind\">{_e(p.kind)}</span> {_chip(p.outcome, OUTCOME_COLOURS)}</h3>",
           f"<p>{_e(p.description)}</p>",
           '<dl class="measure">',
           f"<dt>Prediction</dt><dd><code>{_e(_prediction_rule(p))}</code></dd>",
           (f"<dt>Measured</dt><dd>{_e(_estimate(p.measured))}"
            f'{" (" + _e(p.measured.method) + " 95% interval)" if p.measured.method else ""}</dd>'),
           f"<dt>Outcome</dt><dd>{_chip(p.outcome, OUTCOME_COLOURS)} {_e(_outcome_text(p))}</dd>",
           "</dl>"]
    out.append(_html_figure(figures, f"prediction-{index}-effects"))
    if p.controls:
        rows = []
        for control in p.controls:
            diff = control.target_minus_control
            verdict, text = separation(p, diff)
            mark = f'<span class="{"agree" if verdict == "separated" else "disagree"}">{_e(text)}</span>'
            rows.append(f"<tr><td>{_e(control.name)}</td><td class=\"num\">{_e(_estimate(control.effect))}</td>"
                        f"<td class=\"num\">{_e(_estimate(diff))}</td><td>{mark}</td></tr>")
        out.append("<h4>Controls</h4><table><thead><tr><th>Control</th><th>Control effect</th>"
                   "<th>Target minus control</th><th>Separated from target?</th></tr></thead>"
                   f"<tbody>{''.join(rows)}</tbody></table>")
    else:
        out.append('<p class="muted">No controls were run for this prediction.</p>')
    found = curves(p.details)
    for c_index in range(1, len(found) + 1):
        out.append(_html_figure(figures, f"prediction-{index}-curve-{c_index}"))
    shown = _curve_keys(found)
    rest = [(k, v) for k, v in p.details.items() if k not in shown]
    if found:
        for curve in found:
            out.append(_curve_table_html(curve, p.metric))
    if rest:
        out.append("<h4>Details</h4>" + _html_kv(rest))
    out.append("</div>")
    return "".join(out)


def _curve_table_html(curve: Curve, metric: str) -> str:
    head = f"<th>{_e(curve.x_name)}</th>" + "".join(f"<th>{_e(_series_label(name, metric))}</th>"
                                                    for name, *_ in curve.series)
    body = []
    for i, x in enumerate(curve.x):
        cells = [f'<td class="num">{_e(_num(x))}</td>']
        for _, ys, low, high in curve.series:
            text = _num(ys[i]) + (f" [{_num(low[i])}, {_num(high[i])}]" if low and high else "")
            cells.append(f'<td class="num">{_e(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f'<p class="muted">{_e(k)}: {_e(_scalar_text(v))}</p>' for k, v in curve.notes.items())
    return f"<table class=\"compact\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"


def separation(p: PredictionResult, diff: Estimate) -> tuple[str, str]:
    """Whether the target effect is set apart from a control's: ``(state, words)`` with state
    ``separated``, ``overlaps``, ``wrong way`` (the control moves the metric more in the
    predicted direction) or ``unknown``."""
    if not (_finite(diff.low) and _finite(diff.high)) or diff.n == 0:
        return "unknown", "not measured"
    if diff.low <= 0 <= diff.high:
        return "overlaps", "no: interval includes 0"
    above = diff.low > 0
    if p.comparison == ">=" and not above:
        return "wrong way", "no: the control's effect is larger"
    if p.comparison == "<=" and above:
        return "wrong way", "no: the control's effect is larger"
    return "separated", f"yes: target {'above' if above else 'below'} control"


def _outcome_text(p: PredictionResult) -> str:
    m = p.measured
    interval = f"[{_num(m.low)}, {_num(m.high)}]"
    if p.outcome == "holds":
        return f"the whole interval {interval} is on the predicted side of {_num(p.threshold)}."
    if p.outcome == "contradicted":
        return f"the whole interval {interval} is on the other side of {_num(p.threshold)}."
    return f"the interval {interval} overlaps the threshold {_num(p.threshold)}."


def _responses_html(record: RunRecord) -> str:
    rows = []
    for r in record.responses:
        expected = EXPECTED_VERDICT.get(r.condition)
        if expected is None:
            agree = '<span class="muted">n/a</span>'
        elif r.verdict == expected:
            agree = '<span class="agree">yes</span>'
        else:
            agree = f'<span class="disagree">no (expected {_e(expected)})</span>'
        evidence = "; ".join(f"{k}={_scalar_text(v)}" for k, v in _flatten(r.evidence))
        rows.append(f"<tr><td><code>{_e(r.scenario_id)}</code></td><td>{_e(r.condition)}</td>"
                    f"<td>{_e(r.response)}</td><td><strong>{_e(r.verdict)}</strong></td><td>{agree}</td>"
                    f'<td class="muted">{_e(evidence)}</td></tr>')
    judged = [r for r in record.responses if r.condition in EXPECTED_VERDICT]
    agreeing = sum(r.verdict == EXPECTED_VERDICT[r.condition] for r in judged)
    summary = (f"<p>The verdict matches the scenario's condition (ground truth by construction) on "
               f"{agreeing} of {len(judged)} responses.</p>" if judged else "")
    return (summary + "<table><thead><tr><th>Scenario</th><th>Condition</th><th>Response</th><th>Verdict</th>"
            "<th>Matches condition?</th><th>Evidence</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


# --------------------------------------------------------------------------------------------
# Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def md_escape(text: Any) -> str:
    """Text safe inside Markdown (and a table cell): no HTML, code spans, emphasis or links."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\n", "<br>")


def _md_table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(md_escape(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _md_figure(figure_paths: Mapping[str, str] | None, name: str, alt: str) -> str:
    if not figure_paths or name not in figure_paths:
        return ""
    path = figure_paths[name]
    return f"![{md_escape(alt)}]({path.replace(' ', '%20').replace('(', '%28').replace(')', '%29')})\n"


def _md_conversation(example: ExampleRecord) -> str:
    """Markdown has no colour: tokens at >= half the maximum are bold, the maximum also gets
    its value; a table lists the strongest tokens."""
    scale = max(example.values, default=0.0)
    lines = [f"**{md_escape(example.item_id)}**"
             + (f" · {md_escape(example.condition)}" if example.condition else "")
             + f" · max {_num(example.max_value)} at token {example.max_position}", ""]
    turns: list[tuple[str, list[str]]] = []
    for position, (token, role, value) in enumerate(zip(example.tokens, example.roles, example.values)):
        if not turns or turns[-1][0] != role:
            turns.append((role, []))
        text = md_escape(token)
        if position == example.prompt_length and position > 0:
            turns[-1][1].append(" │answer→ ")
        if scale > 0 and value >= 0.5 * scale and token.strip():
            stripped = text.lstrip(" ")
            lead = text[: len(text) - len(stripped)]
            text = f"{lead}**{stripped}**"
            if position == example.max_position:
                text += f" ⟨{_num(value)}⟩"
        turns[-1][1].append(text)
    for role, texts in turns:
        body = "".join(texts).replace("<br>", " ↵ ")
        lines.append(f"> **{md_escape(role.upper())}:** {body}")
        lines.append(">")
    if lines[-1] == ">":
        lines.pop()
    ranked = sorted(range(len(example.values)), key=lambda i: example.values[i], reverse=True)
    top = [i for i in ranked[:5] if example.values[i] > 0]
    if top:
        lines.append("")
        lines.append(_md_table(["position", "turn", "token", "activation"],
                               [(i, example.roles[i], repr(example.tokens[i]), _num(example.values[i])) for i in top]))
    return "\n".join(lines) + "\n"


def _quantiles(values: list[float]) -> list[float]:
    """min, 25%, median, 75%, max (linear interpolation)."""
    ordered = sorted(values)

    def at(q: float) -> float:
        position = q * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return [at(q) for q in (0.0, 0.25, 0.5, 0.75, 1.0)]


def _md_value(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return "; ".join(", ".join(f"{k}={_scalar_text(v)}" for k, v in row.items()) for row in value[:MAX_ROWS])
    if isinstance(value, Mapping) and not _is_estimate_like(value):
        return "; ".join(f"{k}={_scalar_text(v)}" for k, v in _flatten(value))
    return _scalar_text(value)


def _md_table_of_dicts(rows: list[Mapping[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    merged = {k for k in columns if any(_estimate_from(row, k) for row in rows)}
    columns = [k for k in columns if not (k.endswith(("_low", "_high")) and k.rsplit("_", 1)[0] in merged)]
    body = []
    for row in rows:
        cells = []
        for k in columns:
            estimate = _estimate_from(row, k) if k in merged else None
            if estimate is not None:
                cells.append(f"{_num(estimate.value)} [{_num(estimate.low)}, {_num(estimate.high)}]")
            else:
                cells.append(_md_value(row[k]) if k in row else "")
        body.append(cells)
    return _md_table(columns, body)


def render_markdown(
    record: RunRecord,
    *,
    figure_paths: Mapping[str, str] | None = None,
    figure_note: str | None = None,
) -> str:
    """The Markdown report; ``figure_paths`` maps figure names (``report_figures``) to relative
    PNG paths to link. The tables are always there."""
    hypothesis = record.hypothesis
    title = str(hypothesis.get("name") or (Path(record.hypothesis_path).stem if record.hypothesis_path else "hypothesis"))
    claim = hypothesis.get("claim") or hypothesis.get("description") or "(the hypothesis states no claim)"
    out: list[str] = []
    add = out.append
    add(f"# Hypothesis report: {md_escape(title)}\n")
    add(f"Run finished {md_escape(record.created)} · record version {record.version}\n")
    if figure_note:
        add(f"*Figures could not be exported as PNG here ({md_escape(figure_note)}); the tables carry the same "
            "numbers. Install kaleido and Chrome/Chromium for figures, or open the HTML report.*\n")

    add(f"## 1. {SECTIONS[0][1]}\n")
    add("> " + md_escape(claim).replace("<br>", "\n> ") + "\n")
    add(f"**Verdict: {md_escape(record.verdict.upper())}**: {md_escape(record.verdict_reason)}\n")
    if record.predictions:
        add(_md_table(["prediction", "kind", "predicted", "measured (95% interval)", "outcome"],
                      [(p.name, p.kind, _prediction_rule(p), _estimate(p.measured), p.outcome)
                       for p in record.predictions]))

    facts = setup_facts(record)
    add(f"## 2. {SECTIONS[1][1]}\n")
    add(_md_table(["", "value"], facts.rows))
    add("Command to rerun:\n")
    fence = "```"
    while fence in record.command:
        fence += "`"
    add(f"{fence}\n{record.command}\n{fence}\n")  # literal inside a fence: nothing is interpreted
    if facts.packages:
        add(_md_table(["package", "version"], facts.packages))

    add(f"## 3. {SECTIONS[2][1]}\n")
    add("### Examples in full context\n")
    if record.examples:
        add("Bold tokens activate the feature at half its maximum or more; the maximum carries its value; "
            "│answer→ marks the start of the response.\n")
        for example in record.examples:
            add(_md_conversation(example))
    else:
        add("The record holds no examples.\n")
    add("### Activation per condition\n")
    stats = feature_stats(record)
    for f_index, feature in enumerate(stats, start=1):
        add(f"#### {md_escape(feature.label)}\n")
        add(_md_figure(figure_paths, f"feature-{f_index}", f"{feature.label} per condition"))
        add(_md_figure(figure_paths, f"feature-{f_index}-distribution", f"{feature.label} distribution"))
        estimate_keys = list(dict.fromkeys(k for row in feature.rows for k in row.estimates))
        scalar_keys = list(dict.fromkeys(k for row in feature.rows for k in row.scalars))
        add(_md_table(["condition", *estimate_keys, *scalar_keys],
                      [[row.condition]
                       + [_estimate(row.estimates[k]) if k in row.estimates else "" for k in estimate_keys]
                       + [_scalar_text(row.scalars[k]) if k in row.scalars else "" for k in scalar_keys]
                       for row in feature.rows]))
        value_rows = [row for row in feature.rows if row.values]
        hist_rows = [row for row in feature.rows if row.histogram]
        has_figure = bool(figure_paths and f"feature-{f_index}-distribution" in figure_paths)
        if value_rows and not has_figure:
            add("Distribution over items:\n")
            add(_md_table(["condition", "n", "min", "25%", "median", "75%", "max"],
                          [[row.condition, len(row.values or []), *[_num(q) for q in _quantiles(row.values or [])]]
                           for row in value_rows]))
        elif hist_rows and not has_figure:
            edges = hist_rows[0].histogram[0]  # type: ignore[index]
            if all(row.histogram[0] == edges for row in hist_rows):  # type: ignore[index]
                add("Items per activation bin:\n")
                add(_md_table(["bin", *[row.condition for row in hist_rows]],
                              [[f"{_num(edges[i])}–{_num(edges[i + 1])}"]
                               + [_num(int(row.histogram[1][i])) for row in hist_rows]  # type: ignore[index]
                               for i in range(len(edges) - 1)]))
    if not stats:
        add("The record holds no per-condition feature statistics.\n")
    add("### Contrast statistics\n")
    contrasts = [p for p in record.predictions if p.kind in ("contrast", "probe")]
    if contrasts:
        add(_md_table(["prediction", "what", "metric", "value [95% interval] n", "interval"],
                      [(p.name, p.description, p.metric, _estimate(p.measured), p.measured.method) for p in contrasts]))
    else:
        add("No contrast predictions in this hypothesis.\n")
    add("### Probe baseline\n")
    if record.probe:
        add(_md_table_of_dicts([r for r in record.probe if isinstance(r, Mapping)]))
    else:
        add("No probe baseline in this record.\n")

    add(f"## 4. {SECTIONS[3][1]}\n")
    if not record.predictions:
        add("The hypothesis makes no predictions.\n")
    for index, p in enumerate(record.predictions, start=1):
        add(f"### {index}. {md_escape(p.name)} ({md_escape(p.kind)}): {md_escape(p.outcome)}\n")
        add(md_escape(p.description) + "\n")
        add(f"- Prediction: {md_escape(_prediction_rule(p))}\n"
            f"- Measured: {md_escape(_estimate(p.measured))}"
            f"{' (' + md_escape(p.measured.method) + ' 95% interval)' if p.measured.method else ''}\n"
            f"- Outcome: **{md_escape(p.outcome)}**: {md_escape(_outcome_text(p))}\n")
        add(_md_figure(figure_paths, f"prediction-{index}-effects", f"{p.name}: effect vs controls"))
        if p.controls:
            add(_md_table(["control", "control effect", "target minus control", "separated from target?"],
                          [(c.name, _estimate(c.effect), _estimate(c.target_minus_control),
                            separation(p, c.target_minus_control)[1]) for c in p.controls]))
        else:
            add("No controls were run for this prediction.\n")
        found = curves(p.details)
        for c_index, curve in enumerate(found, start=1):
            add(_md_figure(figure_paths, f"prediction-{index}-curve-{c_index}", f"{p.name}: curve"))
            add(_md_table([curve.x_name, *[_series_label(name, p.metric) for name, *_ in curve.series]],
                          [[_num(x)] + [_num(ys[i]) + (f" [{_num(low[i])}, {_num(high[i])}]" if low and high else "")
                                        for _, ys, low, high in curve.series]
                           for i, x in enumerate(curve.x)]))
            if curve.notes:
                add("; ".join(f"{md_escape(k)}: {md_escape(_scalar_text(v))}" for k, v in curve.notes.items()) + "\n")
        shown = _curve_keys(found)
        rest = [(k, v) for k, v in p.details.items() if k not in shown]
        if rest:
            add("Details:\n")
            add(_md_table(["key", "value"], [(k, _md_value(v)) for k, v in rest]))

    add(f"## 5. {SECTIONS[4][1]}\n")
    if record.responses:
        rows = []
        for r in record.responses:
            expected = EXPECTED_VERDICT.get(r.condition)
            agree = "n/a" if expected is None else "yes" if r.verdict == expected else f"no (expected {expected})"
            rows.append((r.scenario_id, r.condition, r.response, r.verdict, agree,
                         "; ".join(f"{k}={_scalar_text(v)}" for k, v in _flatten(r.evidence))))
        add(_md_table(["scenario", "condition", "response", "verdict", "matches condition?", "evidence"], rows))
    else:
        add("This run did not judge individual responses.\n")

    add(f"## 6. {SECTIONS[5][1]}\n")
    found_limits = limitations(record)
    if found_limits:
        add("\n".join(f"- {md_escape(item)}" for item in found_limits) + "\n")
    else:
        add(f"None found by the automatic checks (every n at least {SMALL_N}, rate and AUROC intervals narrower "
            f"than {WIDE_INTERVAL}, every control separated from the target, no unclear outcome).\n")
    return "\n".join(part for part in out if part)
