"""Run records in the app: the report document (``workbench.report.build_report``) laid out with streamlit.

The app renders the same document as the HTML, Markdown and terminal reports, block by block
(``RENDERERS`` has one function per ``workbench.report.BLOCK_TYPES``), so a section added to the
document builder appears here without changes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from workbench.hypotheses.records import RunRecord
from workbench.report import build_report
from workbench.report.conversation import conversation_html
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
from ui.tables import markdown_text, show_table

#: Streamlit's coloured-background markdown for the verdict and outcome words.
_BADGES = {"supported": "green", "holds": "green", "refuted": "red", "contradicted": "red", "inconclusive": "orange",
           "unclear": "orange", "behaviour": "green", "instruction": "red", "too few": "gray"}


def _chip(chip: Chip) -> str:
    colour = _BADGES.get(chip.word)
    return f":{colour}-background[{markdown_text(chip.word)}]" if colour else f"**{markdown_text(chip.word)}**"


def _cell(cell: str | Chip) -> str:
    return cell.word if isinstance(cell, Chip) else cell


def _heading(block: Heading) -> None:
    st.markdown(f"{'####' if block.level == 3 else '#####'} {markdown_text(block.text)}")


def _paragraph(block: Paragraph) -> None:
    if block.tone == "quote":
        st.markdown("> " + markdown_text(block.text).replace("  \n", "  \n> "))
    elif block.tone == "muted":
        st.caption(markdown_text(block.text))
    else:
        st.markdown(markdown_text(block.text))


def _verdict(block: VerdictBanner) -> None:
    st.markdown(f"**{markdown_text(block.label)}: {_chip(block.chip)}** {markdown_text(block.reason)}")


def _key_values(block: KeyValues) -> None:
    st.markdown("\n".join(f"- **{markdown_text(key)}**: {markdown_text(_cell(value))}" for key, value in block.rows))


def _table(block: Table) -> None:
    show_table([dict(zip(block.columns, (_cell(c) for c in row))) for row in block.rows])


def _figure(block: Figure) -> None:
    st.plotly_chart(block.figure(), use_container_width=True)


def _conversation(block: Conversation) -> None:
    from workbench.features.evidence import FeatureExample

    example = block.example
    data = example.model_dump()
    data["kind"] = "scenario" if example.prompt_length < len(example.tokens) else "text"
    st.html(conversation_html(FeatureExample(**data)))


def _code(block: Code) -> None:
    st.code(block.text, language="bash")


def _limitations(block: Limitations) -> None:
    if block.items:
        st.markdown("\n".join(f"- {markdown_text(item)}" for item in block.items))
    else:
        st.markdown(markdown_text(block.none_found))


def _group(block: Group) -> None:
    with st.container(border=True):
        tag = f" `{block.tag}`" if block.tag else ""
        st.markdown(f"#### {markdown_text(block.title)}{tag} {_chip(block.chip) if block.chip else ''}")
        for inner in block.blocks:
            render_block(inner)


#: One function per block type (``workbench.report.BLOCK_TYPES``).
RENDERERS: dict[type, Callable[[Any], None]] = {
    Heading: _heading, Paragraph: _paragraph, VerdictBanner: _verdict, KeyValues: _key_values, Table: _table,
    Figure: _figure, Conversation: _conversation, Code: _code, Limitations: _limitations, Group: _group,
}


def render_block(block: Any) -> None:
    RENDERERS[type(block)](block)


def show_document(document: ReportDocument, *, collapsed: tuple[str, ...] = ("setup", "evidence")) -> None:
    """Every section of the document; the sections named in ``collapsed`` inside expanders."""
    st.markdown(f"### {markdown_text(document.title)}")
    st.caption(markdown_text(document.subtitle))
    for section in document.sections:
        if section.anchor in collapsed:
            with st.expander(section.title):
                for block in section.blocks:
                    render_block(block)
            continue
        st.markdown(f"#### {markdown_text(section.title)}")
        for block in section.blocks:
            render_block(block)


def show_record(record: RunRecord) -> None:
    """The record's report document (verdict, predictions, controls, curves, evidence, limitations)."""
    show_document(build_report(record))


def record_label(path: Path, record: RunRecord | None, root: Path) -> str:
    try:
        shown = path.relative_to(root)
    except ValueError:
        shown = path
    if record is None:
        return f"{shown} (unreadable)"
    return f"{shown} · {record.hypothesis.get('name', '?')} · {record.verdict} · {record.created}"
