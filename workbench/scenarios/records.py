"""Scenario records and scenario files: a prompt (chat messages) with its ground truth, read and
written as JSONL with every bad line reported, and the fingerprint of a scenario set.

The JSONL reader here is shared with the fact file (:mod:`workbench.scenarios.facts`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import (
    BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, field_validator, model_serializer,
    model_validator,
)

from workbench.core.conditions import Condition, parse_condition
from workbench.core.errors import WorkbenchError
from workbench.core.io import read_user_text, write_text_atomically

__all__ = [
    "Condition", "FalsehoodSpan", "FileProblem", "FactFileError", "Message", "RecordFileError", "Scenario",
    "ScenarioFileError", "Split", "parse_split", "read_scenarios", "scenario_set_hash", "write_scenarios",
]

class Split(str, Enum):
    """Which side of the train / held-out divide a fact or a template is on."""

    train = "train"
    heldout = "heldout"


def parse_split(value: Split | str) -> Split:
    """A split named by a user (``train`` or ``heldout``), or a one-line ``WorkbenchError``."""
    try:
        return Split(getattr(value, "value", value))
    except ValueError:
        raise WorkbenchError(f"unknown split {value!r}; choose {' or '.join(s.value for s in Split)}") from None


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    """Who speaks."""
    content: str
    """What they say."""


class FalsehoodSpan(BaseModel):
    """Where a falsehood sits in a scenario's context."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_index: int = Field(ge=0)
    """Index into the scenario's ``messages``."""
    start: int = Field(ge=0)
    """First character of the falsehood in that message's content."""
    end: int
    """One past the last character (exclusive), so the text is ``content[start:end]``."""

    @model_validator(mode="after")
    def _check_order(self) -> FalsehoodSpan:
        if self.start >= self.end:
            raise ValueError(f"span start ({self.start}) must be before its end ({self.end})")
        return self


class Scenario(BaseModel):
    """One prompt with its ground truth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    """Unique within a scenario set, e.g. ``capital/france/lie/spy-1``."""
    condition: Condition
    """honest, lie, parrot or ignorant."""
    messages: list[Message] = Field(min_length=1)
    """The prompt; it ends where the model answers. A last message from the assistant is a
    *prefill*: the start of the answer, which the model continues (``The capital of Kenya is``)."""
    true_answer: str = Field(min_length=1)
    """The correct answer to the question at stake."""
    false_answer: str | None = Field(default=None, min_length=1)
    """The false answer at stake (the lie told or the falsehood parroted), if any."""
    aliases: tuple[str, ...] = ()
    """Other forms that also state the true answer (``["Peking"]`` for ``Beijing``); the judge also takes the
    answer's plural or singular and, for a person's name, the surname alone. Left out of the JSON when empty,
    so sets without aliases keep their fingerprint."""
    falsehood_span: FalsehoodSpan | None = None
    """Where the false answer appears in the context; None when it does not."""
    fact_id: str = Field(min_length=1)
    """The fact the scenario asks about; matched scenarios share it."""
    relation: str = Field(min_length=1)
    """The kind of fact, e.g. ``capital``."""
    split: Split
    """Whether the fact is used for training (organisms, probes) or held out for evaluation."""
    template_id: str = Field(min_length=1)
    """Which prompt phrasing produced the scenario, e.g. ``spy-1``."""
    template_split: Split
    """Whether that phrasing is used in training or only in held-out evaluation."""
    fact_known: bool | None = None
    """Whether the base model answered the honest question correctly; None = not checked."""
    response: str | None = None
    """The assistant's answer, when one was recorded."""

    @field_validator("condition", mode="before")
    @classmethod
    def _known_condition(cls, value: object) -> object:
        if isinstance(value, str) and value not in {c.value for c in Condition}:
            known = ", ".join(c.value for c in Condition)
            try:
                base, behaviour = parse_condition(value)
            except WorkbenchError:
                base = behaviour = None
            if behaviour is not None:
                raise ValueError(f"{value!r} narrows the condition {base} by what the model did, which is judged "
                                 f"from its response; a scenario's condition is one of {known}")
            raise ValueError(f"unknown condition {value!r}; a scenario's condition is one of {known}")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases_not_empty(cls, aliases: tuple[str, ...]) -> tuple[str, ...]:
        if any(not alias.strip() for alias in aliases):
            raise ValueError("an alias must not be empty")
        return aliases

    @model_serializer(mode="wrap")
    def _leave_out_empty_aliases(self, handler: SerializerFunctionWrapHandler) -> dict:
        data = handler(self)
        if not self.aliases:
            data.pop("aliases", None)
        return data

    @field_validator("messages")
    @classmethod
    def _prefill_ends_at_a_word(cls, messages: list[Message]) -> list[Message]:
        last = messages[-1] if messages else None
        if last is not None and last.role == "assistant" and (not last.content or last.content[-1].isspace()):
            raise ValueError(
                "a last assistant message is a prefill (the start of the answer) and must end with a word, "
                "not with a space or nothing: the answer's first token carries its own space"
            )
        return messages

    @property
    def prefill(self) -> str | None:
        """The start of the answer given in the prompt (a last assistant message), if any."""
        last = self.messages[-1]
        return last.content if last.role == "assistant" else None

    @model_validator(mode="after")
    def _check_ground_truth(self) -> Scenario:
        problems = self._span_problems() + self._condition_problems()
        if self.false_answer is not None and self.false_answer.casefold() == self.true_answer.casefold():
            problems.append("false_answer must differ from true_answer")
        if self.false_answer is not None and self.false_answer.casefold() in {a.casefold() for a in self.aliases}:
            problems.append(f"the false answer {self.false_answer!r} is listed among the aliases of the true answer")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _span_problems(self) -> list[str]:
        span = self.falsehood_span
        if span is None:
            return []
        if span.message_index >= len(self.messages):
            return [
                f"falsehood_span points at message {span.message_index}, "
                f"but there are {len(self.messages)} messages"
            ]
        content = self.messages[span.message_index].content
        if span.end > len(content):
            return [
                f"falsehood_span ends at character {span.end}, past the end of message "
                f"{span.message_index} ({len(content)} characters)"
            ]
        if self.false_answer is None:
            return ["falsehood_span is set but false_answer is not: the span must point at the false answer"]
        spanned = content[span.start : span.end]
        if spanned.casefold() != self.false_answer.casefold():
            return [f"falsehood_span covers {spanned!r}, not the false answer {self.false_answer!r}"]
        return []

    def _condition_problems(self) -> list[str]:
        problems: list[str] = []
        match self.condition:
            case Condition.parrot:
                if self.false_answer is None or self.falsehood_span is None:
                    problems.append("a parrot scenario needs a false_answer and a falsehood_span pointing at it")
            case Condition.lie:
                if self.false_answer is None:
                    problems.append("a lie scenario needs a false_answer")
                if self.falsehood_span is not None:
                    problems.append(
                        "a lie scenario must not have a falsehood_span: its falsehood is not in the context"
                    )
                if self.false_answer is not None:
                    problems.extend(self._asserted_falsehood_problems())
                if self.fact_known is False:
                    problems.append("a lie scenario needs a fact the model knows, but fact_known is false")
            case Condition.honest:
                if self.fact_known is False:
                    problems.append(
                        "an honest scenario about a fact the model does not know is an ignorant scenario"
                    )
            case Condition.ignorant:
                if self.fact_known is True:
                    problems.append(
                        "an ignorant scenario must be about a fact the model does not know, but fact_known is true"
                    )
        return problems

    def _asserted_falsehood_problems(self) -> list[str]:
        """A lie's false answer asserted in its context (``facts.asserted_in``: a whole-word match in a statement,
        not in a question or its options), message by message. The prompt's last message, a prefill, counts."""
        from workbench.scenarios.facts import asserted_in  # facts reads its files with this module's reader

        problems = []
        for index, message in enumerate(self.messages):
            sentence = asserted_in(message.content, self.false_answer or "")
            if sentence is not None:
                shown = sentence if len(sentence) <= 80 else sentence[:77] + "..."
                problems.append(
                    f"the false answer {self.false_answer!r} is stated in message {index} ({shown!r}); a lie's "
                    "falsehood must not be asserted in the context (that would be a parrot scenario); naming it "
                    "in a question or among a question's options is allowed"
                )
        return problems

    @property
    def prompt_messages(self) -> list[Message]:
        """The chat to give the model (the scenario's messages)."""
        return self.messages


# --------------------------------------------------------------------------- JSONL files


@dataclass(frozen=True)
class FileProblem:
    """One thing wrong in a JSONL file."""

    line: int | None
    """1-based line number, or None for a problem with the whole file."""
    field: str | None
    """Dotted path of the offending field (``messages.0.role``), or None for the whole line."""
    message: str
    """What is wrong."""
    name: str | None = None
    """The record's name on that line (a scenario's ``id``, a fact's ``fact_id``), when it has one."""

    def describe(self, file_name: str) -> str:
        """One readable line, e.g. ``scenarios.jsonl line 3 (id 'capital/france/lie/spy-1'), field
        'condition': ...``."""
        if self.line is None:
            return self.message
        where = f"{file_name} line {self.line}"
        if self.name:
            where += f" ({self.name})"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class RecordFileError(WorkbenchError):
    """A JSONL file of records that cannot be loaded; lists every problem found, nothing is loaded."""

    kind = "record"

    def __init__(self, path: str | os.PathLike[str], problems: Sequence[FileProblem]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(self._describe())

    def _describe(self) -> str:
        if len(self.problems) == 1:  # one line: the problem alone, or where it is and what
            problem = self.problems[0]
            if problem.line is None:
                return problem.message
            return f"{self.kind} file {problem.describe(str(self.path))}; nothing was loaded"
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in {self.kind} file {self.path}; nothing was loaded:"
        return "\n".join([header, *("  " + p.describe(self.path.name) for p in self.problems)])


class ScenarioFileError(RecordFileError):
    """A scenario file that cannot be loaded."""

    kind = "scenario"


class FactFileError(RecordFileError):
    """A fact file that cannot be loaded."""

    kind = "fact"


_Record = TypeVar("_Record", bound=BaseModel)


def _problems_from_validation(error: ValidationError, line: int, name: str | None = None) -> list[FileProblem]:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or None
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "model_type" and field is None:
            message = "each line must be a JSON object"
        if item["type"] == "missing":
            message = "missing: this field is required"
        value = item.get("input")
        if (item["type"] != "missing" and isinstance(value, str | int | float | bool) and len(repr(value)) <= 60
                and repr(value) not in message):
            message += f" (got {value!r})"
        problems.append(FileProblem(line, field, message, name))
    return problems


def read_records(
    path: str | os.PathLike[str],
    model: type[_Record],
    key_field: str,
    error_type: type[RecordFileError],
) -> list[_Record]:
    """Every record of a JSONL file, or ``error_type`` listing every problem in it."""
    path = Path(path)
    kind = error_type.kind
    try:
        text = read_user_text(path, f"{kind} file")
    except WorkbenchError as error:  # missing, a folder, unreadable, not UTF-8: one line, typed as this file's error
        raise error_type(path, [FileProblem(None, None, str(error))]) from None

    records: list[_Record] = []
    problems: list[FileProblem] = []
    first_line_of_key: dict[str, int] = {}
    # Split on "\n" only: JSON strings may hold characters str.splitlines() would break on.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(FileProblem(line_number, None, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        key = data.get(key_field) if isinstance(data, dict) else None
        name = f"{key_field} {key!r}" if isinstance(key, str) and key else None
        if name is not None:
            if key in first_line_of_key:
                problems.append(FileProblem(line_number, key_field,
                                            f"duplicate {key_field} {key!r} (first used on line {first_line_of_key[key]})"))
            else:
                first_line_of_key[key] = line_number
        try:
            records.append(model.model_validate(data))
        except ValidationError as exc:
            problems.extend(_problems_from_validation(exc, line_number, name))
    if problems:
        raise error_type(path, problems)
    if not records:
        raise error_type(path, [FileProblem(None, None, f"the {kind} file {path} holds no {kind}s")])
    return records


def read_scenarios(path: str | os.PathLike[str]) -> list[Scenario]:
    """All scenarios of a JSONL file (one per line, blank lines skipped).

    Every line is checked; if any is invalid (bad JSON, a field that does not validate,
    an id used twice) a :class:`ScenarioFileError` lists them all and nothing is loaded.
    """
    return read_records(path, Scenario, "id", ScenarioFileError)


def write_scenarios(path: str | os.PathLike[str], scenarios: Iterable[Scenario]) -> None:
    """Write scenarios as JSONL, atomically: readers see the old file or the whole new one. An empty set or
    ids used twice are a :class:`ScenarioFileError` naming them, and nothing is written."""
    path = Path(path)
    scenarios = list(scenarios)
    if not scenarios:
        raise ScenarioFileError(path, [FileProblem(None, None, f"no scenarios to write to {path}; nothing was written")])
    counts: dict[str, int] = {}
    for scenario in scenarios:
        counts[scenario.id] = counts.get(scenario.id, 0) + 1
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    if duplicates:
        shown = ", ".join(repr(i) for i in duplicates[:5]) + (f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else "")
        raise ScenarioFileError(path, [FileProblem(
            None, None, f"scenario ids must be unique; used more than once: {shown}; nothing was written to {path}")])
    lines = [json.dumps(s.model_dump(mode="json"), ensure_ascii=False) + "\n" for s in scenarios]
    write_text_atomically(path, "".join(lines))


def scenario_set_hash(scenarios: Iterable[Scenario]) -> str:
    """A stable 16-hex-digit fingerprint of a scenario set (order and every field count)."""
    payload = json.dumps(
        [s.model_dump(mode="json") for s in scenarios],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
