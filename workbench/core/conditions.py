"""The one table of conditions: what each scenario condition means, its colour in every chart and
report, and the response verdict the incrimination protocol should reach on it.

``Condition`` is the enum scenario files use; ``CONDITIONS`` holds what the code, the UI and the
reports need to know about each one. Behaviour-conditioned conditions (a condition narrowed by
what the model actually did) are built from these names elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from workbench.core.errors import WorkbenchError


class Condition(str, Enum):
    """Why a scenario's answer would be what it is."""

    honest = "honest"
    lie = "lie"
    parrot = "parrot"
    ignorant = "ignorant"


@dataclass(frozen=True)
class ConditionInfo:
    """What the workbench knows about one condition."""

    condition: Condition
    meaning: str
    """One sentence for help texts and reports."""
    colour: str
    """Hex colour of the condition in every chart and report."""
    expected_call: str
    """The response verdict (call) the incrimination protocol should reach on a response of this condition."""


CONDITIONS: dict[str, ConditionInfo] = {info.condition.value: info for info in (
    ConditionInfo(Condition.honest, "asked plainly; the model should answer truly", "#2563eb", "honest"),
    ConditionInfo(Condition.lie, "the model knows the truth and has a motive or trigger to deceive; the falsehood "
                  "is not in its context", "#dc2626", "intentional lie"),
    ConditionInfo(Condition.parrot, "the falsehood is in the context and the model is asked to repeat or continue it",
                  "#7c3aed", "parroting"),
    ConditionInfo(Condition.ignorant, "the model does not know the answer", "#6b7280", "ignorance"),
)}
CONDITION_NAMES = tuple(CONDITIONS)
#: The conditions a causal test's specificity control draws from (an ignorant scenario has no truth to restore).
CONTROL_CONDITIONS = ("lie", "parrot", "honest")
#: Colours for anything that is not one of the conditions (e.g. behaviour-conditioned subsets, controls).
FALLBACK_COLOURS = ("#0891b2", "#ca8a04", "#db2777", "#65a30d", "#9333ea", "#0f766e")


def condition_colour(condition: str, index: int = 0) -> str:
    """The condition's colour; a fallback colour (by index) for anything else."""
    info = CONDITIONS.get(condition)
    return info.colour if info else FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)]


def ordered_conditions(names: Iterable[str | None]) -> list[str]:
    """The distinct condition names given, in the table's order, then any others (e.g. behaviour-conditioned
    subsets) sorted; None is left out."""
    present = {name for name in names if name is not None}
    return [name for name in CONDITIONS if name in present] + sorted(present - set(CONDITIONS))


def expected_call(condition: str) -> str | None:
    """The response verdict expected on a scenario of this condition (None if not a known condition)."""
    info = CONDITIONS.get(condition)
    return info.expected_call if info else None


def check_conditions(names: Iterable[str], present: Iterable[str] | None = None, *, needed_by: str = "this") -> None:
    """Every name is a condition of the table and, when ``present`` is given (the conditions a scenario
    set holds), one the scenarios have; else a ``WorkbenchError`` naming the unknown or missing ones."""
    names = set(names)
    unknown = sorted(names - set(CONDITIONS))
    if unknown:
        raise WorkbenchError(f"unknown condition(s) {', '.join(unknown)}; conditions are {', '.join(CONDITIONS)}")
    if present is not None:
        present = set(present)
        missing = sorted(names - present)
        if missing:
            raise WorkbenchError(f"the scenarios have no {', '.join(missing)} scenarios, which {needed_by} needs "
                                 f"(present: {', '.join(ordered_conditions(present)) or 'none'})")
