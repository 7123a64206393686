"""Reports of run records: one document, built once from the typed record, rendered everywhere.

``build_report(record)`` (``document``) makes a ``ReportDocument``: numbered sections (claim and
verdict; setup; evidence; predictions and causal tests; per-response calls when the run judged
responses; limitations) of typed blocks, with every number formatted once, with its n and interval.
Renderers only lay the blocks out: ``to_html`` (one self-contained file, plotly inlined once),
``to_markdown`` (tables, PNG figures via kaleido when available), ``to_terminal`` (rich, for the CLI),
and the app's ``ui.records.show_document`` (streamlit stays out of ``workbench``). ``files`` writes
report files atomically; ``figures`` draws the charts; ``conversation`` is the conversation-to-HTML
helper the app's pages also use; ``exports`` writes features and run records in the layouts of other tools
(Neuronpedia/SAEDashboard feature batches, Inspect evaluation logs).
"""

from workbench.report.document import (
    BLOCK_TYPES,
    SECTIONS,
    SIDE_EFFECT_KL,
    SMALL_N,
    WIDE_INTERVAL,
    ReportDocument,
    build_report,
    estimate_text,
    limitations,
    separation,
)
from workbench.report.files import FORMATS, ReportFormat, export_figures, render_report, report_command, write_report
from workbench.report.html import to_html
from workbench.report.markdown import md_escape, to_markdown
from workbench.report.terminal import to_terminal

__all__ = [
    "BLOCK_TYPES", "FORMATS", "SECTIONS", "SIDE_EFFECT_KL", "SMALL_N", "WIDE_INTERVAL", "ReportDocument", "ReportFormat",
    "build_report", "estimate_text", "export_figures", "limitations", "md_escape", "render_report", "report_command",
    "separation", "to_html", "to_markdown", "to_terminal", "write_report",
]
