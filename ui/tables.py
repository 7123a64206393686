"""Tables the user reads rather than sorts: static, wrapped to the page's width, every cell escaped.

``st.dataframe`` draws a grid of fixed-width columns that scrolls sideways: at 1400 px the causal
lab's edited answers and a report's last columns were cut off. Results with text in them (reports,
generated answers) are shown with :func:`show_table` instead, which wraps long cells so every column
stays on the page; tables of numbers a user may sort stay dataframes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from workbench.report.markdown import md_escape


def markdown_text(text: str) -> str:
    """User text for Streamlit markdown: no HTML, emphasis, links or LaTeX."""
    return md_escape(text).replace("$", "\\$").replace("<br>", "  \n")


def show_table(rows: Sequence[Mapping[str, Any]], container: Any = st) -> None:
    """Rows (same keys) as a static table whose cells wrap; text is escaped, numbers are kept."""
    if not rows:
        return
    columns = list(rows[0])
    escaped = [{markdown_text(str(c)): (markdown_text(v) if isinstance(v, str) else v) for c, v in zip(columns, (
        row.get(c, "") for c in columns))} for row in rows]
    container.table(escaped, hide_index=True)
