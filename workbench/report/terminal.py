"""The report document in the terminal (rich), for ``workbench run``, ``rerun`` and ``report --format terminal``.

All text goes through ``rich.text.Text``, so markup in user text (``[bold]``) is shown as it is.
Figures show their fallback tables (every chart's numbers are also in a table beside it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console, Group as RichGroup, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table as RichTable
from rich.text import Text

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

ROLE_STYLES = {"system": "grey50", "user": "blue", "assistant": "green", "text": "white"}


def _cell(cell: str | Chip) -> Text:
    return Text(cell.word, style=f"bold {cell.colour}") if isinstance(cell, Chip) else Text(cell)


def _heading(block: Heading) -> RenderableType:
    return Text(block.text, style="bold underline" if block.level == 3 else "bold")


def _paragraph(block: Paragraph) -> RenderableType:
    if block.tone == "quote":
        return Padding(Text(block.text, style="italic"), (0, 0, 0, 2))
    return Text(block.text, style="dim" if block.tone == "muted" else "")


def _verdict(block: VerdictBanner) -> RenderableType:
    body = Text.assemble((f"{block.label}: ", "bold"), (block.chip.word.upper(), f"bold {block.chip.colour}"),
                         "\n", block.reason)
    return Panel(body, border_style=block.chip.colour, expand=False)


def _key_values(block: KeyValues) -> RenderableType:
    table = RichTable.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in block.rows:
        table.add_row(Text(key), _cell(value))
    return table


def _table(block: Table) -> RenderableType:
    table = RichTable(show_lines=False)
    for i, column in enumerate(block.columns):
        table.add_column(Text(column), justify="right" if block.is_numeric(i) else "left", overflow="fold")
    for row in block.rows:
        table.add_row(*[_cell(cell) for cell in row])
    return table


def _figure(block: Figure) -> RenderableType:
    # Charts have no terminal form: their fallback tables, or nothing (the tables beside them hold the numbers).
    return RichGroup(*[render_block(b) for b in block.fallback])


def _conversation(block: Conversation) -> RenderableType:
    example = block.example
    scale = max(example.values, default=0.0)
    text = Text()
    text.append(f"{example.item_id}" + (f" · {example.condition}" if example.condition else "")
                + f" · max {number(example.max_value)} at token {example.max_position}\n", style="dim")
    role = None
    for position, (token, token_role, value) in enumerate(zip(example.tokens, example.roles, example.values)):
        if token_role != role:
            role = token_role
            text.append(("\n" if position else "") + f"{role.upper()}: ", style=f"bold {ROLE_STYLES.get(role, 'white')}")
        if position == example.prompt_length and position > 0:
            text.append(" │answer→ ", style="grey50")
        shade = min(1.0, value / scale) if scale > 0 and value > 0 else 0.0
        style = f"on rgb({255},{int(255 - 120 * shade)},{int(255 - 200 * shade)}) black" if shade > 0 else ""
        if position == example.max_position and value > 0:
            style += " bold underline"
        text.append(token.replace("\n", "↵\n"), style=style)
        if position == example.max_position and value > 0:
            text.append(f"⟨{number(value)}⟩", style="bold red")
    return Panel(text, expand=True, border_style="grey50")


def _code(block: Code) -> RenderableType:
    return Padding(Text(block.text, style="bold"), (0, 0, 0, 2))


def _limitations(block: Limitations) -> RenderableType:
    if not block.items:
        return Text(block.none_found)
    return RichGroup(*[Text("• " + item) for item in block.items])


def _group(block: Group) -> RenderableType:
    title = Text(block.title, style="bold")
    if block.tag:
        title.append(f" [{block.tag}]", style="dim")
    if block.chip:
        title.append(" ")
        title.append(block.chip.word, style=f"bold {block.chip.colour}")
    return Panel(RichGroup(*[render_block(b) for b in block.blocks]), title=title, title_align="left")


#: One function per block type (``document.BLOCK_TYPES``).
RENDERERS: dict[type, Callable[[Any], RenderableType]] = {
    Heading: _heading, Paragraph: _paragraph, VerdictBanner: _verdict, KeyValues: _key_values, Table: _table,
    Figure: _figure, Conversation: _conversation, Code: _code, Limitations: _limitations, Group: _group,
}


def render_block(block: Any) -> RenderableType:
    return RENDERERS[type(block)](block)


def terminal_renderables(document: ReportDocument, sections: Iterable[str] | None = None) -> list[RenderableType]:
    """The document (or the sections named by anchor) as rich renderables."""
    wanted = set(sections) if sections is not None else None
    out: list[RenderableType] = [Text(document.title, style="bold"), Text(document.subtitle, style="dim")]
    for section in document.sections:
        if wanted is not None and section.anchor not in wanted:
            continue
        out.append(Rule(Text(section.title, style="bold"), align="left"))
        out += [render_block(block) for block in section.blocks]
    return out


def to_terminal(document: ReportDocument, console: Console | None = None, *,
                sections: Iterable[str] | None = None) -> None:
    """Print the document (or the sections named by anchor, e.g. ``("claim", "predictions")``)."""
    console = console or Console()
    for renderable in terminal_renderables(document, sections):
        console.print(renderable)
