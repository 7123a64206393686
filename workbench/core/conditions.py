"""The one table of conditions: what each scenario condition means, its colour in every chart and
report, and the response verdict the incrimination protocol should reach on it.

``Condition`` is the enum scenario files use; ``CONDITIONS`` holds what the code, the UI and the
reports need to know about each one.

A condition can be *narrowed by behaviour*, by what the model actually did, judged from its response:
``lie+false`` (lie prompts the model lied on), ``lie+truth`` (lie prompts it resisted: honest despite
the incentive). ``BEHAVIOURS`` holds the suffixes and what they mean, each ``ConditionInfo`` the words for
its narrowed conditions (or why it has none); :func:`parse_condition` reads a name and
:func:`check_conditions` checks a list of them. Which responses a suffix takes is decided by the answer
judge (``scenarios.judging.BEHAVIOUR_JUDGEMENTS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
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
    behaviours: dict[str, str] = field(default_factory=dict)
    """What the model did, in words, on a response of each behaviour (``BEHAVIOURS``) this condition is
    narrowed by (``lie``: ``false`` -> "lied"); empty when it is not narrowed by behaviour."""
    not_narrowed_because: str = ""
    """Why the condition is not narrowed by behaviour (when ``behaviours`` is empty)."""


@dataclass(frozen=True)
class BehaviourInfo:
    """One behaviour a condition is narrowed by: what the model's response said, judged against the
    scenario's ground truth."""

    suffix: str
    """What follows the condition's name and ``+`` (``false`` in ``lie+false``)."""
    meaning: str
    """One sentence for help texts and reports."""


#: Joins a condition and a behaviour: ``lie+false``.
BEHAVIOUR_SEPARATOR = "+"
BEHAVIOURS: dict[str, BehaviourInfo] = {info.suffix: info for info in (
    BehaviourInfo("false", "the response states a false answer: the scenario's false answer or another answer of "
                  "the same relation"),
    BehaviourInfo("truth", "the response states the true answer"),
)}

CONDITIONS: dict[str, ConditionInfo] = {info.condition.value: info for info in (
    ConditionInfo(Condition.honest, "asked plainly; the model should answer truly", "#2563eb", "honest",
                  {"false": "answered falsely though asked plainly", "truth": "answered truly"}),
    ConditionInfo(Condition.lie, "the model knows the truth and has a motive or trigger to deceive; the falsehood "
                  "is not in its context", "#dc2626", "intentional lie",
                  {"false": "lied", "truth": "resisted: told the truth despite the motive or trigger"}),
    ConditionInfo(Condition.parrot, "the falsehood is in the context and the model is asked to repeat or continue it",
                  "#7c3aed", "parroting",
                  {"false": "parroted a falsehood", "truth": "corrected the falsehood: told the truth instead"}),
    ConditionInfo(Condition.ignorant, "the model does not know the answer", "#6b7280", "ignorance",
                  not_narrowed_because="the model does not know the answer, so a false response is a guess rather "
                  "than a lie or parroting, and a true one contradicts the scenario's ground truth"),
)}
CONDITION_NAMES = tuple(CONDITIONS)
#: Every condition narrowed by behaviour, in the table's order (``lie+false``, ``lie+truth``, ...).
NARROWED_CONDITIONS = tuple(f"{name}{BEHAVIOUR_SEPARATOR}{suffix}" for name, info in CONDITIONS.items()
                            for suffix in BEHAVIOURS if suffix in info.behaviours)
#: The conditions a causal test's specificity control draws from (an ignorant scenario has no truth to restore).
CONTROL_CONDITIONS = ("lie", "parrot", "honest")
#: Colours for anything that is not one of the conditions (e.g. behaviour-conditioned subsets, controls).
FALLBACK_COLOURS = ("#0891b2", "#ca8a04", "#db2777", "#65a30d", "#9333ea", "#0f766e")


def condition_colour(condition: str, index: int = 0) -> str:
    """The condition's colour; a fallback colour (by index) for anything else."""
    info = CONDITIONS.get(condition)
    return info.colour if info else FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)]


def ordered_conditions(names: Iterable[str | None]) -> list[str]:
    """The distinct condition names given, in the table's order (the conditions, then those narrowed by
    behaviour), then any others sorted; None is left out."""
    present = {name for name in names if name is not None}
    known = [name for name in (*CONDITION_NAMES, *NARROWED_CONDITIONS) if name in present]
    return known + sorted(present - set(known))


def condition_choices(present: Iterable[str | None]) -> list[str]:
    """What a pick list of conditions offers for scenarios of the ``present`` conditions: those in the
    table's order, then each narrowed by behaviour (``lie+false``, ``lie+truth``, ...)."""
    bases = ordered_conditions(present)
    return bases + [name for name in NARROWED_CONDITIONS if name.partition(BEHAVIOUR_SEPARATOR)[0] in bases]


def parse_condition(name: str) -> tuple[str, str | None]:
    """``(condition, behaviour)`` of a condition's name: ``lie`` -> ``("lie", None)``, ``lie+false`` ->
    ``("lie", "false")``; a ``WorkbenchError`` naming an unknown condition or behaviour, or a condition that
    is not narrowed by behaviour, with the valid names."""
    base, separator, behaviour = name.partition(BEHAVIOUR_SEPARATOR)
    if base not in CONDITIONS:
        whole = f" in {name!r}" if separator else ""
        raise WorkbenchError(f"unknown condition {base!r}{whole}; conditions are {', '.join(CONDITIONS)}"
                             + (f"; narrowed by behaviour: {', '.join(NARROWED_CONDITIONS)}" if separator else ""))
    if not separator:
        return base, None
    info = CONDITIONS[base]
    if not info.behaviours:
        raise WorkbenchError(f"{name!r}: {base} scenarios are not narrowed by behaviour ({info.not_narrowed_because}); "
                             f"conditions narrowed by behaviour are {', '.join(NARROWED_CONDITIONS)}")
    if behaviour not in info.behaviours:
        valid = [f"{base}{BEHAVIOUR_SEPARATOR}{suffix}" for suffix in BEHAVIOURS if suffix in info.behaviours]
        raise WorkbenchError(f"unknown behaviour {behaviour!r} in {name!r}; behaviours are "
                             + " and ".join(f"{b.suffix} ({b.meaning})" for b in BEHAVIOURS.values())
                             + f": {', '.join(valid)}")
    return base, behaviour


def condition_label(name: str) -> str:
    """A condition's name for a pick list: ``lie``, or with what the model did, ``lie+false: the model lied``."""
    base, behaviour = parse_condition(name)
    return name if behaviour is None else f"{name}: the model {CONDITIONS[base].behaviours[behaviour]}"


def describe_narrowed_conditions() -> str:
    """The conditions narrowed by behaviour with their words, for help texts."""
    return ", ".join(f"{name} ({CONDITIONS[base].behaviours[behaviour]})"
                     for name in NARROWED_CONDITIONS for base, behaviour in [parse_condition(name)])


def expected_call(condition: str) -> str | None:
    """The response verdict expected on a scenario of this condition (None if not a known condition)."""
    info = CONDITIONS.get(condition)
    return info.expected_call if info else None


def check_conditions(names: Iterable[str], present: Iterable[str] | None = None, *, needed_by: str = "this",
                     behaviour: bool = False) -> None:
    """Every name is a condition of the table (with ``behaviour``, or one narrowed by behaviour:
    :func:`parse_condition`) and, when ``present`` is given (the conditions a scenario set holds), one whose
    condition the scenarios have; else a ``WorkbenchError`` naming the unknown or missing ones. (Whether any
    response shows the behaviour is known only once the responses are judged.)"""
    names = set(names)
    unknown = sorted(name for name in names if name not in CONDITIONS and BEHAVIOUR_SEPARATOR not in name)
    if unknown:
        raise WorkbenchError(f"unknown condition(s) {', '.join(unknown)}; conditions are {', '.join(CONDITIONS)}")
    narrowed = sorted(name for name in names if BEHAVIOUR_SEPARATOR in name)
    for name in narrowed:
        parse_condition(name)
    if narrowed and not behaviour:
        where = "here" if needed_by == "this" else f"by {needed_by}"
        raise WorkbenchError(f"conditions narrowed by behaviour ({', '.join(narrowed)}) are not taken {where}; "
                             f"use one of {', '.join(CONDITIONS)}")
    if present is not None:
        present = set(present)
        missing = sorted({parse_condition(name)[0] for name in names} - present)
        if missing:
            raise WorkbenchError(f"the scenarios have no {', '.join(missing)} scenarios, which {needed_by} needs "
                                 f"(present: {', '.join(ordered_conditions(present)) or 'none'})")
