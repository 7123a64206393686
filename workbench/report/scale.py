"""The report of a scale study: a ``ReportDocument`` built from a ``ScaleRecord`` (the same blocks, HTML and
Markdown renderers as a hypothesis report), and the files ``scale`` writes (record, HTML, Markdown with PNGs).

Every figure puts lie and parrot side by side, against parameter count (log axis) and against the capability
index (honest accuracy), each point with its interval and n; every causal effect sits beside its control, and
an effect whose interval over its control includes zero reads ``inconclusive``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from workbench.core.io import write_text_atomically
from workbench.core.stats import Estimate
from workbench.report import figures as charts
from workbench.report.document import (
    Chip, Code, Figure, Heading, KeyValues, Limitations, Paragraph, ReportDocument, Section, Table, estimate_text,
    number,
)
from workbench.report.files import export_figures
from workbench.report.html import to_html
from workbench.report.markdown import to_markdown
from workbench.scale.records import CONTRAST_LABELS, CausalTest, ModelStudy, ScaleRecord, write_scale_record

CALL_COLOURS = {"beyond control": "#047857", "against": "#b91c1c", "inconclusive": "#b45309"}

#: The files ``write_scale_outputs`` writes into the study's folder.
RECORD_NAME, HTML_NAME, MARKDOWN_NAME = "scale.json", "scale.html", "scale.md"


def _axes(record: ScaleRecord) -> list[tuple[str, str, bool, Callable[[ModelStudy], float]]]:
    """(file-safe name, axis title, log axis, x of a model) of the two x axes every comparison is drawn on."""
    return [("params", "parameters", True, lambda m: float(m.n_params)),
            ("capability", "capability index (honest accuracy)", False,
             lambda m: m.behaviour.honest_accuracy.value)]


def causal_call(test: CausalTest | None) -> str:
    """``beyond control`` when the gain's interval is above zero, ``against`` when below, else ``inconclusive``."""
    if test is None or not math.isfinite(test.gain.value) or not test.gain.has_interval:
        return "inconclusive"
    if test.gain.low > 0:
        return "beyond control"
    if test.gain.high < 0:
        return "against"
    return "inconclusive"


def _chip(call: str) -> Chip:
    return Chip(call, CALL_COLOURS[call])


def _text(e: Estimate | None) -> str:
    return estimate_text(e) if e is not None else "n/a (too few)"


def _comparison_figures(record: ScaleRecord, name: str, title: str, y_title: str,
                        lie: Sequence[tuple[str, Callable[[ModelStudy], Estimate | None]]],
                        parrot: Sequence[tuple[str, Callable[[ModelStudy], Estimate | None]]],
                        fallback: Table, **options) -> list[Figure]:
    """The same comparison against parameters and against capability (lie | parrot panels)."""
    groups = list(dict.fromkeys(m.group for m in record.models))
    dashes = ("solid", "dash", "dot", "dashdot")
    styles: dict[str, tuple[str, str]] = {}  # series name -> (its metric: one colour, its group: one dash)
    for series_name, _ in [*lie, *parrot]:
        for index, group in enumerate(groups):
            styles[series_name if len(groups) == 1 else f"{series_name} ({group})"] = (
                series_name, dashes[index % len(dashes)])
    out = []
    for axis, x_title, log_x, x_of in _axes(record):
        def draw(x_of=x_of, x_title=x_title, log_x=log_x, axis=axis):
            panels = []
            for panel, chosen in (("lie", lie), ("parrot", parrot)):
                series = []
                for series_name, get in chosen:
                    for group in groups:
                        members = sorted((m for m in record.models if m.group == group), key=x_of)
                        series_label = series_name if len(groups) == 1 else f"{series_name} ({group})"
                        series.append((series_label, [x_of(m) for m in members], [get(m) for m in members],
                                       [m.label for m in members]))
                panels.append((panel, series))
            return charts.panels_figure(f"{title} against {x_title}", panels, x_title=x_title, y_title=y_title,
                                        log_x=log_x, style=lambda name: styles[name], **options)
        out.append(Figure(name=f"{name}-{axis}", title=f"{title} against {x_title}", draw=draw, fallback=(fallback,)))
    return out


def _models_section(record: ScaleRecord) -> tuple:
    rows = tuple((m.label, m.group, f"{m.n_params:,}", str(m.n_layers), str(m.d_model),
                  {False: "here", True: "NDIF", "local": "here, as NDIF would (simulated)"}.get(m.remote, str(m.remote)),
                  f"{m.seconds:.1f}") for m in record.models)
    return (
        KeyValues(rows=(("Scenario file", record.scenario_file), ("Scenarios", str(record.n_scenarios)),
                        ("Facts", str(record.n_facts)), ("Depths probed", ", ".join(number(d) for d in record.depths)),
                        ("Seed", str(record.seed)), ("Finished", record.created),
                        ("Code", (record.environment.git_commit or "unknown")[:12]
                         + (" (uncommitted changes)" if record.environment.git_dirty else "")))),
        Table(columns=("model", "group", "parameters", "layers", "width", "ran", "seconds"), rows=rows,
              numeric=(False, False, True, True, True, False, True)),
        Paragraph("The same scenarios, judge and measurements on every model. Depth is a layer's index over the last "
                  "layer's, so models of different depth compare. The figures join the models of a group across "
                  "sizes (base models, organisms).", tone="muted"),
        Code(record.command),
    )


def _behaviour_section(record: ScaleRecord) -> tuple:
    table = Table(columns=("model", "honest accuracy", "knowledge (facts)", "lie rate", "lie rate, known facts",
                           "lied / resisted", "parrot rate"),
                  rows=tuple((m.label, _text(m.behaviour.honest_accuracy), _text(m.behaviour.knowledge),
                              _text(m.behaviour.lie_rate), _text(m.behaviour.known_lie_rate),
                              f"{m.behaviour.n_lied} / {m.behaviour.n_resisted}", _text(m.behaviour.parrot_rate))
                             for m in record.models))
    figures = _comparison_figures(
        record, "behaviour", "Behaviour", "rate",
        lie=[("lie rate", lambda m: m.behaviour.lie_rate), ("lie rate, known facts", lambda m: m.behaviour.known_lie_rate),
             ("honest accuracy", lambda m: m.behaviour.honest_accuracy)],
        parrot=[("parrot rate", lambda m: m.behaviour.parrot_rate),
                ("follows a changed context", lambda m: m.copy_test.follow_rate if m.copy_test else None),
                ("honest accuracy", lambda m: m.behaviour.honest_accuracy)],
        fallback=table, y_range=(-0.02, 1.02))
    return (Paragraph("Greedy answers judged by the workbench's answer judge; Wilson 95% intervals. A fact is known when "
                      "every honest prompt about it is answered truly; lied / resisted counts the lie prompts about "
                      "known facts answered falsely / truly (the lie+false and lie+truth conditions)."),
            table, *figures)


def _probe_section(record: ScaleRecord) -> tuple:
    contrasts = list(CONTRAST_LABELS)
    curve_table = Table(columns=("model", "layer", "depth", *[CONTRAST_LABELS[c] for c in contrasts]),
                        rows=tuple((m.label, str(p.layer), number(p.depth), *[_text(p.auroc.get(c)) for c in contrasts])
                                   for m in record.models for p in m.probes))

    def depth_curves():
        panels = [(CONTRAST_LABELS[c], [(m.label, [p.depth for p in m.probes], [p.auroc.get(c) for p in m.probes],
                                         [f"{m.label}, layer {p.layer}" for p in m.probes]) for m in record.models])
                  for c in contrasts]
        return charts.panels_figure("Probe AUROC across depth (held out)", panels, x_title="depth (fraction)",
                                    y_title="AUROC", y_range=(0.0, 1.02), reference=0.5, height=360)

    best_table = Table(columns=("model", *[f"best layer: {CONTRAST_LABELS[c]}" for c in contrasts]),
                       rows=tuple((m.label, *[f"{m.best_layer.get(c)}: {_text(m.best_auroc(c))}"
                                              if m.best_layer.get(c) is not None else "n/a (too few)"
                                              for c in contrasts]) for m in record.models))
    figures = _comparison_figures(
        record, "probes", "Best-layer probe AUROC", "AUROC",
        lie=[("lie vs honest", lambda m: m.best_auroc("lie_vs_honest")),
             ("lying vs resisting", lambda m: m.best_auroc("lying_vs_resisting"))],
        parrot=[("lie vs parrot", lambda m: m.best_auroc("lie_vs_parrot"))],
        fallback=best_table, y_range=(0.0, 1.02), reference=0.5)
    return (Paragraph("A difference-of-means probe on the residual stream at the last prompt token, trained on the train "
                      "split and scored on held-out scenarios (bootstrap 95% intervals); lying vs resisting, whose resisted "
                      "side is small, is scored out of fold (five folds over facts, both splits). It holds the "
                      "prompt fixed and varies what the model did: a probe that separates lie prompts but not this "
                      "contrast reads the instruction, not the act."),
            Figure(name="probe-depth", title="Probe AUROC across depth", draw=depth_curves, fallback=(curve_table,)),
            best_table, *figures)


def _causal_row(m: ModelStudy, test: CausalTest | None) -> tuple:
    if test is None:
        return (m.label, "not run", "", "", "", "", _chip("inconclusive"))
    return (m.label, f"{test.layer} ({number(test.depth)})", _text(test.effect), _text(test.control), _text(test.gain),
            str(test.skipped), _chip(causal_call(test)))


def _causal_section(record: ScaleRecord) -> tuple:
    columns = ("model", "layer (depth)", "change of P(true)", "control", "effect minus control", "skipped", "call")
    steering = Table(columns=columns, rows=tuple(_causal_row(m, m.steering) for m in record.models))
    patching = Table(columns=columns, rows=tuple(_causal_row(m, m.patching) for m in record.models))
    figures = _comparison_figures(
        record, "causal", "Causal effects on P(true)", "change of P(true)",
        lie=[("steering against the lie direction", lambda m: m.steering.effect if m.steering else None),
             ("random directions", lambda m: m.steering.control if m.steering else None)],
        parrot=[("patching the context to the truth", lambda m: m.patching.effect if m.patching else None),
                ("patching to another falsehood", lambda m: m.patching.control if m.patching else None)],
        fallback=Table(columns=columns, rows=steering.rows + patching.rows), reference=0.0)
    curve_rows = tuple((m.label, str(t.layer), number(t.depth), _text(t.effect), _text(t.control), _text(t.gain),
                        str(t.skipped)) for m in record.models for t in m.patching_by_layer)
    curve_table = Table(columns=("model", "layer", "depth", "to the truth", "to another falsehood",
                                 "effect minus control", "skipped"), rows=curve_rows)

    def patch_depth():
        panels = [(title, [(m.label, [t.depth for t in m.patching_by_layer],
                            [getattr(t, part) for t in m.patching_by_layer],
                            [f"{m.label}, layer {t.layer}" for t in m.patching_by_layer]) for m in record.models])
                  for title, part in (("patched to the truth", "effect"), ("patched to another falsehood", "control"))]
        return charts.panels_figure("Patching the context across depth (parrots): change of P(true)", panels,
                                    x_title="depth (fraction)", y_title="change of P(true)", reference=0.0)

    depth_figure = Figure(name="patch-depth", title="Patching the context across depth", draw=patch_depth,
                          fallback=(curve_table,))
    return (Paragraph("Steering: at the layer where lie and honest prompts separate best, the lie direction (lie minus "
                      "honest means) is subtracted at the last prompt token by the distance between the means, on "
                      "held-out lies; the control is random directions of the same size. Patching: at the same layer (and "
                      "below, at every probed layer), the turn holding the falsehood is patched token by token from the "
                      "same prompt stating the true answer; the control patches from the prompt stating another "
                      "falsehood. Means of paired per-scenario changes, bootstrap 95% intervals; the call reads "
                      "inconclusive unless the effect minus its control excludes zero."),
            Heading("Steering against the lie direction (lies)", 4), steering,
            Heading("Patching the context (parrots), at the steering's layer", 4), patching,
            Paragraph("Across depth: a patch at an early layer changes what every later layer reads from the context; "
                      "once the answer has been moved to the last token, patching the context no longer matters.",
                      tone="muted"),
            depth_figure, *figures)


def _copy_section(record: ScaleRecord) -> tuple:
    def critical(m: ModelStudy, condition: str) -> Estimate | None:
        curve = next((c for c in m.lens if c.condition == condition), None)
        return curve.critical_depth if curve else None

    table = Table(columns=("model", "critical depth: lies", "critical depth: parrots", "follows a changed context",
                           "parroted the original", "true answer after the change", "skipped"),
                  rows=tuple((m.label, _text(critical(m, "lie")), _text(critical(m, "parrot")),
                              _text(m.copy_test.follow_rate) if m.copy_test else "not run",
                              _text(m.copy_test.original_rate) if m.copy_test else "",
                              _text(m.copy_test.truth_rate) if m.copy_test else "",
                              str(m.copy_test.skipped) if m.copy_test else "") for m in record.models))

    def gaps():
        panels = [(condition, [(m.label, [i / max(m.n_layers - 1, 1) for i in range(m.n_layers)],
                                [Estimate(value=g, low=g, high=g, n=c.n, method="mean")
                                 for g in c.gap], [f"{m.label}, layer {i}" for i in range(m.n_layers)])
                               for m in record.models for c in m.lens if c.condition == condition])
                  for condition in ("lie", "parrot")]
        return charts.panels_figure("Logit lens: the true answer's log-rank minus honest prompts'", panels,
                                    x_title="depth (fraction)", y_title="gap in mean log10(1 + rank)", reference=0.0)

    figures = _comparison_figures(
        record, "critical", "Critical layer of the logit lens", "depth (fraction)",
        lie=[("critical depth, lies", lambda m: critical(m, "lie"))],
        parrot=[("critical depth, parrots", lambda m: critical(m, "parrot"))], fallback=table, y_range=(-0.02, 1.02))
    return (Paragraph("Counterfactual: the false answer in a parrot prompt's context is swapped for another false answer "
                      "of the relation; a copying model follows it. Logit lens: the true answer's rank at the last "
                      "prompt token after each layer (final norm and unembedding); the critical layer is the one whose "
                      "step widens the gap to honest prompts most (bootstrap interval over scenarios)."),
            table, Figure(name="lens-gap", title="Logit lens gap to honest prompts", draw=gaps, fallback=(table,)),
            *figures)


def _feature_section(record: ScaleRecord) -> tuple | None:
    found = [m for m in record.models if m.feature is not None]
    if not found:
        return None
    rows = tuple((m.label, m.feature.sae, f"{m.feature.feature} at {m.feature.site}",
                  *[_text(m.feature.auroc.get(c)) for c in CONTRAST_LABELS],
                  _text(m.feature.ablation.gain) if m.feature.ablation else "not run",
                  _chip(causal_call(m.feature.ablation))) for m in found)
    return (Paragraph("Where a model's spec names an SAE: the feature whose activation at the last prompt token best "
                      "separates lie from honest prompts on the train split, scored held out, and zero-ablated at every "
                      "token on held-out lies against the feature nearest to it in density."),
            Table(columns=("model", "SAE", "feature", *CONTRAST_LABELS.values(), "ablation minus control", "call"),
                  rows=rows))


def _limitations(record: ScaleRecord) -> tuple:
    items = [f"{m.label}: {note}" for m in record.models for note in m.notes]
    items.append("a model's best layer is chosen by held-out AUROC, so a best-layer AUROC is the largest of "
                 f"{len(record.depths)} probed layers: optimistic by selection (the curves across depth show them all)")
    small = [m.label for m in record.models if m.behaviour.lie_rate.n < 30]
    if small:
        items.append(f"fewer than 30 lie prompts per model ({', '.join(small)}): wide intervals")
    if len(record.models) < 3:
        items.append("fewer than three models: no trend across size can be read")
    return (Limitations(items=tuple(items), none_found="every step ran on every model with at least 30 lie prompts"),)


def build_scale_report(record: ScaleRecord) -> ReportDocument:
    """The study's report document."""
    parts = [("models", "Models", _models_section(record)), ("behaviour", "Behaviour", _behaviour_section(record)),
             ("probes", "Probes across depth", _probe_section(record)),
             ("causal", "Causal tests", _causal_section(record)),
             ("copy", "Copy mechanism", _copy_section(record))]
    feature = _feature_section(record)
    if feature:
        parts.append(("features", "SAE features", feature))
    parts.append(("limitations", "Limitations", _limitations(record)))
    sections = tuple(Section(anchor=a, title=f"{i}. {t}", blocks=b) for i, (a, t, b) in enumerate(parts, 1))
    return ReportDocument(title="Lie vs parrot across model sizes",
                          subtitle=f"{len(record.models)} models, {record.n_scenarios} scenarios ({record.n_facts} facts)",
                          sections=sections, footer=f"workbench scale study, record version {record.version}")


def write_scale_report(record: ScaleRecord, fmt: str, path: str | Path, *, figures: bool = True) -> Path:
    """One report of a study: ``html``, or ``md`` with PNG figures in ``<stem>_files/`` beside it where they can
    be exported (written atomically)."""
    from workbench.core.errors import WorkbenchError

    if fmt not in ("html", "md"):
        raise WorkbenchError(f"a scale study's report is html or md, not {fmt!r}")
    path = Path(path)
    document = build_scale_report(record)
    if fmt == "html":
        write_text_atomically(path, to_html(document))
        return path
    paths, note = {}, None
    if figures:
        exported, note = export_figures(document, path.parent / f"{path.stem}_files")
        paths = {name: f"{path.stem}_files/{file}" for name, file in exported.items()}
    write_text_atomically(path, to_markdown(document, figure_paths=paths, figure_note=note))
    return path


def write_scale_outputs(record: ScaleRecord, folder: str | Path, *, figures: bool = True) -> dict[str, Path]:
    """Write the record (JSON), the HTML report and the Markdown report (with PNG figures where they can be
    exported) into ``folder``, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_scale_record(folder / RECORD_NAME, record)
    write_scale_report(record, "html", folder / HTML_NAME)
    write_scale_report(record, "md", folder / MARKDOWN_NAME, figures=figures)
    return {"record": folder / RECORD_NAME, "html": folder / HTML_NAME, "markdown": folder / MARKDOWN_NAME}
