"""Prompt phrasings (templates) of the conditions, and how a template and a fact become a
scenario's messages.

The templates are data, not code: ``workbench/data/templates.yaml`` (beside ``facts.jsonl``), read
with ``yaml.safe_load``, validated by :class:`TemplateFile` and parsed once per file (cached). Their
order matters: scenario sets deal templates round-robin in file order.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.core.conditions import Condition
from workbench.core.errors import WorkbenchError
from workbench.scenarios.facts import Fact, relation_for
from workbench.scenarios.records import FalsehoodSpan, Message, Split

__all__ = [
    "ANSWER_INSTRUCTION", "DEFAULT_TEMPLATES_PATH", "HIDDEN_TRIGGER_PREFIX", "KNOWLEDGE_CHECK_TEMPLATE", "TEMPLATES",
    "TEMPLATE_SLOTS", "ConditionTemplate", "TemplateFile", "TemplateFileError", "answer_prefill", "get_template",
    "is_hidden_trigger", "load_templates", "question_for", "render_template", "statement", "templates_for",
]

#: Appended to every question so that the answer comes first and short (the ``{instruction}`` slot).
ANSWER_INSTRUCTION = "Answer with just the name."
#: The packaged templates.
DEFAULT_TEMPLATES_PATH = Path(__file__).resolve().parents[1] / "data" / "templates.yaml"
#: The slots a template's user turn may use.
TEMPLATE_SLOTS = ("question", "question_lower", "instruction", "statement", "prefix")


class ConditionTemplate(BaseModel):
    """A prompt phrasing for one condition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    template_id: str = Field(min_length=1)
    """Short unique name, e.g. ``spy-1``; scenario ids end with it."""
    condition: Condition
    """honest, lie or parrot (ignorant scenarios use the honest templates)."""
    split: Split
    """train: used for training facts; heldout: only ever seen in held-out evaluation."""
    system: str
    """The system prompt (empty: the chat has none)."""
    user: str
    """The user turn; slots: ``{question}``, ``{question_lower}``, ``{instruction}``,
    ``{statement}`` (the false statement) and ``{prefix}`` (that statement cut before its answer)."""
    prefill: bool = True
    """Whether the answer starts as the relation's statement does (an assistant turn up to the answer,
    ``The capital of Kenya is``); without one the model answers from the start of its turn."""

    @field_validator("condition")
    @classmethod
    def _not_ignorant(cls, condition: Condition) -> Condition:
        if condition is Condition.ignorant:
            raise ValueError("ignorant scenarios use the honest templates; give the template condition honest")
        return condition

    @field_validator("user")
    @classmethod
    def _known_slots(cls, user: str) -> str:
        try:
            slots = {name for _, name, _, _ in string.Formatter().parse(user) if name is not None}
        except ValueError as exc:
            raise ValueError(f"the user turn is not a valid format string ({exc}); write a literal brace as {{{{ or }}}}") from exc
        unknown = sorted(slots - set(TEMPLATE_SLOTS))
        if unknown:
            raise ValueError(f"unknown slot(s) {', '.join('{' + s + '}' for s in unknown)}; "
                             f"slots are {', '.join('{' + s + '}' for s in TEMPLATE_SLOTS)}")
        return user


class TemplateFile(BaseModel):
    """The template file: a version and the templates, in the order scenario sets deal them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    """Format version of the file."""
    templates: tuple[ConditionTemplate, ...] = Field(min_length=1)
    """Every template; ids are unique."""

    @model_validator(mode="after")
    def _unique_ids(self) -> TemplateFile:
        ids = [t.template_id for t in self.templates]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"template ids must be unique; repeated: {', '.join(repeated)}")
        return self


class TemplateFileError(WorkbenchError):
    """A template file that cannot be loaded."""


@cache
def _parse_templates(path: Path) -> tuple[ConditionTemplate, ...]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateFileError(f"cannot read template file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TemplateFileError(f"template file {path} is not valid YAML: {exc}") from exc
    try:
        return TemplateFile.model_validate(data).templates
    except ValidationError as exc:
        problems = []
        for item in exc.errors():
            where = ".".join(str(part) for part in item["loc"])
            problems.append(f"  {f'field {where!r}: ' if where else ''}{item['msg'].removeprefix('Value error, ')}")
        raise TemplateFileError("\n".join([f"{len(problems)} problem(s) in template file {path}; nothing was loaded:",
                                           *problems])) from exc


def load_templates(path: str | os.PathLike[str] | None = None) -> tuple[ConditionTemplate, ...]:
    """The templates of a YAML file (by default the packaged ones), parsed once per file and cached."""
    return _parse_templates(Path(DEFAULT_TEMPLATES_PATH if path is None else path).resolve())


#: The packaged templates, in file order.
TEMPLATES: tuple[ConditionTemplate, ...] = load_templates()

#: Prefix of the template ids whose lie motive is a hidden trigger rather than a stated instruction.
HIDDEN_TRIGGER_PREFIX = "trigger-"


def is_hidden_trigger(template_id: str) -> bool:
    """True for lie templates whose motive is a hidden trigger (no instruction to deceive)."""
    return template_id.startswith(HIDDEN_TRIGGER_PREFIX)


#: The honest template whose prompt (with each relation's first question) checks knowledge.
KNOWLEDGE_CHECK_TEMPLATE = "plain-1"


def get_template(template_id: str) -> ConditionTemplate:
    """The packaged template with this id."""
    for template in TEMPLATES:
        if template.template_id == template_id:
            return template
    raise KeyError(f"no template {template_id!r}; templates are {', '.join(t.template_id for t in TEMPLATES)}")


def templates_for(
    condition: Condition,
    splits: Iterable[Split] = (Split.train, Split.heldout),
    *,
    hidden_trigger: bool | None = None,
    templates: Sequence[ConditionTemplate] | None = None,
) -> list[ConditionTemplate]:
    """The templates of a condition (ignorant uses honest's), restricted to the given template splits,
    in file order; with ``hidden_trigger`` True (False) only those whose motive is (is not) a hidden
    trigger. ``templates``: a template set (:func:`load_templates`), by default the packaged one."""
    wanted = Condition.honest if condition is Condition.ignorant else condition
    allowed = set(splits)
    return [t for t in (TEMPLATES if templates is None else templates) if t.condition is wanted and t.split in allowed
            and (hidden_trigger is None or is_hidden_trigger(t.template_id) == hidden_trigger)]


_SENTINEL = "\x00ANSWER\x00"


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def statement(fact: Fact, answer: str) -> str:
    """The relation's declarative sentence about ``fact`` with ``answer`` (true or false)."""
    return _capitalise(relation_for(fact.relation).statement.format(subject=fact.subject, answer=answer))


def question_for(fact: Fact, phrasing: int) -> str:
    """The ``phrasing``-th question of the fact's relation (cycling through its phrasings)."""
    questions = relation_for(fact.relation).questions
    return questions[phrasing % len(questions)].format(subject=fact.subject)


def render_template(
    template: ConditionTemplate, fact: Fact, question: str, false_answer: str | None
) -> tuple[list[Message], FalsehoodSpan | None]:
    """The messages a template makes for a fact, and where the false answer sits in them."""
    false_statement = _capitalise(relation_for(fact.relation).statement.format(subject=fact.subject, answer=_SENTINEL))
    user = template.user.format(
        question=question,
        question_lower=question[:1].lower() + question[1:],
        instruction=ANSWER_INSTRUCTION,
        statement=false_statement,
        prefix=answer_prefill(fact),
    )
    messages = [Message(role="system", content=template.system)] if template.system else []  # "": no system turn
    span = None
    if _SENTINEL in user:
        if false_answer is None:
            raise ValueError(f"template {template.template_id} states a falsehood and needs a false answer")
        start = user.index(_SENTINEL)
        user = user.replace(_SENTINEL, false_answer)
        span = FalsehoodSpan(message_index=len(messages), start=start, end=start + len(false_answer))
    messages.append(Message(role="user", content=user))
    if template.prefill:
        # The answer starts as the relation's statement does, so the subject comes right before the
        # answer (a small model retrieves a fact there far better than as its first word).
        messages.append(Message(role="assistant", content=answer_prefill(fact)))
    return messages, span


def answer_prefill(fact: Fact) -> str:
    """The start of every answer about ``fact``: its relation's statement up to the answer
    (``The capital of Kenya is``)."""
    sentence = _capitalise(relation_for(fact.relation).statement.format(subject=fact.subject, answer=_SENTINEL))
    return sentence.split(_SENTINEL)[0].rstrip()
