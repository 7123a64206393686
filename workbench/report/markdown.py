"""The report document as Markdown.

Numbers are always in tables (they survive pasting anywhere). Figures are linked as PNG files when
``figure_paths`` names them (``files.write_report`` exports them with kaleido); otherwise each figure's
fallback (its numbers as a table) is shown. User text is escaped by ``md_escape``: ``|``, backticks,
emphasis characters and ``<``/``>``; the rerun command stays literal inside a code fence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
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
    number,
)

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def md_escape(text: Any) -> str:
    """Text safe inside Markdown (and a table cell): no HTML, code spans, emphasis or links."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\n", "<br>")


def _cell(cell: str | Chip) -> str:
    return f"**{md_escape(cell.word)}**" if isinstance(cell, Chip) else md_escape(cell)


def md_table(header: Iterable[str], rows: Iterable[Iterable[str | Chip]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class _Markdown:
    def __init__(self, figure_paths: Mapping[str, str] | None) -> None:
        self.figure_paths = figure_paths or {}
        self.renderers: dict[type, Callable[[Any], str]] = {
            Heading: self.heading, Paragraph: self.paragraph, VerdictBanner: self.verdict, KeyValues: self.key_values,
            Table: self.table, Figure: self.figure, Conversation: self.conversation, Code: self.code,
            Limitations: self.limitations, Group: self.group,
        }

    def render(self, block: Any) -> str:
        return self.renderers[type(block)](block)

    def heading(self, block: Heading) -> str:
        return f"{'#' * block.level} {md_escape(block.text)}\n"

    def paragraph(self, block: Paragraph) -> str:
        text = md_escape(block.text)
        if block.tone == "quote":
            return "> " + text.replace("<br>", "\n> ") + "\n"
        return f"*{text}*\n" if block.tone == "muted" else text + "\n"

    def verdict(self, block: VerdictBanner) -> str:
        return f"**{md_escape(block.label)}: {md_escape(block.chip.word.upper())}**: {md_escape(block.reason)}\n"

    def key_values(self, block: KeyValues) -> str:
        return md_table(["", "value"], block.rows)

    def table(self, block: Table) -> str:
        return md_table(block.columns, block.rows)

    def figure(self, block: Figure) -> str:
        path = self.figure_paths.get(block.name)
        if path is None:
            return "\n".join(part for part in (self.render(b) for b in block.fallback) if part)
        return f"![{md_escape(block.title)}]({path.replace(' ', '%20').replace('(', '%28').replace(')', '%29')})\n"

    def conversation(self, block: Conversation) -> str:
        """Markdown has no colour: tokens at >= half the maximum are bold, the maximum also gets
        its value; a table lists the strongest tokens."""
        example = block.example
        scale = max(example.values, default=0.0)
        lines = [f"**{md_escape(example.item_id)}**"
                 + (f" · {md_escape(example.condition)}" if example.condition else "")
                 + f" · max {number(example.max_value)} at token {example.max_position}", ""]
        turns: list[tuple[str, list[str]]] = []
        for position, (token, role, value) in enumerate(zip(example.tokens, example.roles, example.values)):
            if not turns or turns[-1][0] != role:
                turns.append((role, []))
            text = md_escape(token)
            if position == example.prompt_length and position > 0:
                turns[-1][1].append(" │answer→ ")
            if scale > 0 and value >= 0.5 * scale and token.strip():
                stripped = text.lstrip(" ")
                text = f"{text[: len(text) - len(stripped)]}**{stripped}**"
                if position == example.max_position:
                    text += f" ⟨{number(value)}⟩"
            turns[-1][1].append(text)
        for role, texts in turns:
            lines.append(f"> **{md_escape(role.upper())}:** {''.join(texts).replace('<br>', ' ↵ ')}")
            lines.append(">")
        if lines[-1] == ">":
            lines.pop()
        ranked = sorted(range(len(example.values)), key=lambda i: example.values[i], reverse=True)
        top = [i for i in ranked[:5] if example.values[i] > 0]
        if top:
            lines += ["", md_table(["position", "turn", "token", "activation"],
                                   [(str(i), example.roles[i], repr(example.tokens[i]), number(example.values[i]))
                                    for i in top])]
        return "\n".join(lines) + "\n"

    def code(self, block: Code) -> str:
        fence = "```"
        while fence in block.text:
            fence += "`"
        return f"{fence}\n{block.text}\n{fence}\n"  # literal inside a fence: nothing is interpreted

    def limitations(self, block: Limitations) -> str:
        if not block.items:
            return md_escape(block.none_found) + "\n"
        return "\n".join(f"- {md_escape(item)}" for item in block.items) + "\n"

    def group(self, block: Group) -> str:
        title = md_escape(block.title) + (f" ({md_escape(block.tag)})" if block.tag else "")
        title += f": {md_escape(block.chip.word)}" if block.chip else ""
        return "\n".join(part for part in [f"### {title}\n", *[self.render(b) for b in block.blocks]] if part)


#: Block types the Markdown renderer handles (``document.BLOCK_TYPES``).
RENDERED_TYPES = tuple(_Markdown(None).renderers)


def to_markdown(document: ReportDocument, *, figure_paths: Mapping[str, str] | None = None,
                figure_note: str | None = None) -> str:
    """The Markdown report; ``figure_paths`` maps figure names to relative PNG paths to link
    (figures without one show their fallback tables)."""
    renderer = _Markdown(figure_paths)
    out = [f"# {md_escape(document.title)}\n", md_escape(document.subtitle) + "\n"]
    if figure_note:
        out.append(f"*Figures could not be exported as PNG here ({md_escape(figure_note)}); the tables carry the same "
                   "numbers. Install kaleido and Chrome/Chromium for figures, or open the HTML report.*\n")
    for section in document.sections:
        out.append(f"## {md_escape(section.title)}\n")
        out += [renderer.render(block) for block in section.blocks]
    out.append(f"*{md_escape(document.footer)}*\n")
    return "\n".join(part for part in out if part)
