"""HTML for whole conversations with per-token highlighting (used by the app and reports).

All user text is escaped: a scenario containing ``<script>`` shows as text.
"""

from __future__ import annotations

import html

from workbench.features.evidence import FeatureExample

ROLE_COLOURS = {"system": "#6b7280", "user": "#2563eb", "assistant": "#059669", "text": "#374151"}


def _token_html(token: str, value: float, scale: float) -> str:
    shown = html.escape(token).replace("\n", "↵<br>")
    if value <= 0 or scale <= 0:
        return f'<span title="0">{shown}</span>'
    alpha = min(1.0, value / scale)
    return (f'<span title="{value:.4f}" style="background: rgba(234, 88, 12, {alpha:.2f}); '
            f'border-radius: 2px">{shown}</span>')


def conversation_html(example: FeatureExample, scale: float | None = None) -> str:
    """The whole item, one block per speaker turn, tokens shaded by activation (hover: value)."""
    scale = scale if scale is not None else max(example.values, default=0.0)
    blocks: list[str] = []
    current_role, current_tokens = None, []
    answer_marked = False

    def flush() -> None:
        if current_role is None:
            return
        colour = ROLE_COLOURS.get(current_role, "#374151")
        blocks.append(
            f'<div style="border-left: 4px solid {colour}; padding: 4px 8px; margin: 4px 0">'
            f'<div style="font-size: 0.75em; color: {colour}; font-weight: 600; text-transform: uppercase">'
            f'{html.escape(current_role)}</div><div style="font-family: monospace; white-space: pre-wrap">'
            f'{"".join(current_tokens)}</div></div>'
        )

    for position, (token, role, value) in enumerate(zip(example.tokens, example.roles, example.values)):
        if role != current_role:
            flush()
            current_role, current_tokens = role, []
        if position == example.prompt_length and example.kind == "scenario" and not answer_marked:
            current_tokens.append('<span style="color: #9ca3af">│answer→</span>')
            answer_marked = True
        token_html = _token_html(token, value, scale)
        if position == example.max_position and value > 0:
            token_html = f'<span style="outline: 2px solid #b91c1c">{token_html}</span>'
        current_tokens.append(token_html)
    flush()
    header = (f'<div style="font-size: 0.8em; color: #6b7280">{html.escape(example.item_id)}'
              f'{" · " + html.escape(example.condition) if example.condition else ""} · max '
              f'{example.max_value:.3f} at token {example.max_position}</div>')
    return f'<div class="wb-conversation">{header}{"".join(blocks)}</div>'
