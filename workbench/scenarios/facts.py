"""Facts a scenario can ask about, the kinds of fact (relations) and how prompts phrase them, and
how a generated answer is matched against a fact's answer (normalising, aliases, plurals, masking the
subject, a person's surname alone) or found asserted in a prompt.

A fact file may use any relation: the packaged ones (:data:`RELATIONS`, from ``data/relations.yaml``) have
their own phrasings, any other gets the generic phrasing made from its name (:func:`relation_for`: relation
``place_of_birth`` asks "What is the place of birth of {subject}?" and states "The place of birth of {subject}
is {answer}.").
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workbench.scenarios.records import FactFileError, read_records

__all__ = [
    "DEFAULT_FACTS_PATH", "DEFAULT_RELATIONS_PATH", "RELATIONS", "Fact", "Relation", "answer_matches", "asserted_in",
    "load_facts", "load_relations", "mask_subject", "normalise_answer", "relation_for", "surname",
]

@dataclass(frozen=True)
class Relation:
    """A kind of fact and how prompts talk about it."""

    name: str
    """Short name, used in fact ids (``capital``)."""
    questions: tuple[str, ...]
    """Question phrasings with a ``{subject}`` slot; each starts with a question word."""
    statement: str
    """A declarative sentence with ``{subject}`` and ``{answer}`` slots; ``{answer}`` comes last."""
    surnames: bool = True
    """Whether answers are people's names, so a surname alone states one (``Orwell``)."""


#: The packaged relations (their phrasings), beside ``facts.jsonl``.
DEFAULT_RELATIONS_PATH = Path(__file__).resolve().parents[1] / "data" / "relations.yaml"


class _RelationEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    questions: tuple[str, ...] = Field(min_length=1)
    statement: str = Field(min_length=1)
    surnames: bool = False

    @model_validator(mode="after")
    def _slots(self) -> _RelationEntry:
        if any("{subject}" not in q for q in self.questions):
            raise ValueError(f"relation {self.name}: every question needs a {{subject}} slot")
        if "{subject}" not in self.statement or not self.statement.rstrip(".").endswith("{answer}"):
            raise ValueError(f"relation {self.name}: the statement needs {{subject}} and ends with {{answer}}")
        return self


class _RelationFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    relations: tuple[_RelationEntry, ...] = Field(min_length=1)


def load_relations(path: str | os.PathLike[str] | None = None) -> dict[str, Relation]:
    """The relations of a YAML file (by default the packaged ones), by name."""
    import yaml
    from pydantic import ValidationError

    from workbench.core.errors import WorkbenchError

    path = Path(DEFAULT_RELATIONS_PATH if path is None else path)
    try:
        entries = _RelationFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).relations
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise WorkbenchError(f"cannot read the relations file {path}: {error}") from None
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise WorkbenchError(f"the relations file {path} names a relation twice")
    return {e.name: Relation(e.name, e.questions, e.statement, e.surnames) for e in entries}


#: The packaged relations, by name (``workbench/data/relations.yaml``).
RELATIONS: dict[str, Relation] = load_relations()

#: What a relation's name may be: lowercase words (letters, digits) joined by ``_``, ``-`` or single spaces.
_RELATION_NAME = re.compile(r"[a-z0-9]+(?:[ _-][a-z0-9]+)*")


@lru_cache(maxsize=256)
def relation_for(name: str) -> Relation:
    """How prompts phrase a relation: a packaged relation's own phrasings, or for any other the generic
    one made from its name (``place_of_birth``: "What is the place of birth of {subject}?" and "The place
    of birth of {subject} is {answer}."), with one question phrasing."""
    if name in RELATIONS:
        return RELATIONS[name]
    words = " ".join(re.split(r"[ _-]+", name))
    return Relation(name, (f"What is the {words} of {{subject}}?",), f"The {words} of {{subject}} is {{answer}}.")


#: The packaged facts about countries.
DEFAULT_FACTS_PATH = Path(__file__).resolve().parents[1] / "data" / "facts.jsonl"


class Fact(BaseModel):
    """One fact a scenario can ask about."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fact_id: str = Field(min_length=1)
    """``relation/subject-slug``, e.g. ``capital/france``."""
    relation: str
    """The kind of fact: one of :data:`RELATIONS`, or any other name in lowercase words (``author``,
    ``place_of_birth``), phrased generically (:func:`relation_for`)."""
    subject: str = Field(min_length=1)
    """The subject as it reads inside a sentence, with its article where English needs one
    (``the Netherlands``)."""
    answer: str = Field(min_length=1)
    """The correct answer, in the form used in statements (``Paris``, ``Japanese yen``)."""
    aliases: tuple[str, ...] = ()
    """Other spellings or names that also count as the correct answer (``Peking``)."""

    @model_validator(mode="after")
    def _check_relation(self) -> Fact:
        if not _RELATION_NAME.fullmatch(self.relation):
            raise ValueError(
                f"relation {self.relation!r} is not a name of lowercase words (letters and digits joined by '_', '-' "
                f"or one space), e.g. place_of_birth; the packaged relations are {', '.join(RELATIONS)}"
            )
        if not self.fact_id.startswith(f"{self.relation}/"):
            raise ValueError(f"fact_id {self.fact_id!r} must start with its relation ({self.relation}/)")
        return self

    @property
    def answer_forms(self) -> tuple[str, ...]:
        """The answer and its aliases."""
        return (self.answer, *self.aliases)

    def is_answered_by(self, answer_text: str) -> bool:
        """Whether a generated answer states this fact's answer (or an alias), not counting the
        subject itself ("South Africa is in Asia" does not answer "Africa")."""
        return answer_matches(mask_subject(answer_text, self.subject, self.answer_forms), self.answer, self.aliases)


def load_facts(path: str | os.PathLike[str] | None = None) -> list[Fact]:
    """Facts from a JSONL file; by default the packaged country facts."""
    return read_records(DEFAULT_FACTS_PATH if path is None else path, Fact, "fact_id", FactFileError)


# --------------------------------------------------------------------------- answers


@lru_cache(maxsize=4096)
def normalise_answer(text: str) -> str:
    """Case-folded, accent-free words separated by single spaces (punctuation becomes space)."""
    text = unicodedata.normalize("NFKD", text).casefold()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(" " if not ch.isalnum() else ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.split())


#: Answers of more words than this are free text: matched as they are, without plural or singular forms.
MAX_INFLECTED_WORDS = 4


def _plural(word: str) -> str:
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def _singular(word: str) -> str | None:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return None


@lru_cache(maxsize=4096)
def number_forms(normalised: str) -> tuple[str, ...]:
    """A normalised answer with its last word in the other number, by simple English rules (``euro``:
    ``euros``; ``pounds``: ``pound``; ``penny``: ``pennies``; ``franc``/``francs``), for answers of at most
    :data:`MAX_INFLECTED_WORDS` words whose last word is alphabetic and at least 3 letters; else just itself."""
    words = normalised.split()
    if not words or len(words) > MAX_INFLECTED_WORDS or len(words[-1]) < 3 or not words[-1].isalpha():
        return (normalised,) if normalised else ()
    last = words[-1]
    others = [_plural(last)]
    if (single := _singular(last)) is not None and len(single) >= 3:
        others.append(single)
    return (normalised, *(" ".join([*words[:-1], other]) for other in others))


def answer_matches(answer_text: str, expected: str, aliases: Iterable[str] = ()) -> bool:
    """Whether ``expected`` (or one of its ``aliases``), in either number, appears as whole words in
    ``answer_text``.

    Matching ignores case, accents, punctuation and spacing and the number of the last word
    (:func:`number_forms`): ``"It's Brasilia."`` matches ``"Brasília"``, ``"20 euros"`` matches ``"euro"``,
    but ``"Parisian"`` does not match ``"Paris"``.
    """
    haystack = f" {normalise_answer(answer_text)} "
    for form in (expected, *aliases):
        for needle in number_forms(normalise_answer(form)):
            if f" {needle} " in haystack:
                return True
    return False


#: Lowercase words a person's name may hold before the surname (``Ludwig van Beethoven``).
_NAME_PARTICLES = frozenset({"al", "bin", "da", "de", "del", "della", "der", "di", "du", "ibn", "la", "le", "van",
                             "von", "y"})
#: Last words of place names, never read as a surname (``Mexico City``, ``Solomon Islands``).
_PLACE_WORDS = frozenset({"bay", "city", "coast", "island", "islands", "kingdom", "lake", "mountains", "ocean",
                          "republic", "river", "sea", "states", "street", "town", "valley"})


def surname(answer: str) -> str | None:
    """The last word of an answer that reads as a person's name (two to four words, each capitalised or a
    particle such as ``van``, the last one capitalised, at least 4 letters and not a place word such as
    ``City``): ``Einstein`` for ``Albert Einstein``; None for anything else (``euro``, ``Paris``, ``Mexico
    City``, a sentence). A heuristic: the judge uses it only for relations whose answers are names
    (:attr:`Relation.surnames`)."""
    words = answer.split()
    if not 2 <= len(words) <= MAX_INFLECTED_WORDS:
        return None
    last = words[-1]
    if not (last[:1].isupper() and sum(ch.isalpha() for ch in last) >= 4
            and all(ch.isalpha() or ch in "-'’" for ch in last) and last.casefold() not in _PLACE_WORDS):
        return None
    if not all(w[:1].isupper() or w in _NAME_PARTICLES for w in words[:-1]):
        return None
    return last


def _word_spans(words: list[str], needle: list[str]) -> list[tuple[int, int]]:
    n = len(needle)
    return [(i, i + n) for i in range(len(words) - n + 1) if n and words[i : i + n] == needle]


def mask_subject(answer: str, subject: str, answer_forms: Sequence[str] = ()) -> str:
    """``answer`` (normalised) with the fact's subject masked out as whole words, except where it
    is part of an answer form that contains it ("Singapore dollar" keeps "Singapore"; in "South
    Africa is in Asia" the subject goes, so "Africa" is not read as an answer)."""
    words = normalise_answer(answer).split()
    subject_words = normalise_answer(subject).split()
    protected: set[int] = set()
    for form in answer_forms:
        form_words = normalise_answer(form).split()
        if len(form_words) > len(subject_words) and _word_spans(form_words, subject_words):
            for start, end in _word_spans(words, form_words):
                protected.update(range(start, end))
    for start, end in _word_spans(words, subject_words):
        if not protected.intersection(range(start, end)):
            words[start:end] = ["_"] * (end - start)  # a separator: masked words never join a form
    return " ".join(words)


def confusable(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether any form in ``a`` and any in ``b`` contain each other (as words or as text)."""
    for x in a:
        for y in b:
            if answer_matches(x, y) or answer_matches(y, x):
                return True
            if x.casefold() in y.casefold() or y.casefold() in x.casefold():
                return True
    return False


# --------------------------------------------------------------------------- answers in a prompt

#: Where a text breaks into statements: after a sentence's end (with any closing quote or bracket), but not
#: after an option label such as ``A.``; and at line breaks.
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\s[A-Za-z0-9]\.)(?<!^[A-Za-z0-9]\.)[\"'”’)\]]*\s+|\n+")
#: Labels that start an option of a multiple-choice question: ``(A)``, ``A)``, ``A.``, ``1)``, ``-``, ``*``.
_OPTION_LABEL = re.compile(r"(?:^|\s)(?:\([A-Za-z0-9]\)|[A-Za-z0-9][.)]|[-*•])\s+")
#: Words that introduce a list of options (``Options: Paris, Lyon or Rome``).
_OPTIONS_INTRO = re.compile(r"^\s*(?:options|choices|choose from|pick one of|candidates)\b", re.IGNORECASE)
#: Options are short: a labelled item of more words than this is read as a statement.
_MAX_OPTION_WORDS = 4


def _is_options(segment: str, after_question: bool) -> bool:
    """Whether a segment lists the options of a question rather than stating something: it starts with
    ``Options:`` (or the like), or it follows a question and every item in it is a short labelled one."""
    if _OPTIONS_INTRO.match(segment):
        return True
    padded = " " + segment.strip()
    if not after_question or not _OPTION_LABEL.match(padded):
        return False
    items = [item for item in _OPTION_LABEL.split(padded) if item.strip()]
    return all(len(item.split()) <= _MAX_OPTION_WORDS for item in items)


def asserted_in(text: str, answer: str) -> str | None:
    """The statement in ``text`` that asserts ``answer``, or None: the first sentence (or line) that holds
    it as whole words (:func:`answer_matches`: case, accents and punctuation aside) and is neither a question
    (it ends with ``?``) nor the options of one (``(A) Paris (B) Lyon`` or lines ``- Lyon`` after a question,
    ``Options: ...``).

    An approximation of "the context asserts it": ``King`` is not asserted by "thinking", nor ``Lyon`` by
    "Is the capital Paris or Lyon?", but "The capital is Lyon." and "My friend says it is Lyon." assert it.
    """
    after_question = False
    for segment in _SENTENCE_END.split(text):
        stripped = segment.strip().rstrip("\"'”’)]").rstrip()
        if not stripped:
            continue
        if stripped.endswith("?"):
            after_question = True
            continue
        if _is_options(segment, after_question):
            continue
        if answer_matches(stripped, answer):
            return stripped
    return None
