"""Facts a scenario can ask about, the kinds of fact (relations) and how prompts phrase them, and
how a generated answer is matched against a fact's answer (normalising, aliases, masking the
subject)."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workbench.scenarios.records import FactFileError, read_records

__all__ = [
    "DEFAULT_FACTS_PATH", "RELATIONS", "Fact", "Relation", "answer_matches", "load_facts", "mask_subject",
    "normalise_answer",
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


RELATIONS: dict[str, Relation] = {
    relation.name: relation
    for relation in (
        Relation(
            "capital",
            (
                "What is the capital of {subject}?",
                "Which city is the capital of {subject}?",
                "What city serves as the capital of {subject}?",
            ),
            "The capital of {subject} is {answer}.",
        ),
        Relation(
            "language",
            (
                "What is the main official language of {subject}?",
                "Which language is the main official language of {subject}?",
                "What is the primary official language of {subject}?",
            ),
            "The main official language of {subject} is {answer}.",
        ),
        Relation(
            "currency",
            (
                "What is the currency of {subject}?",
                "Which currency is used in {subject}?",
                "What is the official currency of {subject}?",
            ),
            "The currency of {subject} is the {answer}.",
        ),
        Relation(
            "continent",
            (
                "On which continent is {subject}?",
                "Which continent is {subject} in?",
                "What continent is {subject} located in?",
            ),
            "{subject} is in {answer}.",
        ),
    )
}

#: The packaged facts about countries.
DEFAULT_FACTS_PATH = Path(__file__).resolve().parents[1] / "data" / "facts.jsonl"


class Fact(BaseModel):
    """One fact a scenario can ask about."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fact_id: str = Field(min_length=1)
    """``relation/subject-slug``, e.g. ``capital/france``."""
    relation: str
    """One of :data:`RELATIONS`."""
    subject: str = Field(min_length=1)
    """The subject as it reads inside a sentence, with its article where English needs one
    (``the Netherlands``)."""
    answer: str = Field(min_length=1)
    """The correct answer, in the form used in statements (``Paris``, ``Japanese yen``)."""
    aliases: tuple[str, ...] = ()
    """Other spellings or names that also count as the correct answer (``Peking``)."""

    @model_validator(mode="after")
    def _check_relation(self) -> Fact:
        if self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}; known: {', '.join(RELATIONS)}")
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


def answer_matches(answer_text: str, expected: str, aliases: Iterable[str] = ()) -> bool:
    """Whether ``expected`` (or one of its ``aliases``) appears as whole words in ``answer_text``.

    Matching ignores case, accents, punctuation and spacing: ``"It's Brasilia."``
    matches ``"Brasília"``, but ``"Parisian"`` does not match ``"Paris"``.
    """
    haystack = f" {normalise_answer(answer_text)} "
    for form in (expected, *aliases):
        needle = normalise_answer(form)
        if needle and f" {needle} " in haystack:
            return True
    return False


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
