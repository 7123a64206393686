"""Report files: the document rendered to HTML, Markdown (with PNG figures) or JSON, written atomically.

- **HTML** is one self-contained file (``html.to_html``).
- **Markdown** (``markdown.to_markdown``): ``write_report`` also exports the figures as PNG files into
  a sibling folder ``<stem>_files/`` and links them relatively; where kaleido or a browser is missing,
  the Markdown says so and shows each figure's numbers as tables.
- **JSON** is the run record itself at the current record version.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from workbench.core.errors import WorkbenchError
from workbench.core.io import check_output_path, write_bytes_atomically, write_text_atomically
from workbench.hypotheses.records import RunRecord, read_record
from workbench.report import figures as charts
from workbench.features.explanations import Explanation, read_store
from workbench.report.document import ReportDocument, build_report, explanations_for
from workbench.report.html import to_html
from workbench.report.markdown import to_markdown

ReportFormat = Literal["html", "md", "json"]
FORMATS: tuple[str, ...] = ("html", "md", "json")
SUFFIXES = {"html": ".html", "md": ".md", "json": ".json"}


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise WorkbenchError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def render_report(record: RunRecord, fmt: ReportFormat, explanations: Sequence[Explanation] = ()) -> str:
    """The report as text. Markdown from here shows figures as tables (no files to link PNGs to);
    ``write_report`` adds PNG figures next to the ``.md``."""
    fmt = _check_format(fmt)
    if fmt == "json":
        return record.model_dump_json(indent=1)
    document = build_report(record, explanations)
    return to_html(document) if fmt == "html" else to_markdown(document)


def export_figures(document: ReportDocument, folder: Path) -> tuple[dict[str, str], str | None]:
    """Write the document's figures as PNG files into ``folder`` (each atomically).

    Returns ``({figure name: file name}, None)``, or ``({}, reason)`` when PNG export cannot
    run here (kaleido or a Chrome/Chromium missing); the Markdown report then shows tables.
    """
    figures = {figure.name: figure for figure in document.figures()}
    if not figures:
        return {}, None
    try:
        images = charts.render_pngs({name: figure.figure() for name, figure in figures.items()})
    # Broad on purpose: kaleido missing, no browser, a browser that crashed or timed out all
    # mean the same here (no PNGs), and the report must still be written with its tables.
    except Exception as error:  # noqa: BLE001
        return {}, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip(": ")
    written: dict[str, str] = {}
    for name, data in images.items():
        write_bytes_atomically(folder / f"{name}.png", data)
        written[name] = f"{name}.png"
    return written, None


def write_report(record: RunRecord, fmt: ReportFormat, path: str | os.PathLike[str], *, figures: bool = True,
                 explanations: Sequence[Explanation] = ()) -> Path:
    """Write the report atomically (temporary file, then rename) and return its path.

    For Markdown with ``figures``, the charts are exported as PNG files into ``<stem>_files/``
    beside ``path`` first (each written atomically), then the ``.md`` that links them; if the
    export cannot run here, the report says why and keeps its tables.
    """
    fmt = _check_format(fmt)
    path = Path(path)
    if fmt == "md":
        document = build_report(record, explanations)
        figure_paths: dict[str, str] | None = None
        note = None
        if figures:
            exported, note = export_figures(document, path.parent / f"{path.stem}_files")
            figure_paths = {name: f"{path.stem}_files/{file}" for name, file in exported.items()}
        text = to_markdown(document, figure_paths=figure_paths, figure_note=note)
    else:
        text = render_report(record, fmt, explanations)  # type: ignore[arg-type]
    write_text_atomically(path, text)
    return path


def report_command(record_path: Path, fmt: str, out: Path, explanations: Path | None = None) -> Path:
    """What ``workbench report`` runs: read (and migrate) a record, write its report to ``out``, with the
    record's features' explanations from the store at ``explanations`` (default: the workbench cache's).

    ``out`` may be a file or an existing folder (the report is then named after the record).
    Returns the written path; a ``WorkbenchError`` says what to fix for a bad format or record.
    """
    fmt = _check_format(fmt)
    record = read_record(record_path)
    explained = explanations_for(record, read_store(explanations))
    out = Path(out)
    if out.is_dir():
        out = out / (Path(record_path).stem + SUFFIXES[fmt])
    if out.resolve() == Path(record_path).resolve():
        raise WorkbenchError(f"{out} is the run record itself: give another output path for the {fmt} report")
    check_output_path(out, f"{fmt} report")
    try:
        return write_report(record, fmt, out, explanations=explained)  # type: ignore[arg-type]
    except OSError as error:
        raise WorkbenchError(f"could not write the report to {out}: {error.strerror or error}") from None
