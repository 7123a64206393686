"""The report document as one self-contained HTML file.

plotly.js is inlined once, nothing is fetched, and a print stylesheet makes it printable: it opens
offline and can be mailed as it is. Every piece of text is escaped with ``html.escape`` (figure
labels were escaped when the figures were drawn, since plotly renders them as pseudo-HTML).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from workbench.report.document import (
    Chip,
    Code,
    Conversation,
    Figure,
    Group,
    Heading,
    KeyValues,
    Limitations,
    Paragraph,
    ReportDocument,
    Table,
    VerdictBanner,
)

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
  color: var(--muted); margin: 0 6px; vertical-align: middle; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 14px; font-size: 0.88em; }
th, td { text-align: left; vertical-align: top; padding: 5px 9px; border-bottom: 1px solid var(--rule); }
.table-wrap { overflow-x: auto; }
th { background: var(--panel); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fcfcfd; }
td.num { font-variant-numeric: tabular-nums; }
table.kv th { width: 28%; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em; }
pre.command { background: #111827; color: #f9fafb; padding: 10px 14px; border-radius: 6px; white-space: pre-wrap;
  word-break: break-all; }
.prediction { border: 1px solid var(--rule); border-radius: 8px; padding: 4px 18px 10px; margin: 18px 0; }
.prediction h3 { margin-top: 14px; }
.figure { margin: 8px 0 14px; break-inside: avoid; page-break-inside: avoid; }
.wb-conversation { border: 1px solid var(--rule); border-radius: 6px; padding: 8px 12px; margin: 8px 0 16px;
  background: #fff; }
.limitations li { margin: 4px 0; }
.muted { color: var(--muted); }
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


def _breakable(text: str) -> str:
    """Escaped text that may wrap after ``_``, ``/`` and a ``.`` not before a digit (identifiers in narrow
    columns; numbers stay whole)."""
    return re.sub(r"([_/]|\.(?!\d))", r"\1<wbr>", _e(text))


def _chip(chip: Chip) -> str:
    return f'<span class="chip" style="background:{_e(chip.colour)}">{_e(chip.word)}</span>'


def _cell(cell: str | Chip, numeric: bool = False) -> str:
    if isinstance(cell, Chip):
        return _chip(cell)
    return _e(cell) if numeric else _breakable(cell)


def _heading(block: Heading) -> str:
    return f"<h{block.level}>{_e(block.text)}</h{block.level}>"


def _paragraph(block: Paragraph) -> str:
    if block.tone == "quote":
        return f'<blockquote class="claim">{_e(block.text)}</blockquote>'
    return f'<p class="muted">{_e(block.text)}</p>' if block.tone == "muted" else f"<p>{_e(block.text)}</p>"


def _verdict(block: VerdictBanner) -> str:
    colour = _e(block.chip.colour)
    return (f'<div class="verdict" id="verdict" style="border-color:{colour}"><div class="label">{_e(block.label)}</div>'
            f'<div class="word" style="color:{colour}">{_e(block.chip.word)}</div>'
            f'<div class="reason">{_e(block.reason)}</div></div>')


def _key_values(block: KeyValues) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_cell(v)}</td></tr>" for k, v in block.rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _table(block: Table) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in block.columns)
    numeric = ' class="num"'
    body = "".join(
        "<tr>" + "".join(f"<td{numeric if block.is_numeric(i) else ''}>{_cell(cell, block.is_numeric(i))}</td>"
                         for i, cell in enumerate(row)) + "</tr>"
        for row in block.rows)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(block: Figure) -> str:
    import plotly.io as pio

    div = pio.to_html(block.figure(), full_html=False, include_plotlyjs=False,
                      config={"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendDataToCloud"]})
    return f'<div class="figure">{div}</div>'


def _conversation(block: Conversation) -> str:
    from workbench.features.evidence import FeatureExample
    from workbench.report.conversation import conversation_html

    example = block.example
    data = example.model_dump()
    data["kind"] = "scenario" if example.prompt_length < len(example.tokens) else "text"
    return conversation_html(FeatureExample(**data))


def _code(block: Code) -> str:
    return f'<pre class="command">{_e(block.text)}</pre>'


def _limitations(block: Limitations) -> str:
    if not block.items:
        return f"<p>{_e(block.none_found)}</p>"
    return '<ul class="limitations">' + "".join(f"<li>{_e(item)}</li>" for item in block.items) + "</ul>"


def _group(block: Group) -> str:
    chip = f" {_chip(block.chip)}" if block.chip else ""
    tag = f'<span class="kind">{_e(block.tag)}</span>' if block.tag else ""
    inner = "".join(render_block(b) for b in block.blocks)
    return f'<div class="prediction" id="{_e(block.anchor)}"><h3>{_e(block.title)}{tag}{chip}</h3>{inner}</div>'


#: One function per block type (``document.BLOCK_TYPES``).
RENDERERS: dict[type, Callable[[Any], str]] = {
    Heading: _heading, Paragraph: _paragraph, VerdictBanner: _verdict, KeyValues: _key_values, Table: _table,
    Figure: _figure, Conversation: _conversation, Code: _code, Limitations: _limitations, Group: _group,
}


def render_block(block: Any) -> str:
    return RENDERERS[type(block)](block)


def to_html(document: ReportDocument) -> str:
    """The self-contained HTML report (plotly.js inline once, no external URL)."""
    import plotly.offline

    parts = [f"<h1>{_e(document.title)}</h1>", f'<div class="subtitle">{_e(document.subtitle)}</div>',
             '<nav class="toc">' + "".join(f'<a href="#{_e(s.anchor)}">{_e(s.title)}</a>' for s in document.sections)
             + "</nav>"]
    for section in document.sections:
        parts.append(f'<section id="{_e(section.anchor)}"><h2>{_e(section.title)}</h2>')
        parts += [render_block(block) for block in section.blocks]
        parts.append("</section>")
    parts.append(f"<footer>{_e(document.footer)}</footer>")
    verdict = next((b.chip.word for b in document.blocks() if isinstance(b, VerdictBanner)), "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(document.title)}{': ' + _e(verdict) if verdict else ''}</title><style>{_CSS}</style>"
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
        f"</head><body><main>{''.join(parts)}</main></body></html>\n"
    )
