"""The one table of position rules: which tokens of a rendered conversation a rule selects.

Capture, contrast, evidence, interventions, hypothesis files and the CLI help all read their
choices and meanings from ``POSITIONS``. A rule is a function of three per-token facts that every
caller has: the token's position, its speaker role and the item's prompt length (the answer
starts there). Position 0 is the attention sink: on SmolLM2 its residual norm is ~100x that of
other tokens, SAEs are not trained there, captures do not store it and edits never touch it
(``FIRST_POSITION``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from workbench.core.errors import WorkbenchError

#: Speaker roles a token can belong to; ``text`` is free text outside any chat.
ROLES = ("system", "user", "assistant", "text")
ROLE_INDEX = {role: index for index, role in enumerate(ROLES)}
#: Colour of each role wherever tokens are shown by speaker (conversations, activation curves).
ROLE_COLOURS = {"system": "#6b7280", "user": "#2563eb", "assistant": "#059669", "text": "#374151"}

#: The first position that is read or edited: position 0 is the attention sink.
FIRST_POSITION = 1


@dataclass(frozen=True)
class PositionRule:
    """One way of choosing tokens."""

    name: str
    description: str
    """What the rule selects, in words (CLI help, app tooltips, YAML schema)."""
    select: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    """(positions, roles, prompt_length) -> bool mask, all of the same shape."""
    covers_answer: bool
    """Whether it selects tokens the model generates (an edit with it acts during generation)."""


def _role(name: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda positions, roles, prompt_length: roles == ROLE_INDEX[name]


#: Every position rule, in the order choices are offered.
POSITIONS: dict[str, PositionRule] = {rule.name: rule for rule in (
    PositionRule("last_prompt_token", "the last token before the answer (after a prefill, the prefill's last token)",
                 lambda positions, roles, prompt_length: positions == prompt_length - 1, covers_answer=False),
    PositionRule("answer", "the response tokens (after the prompt)",
                 lambda positions, roles, prompt_length: positions >= prompt_length, covers_answer=True),
    PositionRule("assistant", "the whole assistant turn (prefill and response)", _role("assistant"), covers_answer=True),
    PositionRule("user", "the user turn", _role("user"), covers_answer=False),
    PositionRule("system", "the system prompt", _role("system"), covers_answer=False),
    PositionRule("all", "every token (but the attention sink at position 0)",
                 lambda positions, roles, prompt_length: torch.ones_like(positions, dtype=torch.bool),
                 covers_answer=True),
)}
POSITION_NAMES = tuple(POSITIONS)


def position_rule(name: str) -> PositionRule:
    """The rule of that name, or an error listing the rules."""
    try:
        return POSITIONS[name]
    except KeyError:
        raise WorkbenchError(f"unknown position rule {name!r}; choose one of {', '.join(POSITIONS)}") from None


def select_positions(rule: str, positions: torch.Tensor, roles: torch.Tensor, prompt_length: torch.Tensor) -> torch.Tensor:
    """Bool mask of the tokens ``rule`` selects; the attention sink (position 0) is never selected."""
    mask = position_rule(rule).select(positions, roles, prompt_length)
    return mask & (positions >= FIRST_POSITION)


def describe_positions() -> str:
    """One line per rule, for help texts."""
    return "; ".join(f"`{rule.name}`: {rule.description}" for rule in POSITIONS.values())
