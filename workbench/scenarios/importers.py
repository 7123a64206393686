"""Public datasets in, as scenario sets (``scenarios import``): a statement CSV (``statement,label``, as
Geometry of Truth and Truth is Universal publish them) or TruthfulQA's CSV becomes *matched* honest /
lie / parrot scenarios per fact, split into train and held-out facts, as ``scenarios build`` makes from
the packaged facts.

How a file becomes facts (one registry, :data:`FORMATS`):

- ``statements``, **pairs**: when the file names, beside a column ``X``, its correct value ``correct_X``
  (Geometry of Truth's ``cities.csv``: ``city,country,correct_country``), every statement ends with its
  ``X`` and its label says exactly whether ``X`` is the correct one, the sentences are completed: the
  fact is the sentence up to ``X`` (``The city of Porto is in``, also the answer's prefill, as in the
  project's own scenarios), its true answer ``correct_X``, its false answer the ``X`` of a false
  statement about the same sentence (else another fact's true answer). Anything else (negated
  statements such as ``neg_cities.csv``, files with ``statement,label`` alone) is read as yes/no.
- ``statements``, **yes/no**: every statement is a fact to affirm or deny: ``Is it true that ...?``
  with the true answer ``Yes`` for label 1 and ``No`` for label 0; the parrot prompt asserts the
  opposite (``No, it is not true that ...``). No prefill: the answer is the model's first word.
- ``truthfulqa``: a question is a fact; true answer its ``Best Answer`` (``Correct Answers`` are kept
  out of the false answers and become the scenario's ``aliases``), false answer its ``Best
  Incorrect Answer`` where the file has that column, else its first ``Incorrect Answers`` entry that
  cannot be mistaken for a correct one. No prefill: the answer is free text, judged by whether it
  states an answer's words (``facts.answer_matches``), so a paraphrase counts as neither.

The prompts are the project's templates (``data/templates.yaml``): train facts get train templates,
held-out facts all of them, dealt round-robin in a seeded order; a lie motive comes from the lie
templates, the parrot context from the parrot templates. A fact is left out, and said so, when no
template gives it a valid lie or parrot scenario (a lie whose context asserts its false answer). Fact ids are the
relation (the file's name) and a hash of the row's text, so they do not depend on the seed, the row
order or other rows; scenario ids add the condition and template, as ``scenarios build`` does.

Every problem in the file (missing columns, a label not 0/1, an empty answer, a duplicate row, a row
with the wrong number of fields, not UTF-8) is found before anything is made, and reported on one
line with the file and line numbers (:class:`ImportFileError`); the caller writes the result
atomically (``records.write_scenarios``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from workbench.core.conditions import Condition
from workbench.core.errors import WorkbenchError, check_number
from workbench.core.io import read_user_text
from workbench.scenarios.building import split_facts
from workbench.scenarios.facts import confusable
from workbench.scenarios.records import FalsehoodSpan, FileProblem, Message, Scenario, Split
from workbench.scenarios.templates import ConditionTemplate, templates_for

__all__ = [
    "FORMATS", "IMPORTED_CONDITIONS", "ImportFileError", "ImportFormat", "ImportResult", "ImportedFact",
    "import_scenarios", "scenarios_from_facts",
]

#: The conditions every imported fact gets, one scenario each, in this order.
IMPORTED_CONDITIONS = (Condition.honest, Condition.lie, Condition.parrot)
#: The answers of a yes/no fact.
YES, NO = "Yes", "No"
#: What each kind of question asks for (the templates' ``{instruction}`` slot). The yes/no one names
#: neither answer: a lie's false answer must not be in its prompt.
PAIR_INSTRUCTION = "Answer with just the missing words."
YES_NO_INSTRUCTION = "Answer in one word."
OPEN_INSTRUCTION = "Answer in one sentence."
#: Problems listed in an error before the rest are counted.
_SHOWN_PROBLEMS = 8


class ImportFileError(WorkbenchError):
    """A file to import that cannot be read: every problem found, on one line; nothing is written."""

    def __init__(self, path: str | os.PathLike[str], what: str, problems: Sequence[FileProblem]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__(self._describe(what))

    def _describe(self, what: str) -> str:
        def where(problem: FileProblem) -> str:
            field = f", field '{problem.field}'" if problem.field else ""
            return f"line {problem.line}{field}: {problem.message}" if problem.line is not None else problem.message

        if len(self.problems) == 1:
            problem = self.problems[0]
            if problem.line is None:
                return problem.message
            return f"{what} {self.path} {where(problem)}; nothing was written"
        shown = "; ".join(where(p) for p in self.problems[:_SHOWN_PROBLEMS])
        rest = len(self.problems) - _SHOWN_PROBLEMS
        more = f"; and {rest} more" if rest > 0 else ""
        return f"{len(self.problems)} problems in {what} {self.path}; nothing was written: {shown}{more}"


# --------------------------------------------------------------------------- facts and their scenarios


@dataclass(frozen=True)
class ImportedFact:
    """One fact read from a file: what is asked, the true and the false answer at stake, and the false
    statement a parrot prompt asserts."""

    fact_id: str
    """``relation/hash-of-the-row``: the same row gives the same id whatever else the file holds."""
    relation: str
    """The kind of fact: the file's name, or the name given."""
    line: int
    """The file line the fact comes from (its first row)."""
    question: str
    """What the prompts ask (the templates' ``{question}``)."""
    instruction: str
    """How to answer (the templates' ``{instruction}``)."""
    true_answer: str
    """The correct answer (a completion, ``Yes``/``No``, or a sentence)."""
    false_answer: str
    """The false answer at stake: what a lie would say and what the parrot prompt asserts."""
    false_statement: tuple[str, str]
    """The statement a parrot prompt asserts, as the text before and after the false answer in it."""
    prefill: str | None = None
    """The start of the answer (the sentence up to it), or None: the model answers from scratch."""
    aliases: tuple[str, ...] = ()
    """Other ways to state the true answer (TruthfulQA's ``Correct Answers``), for the answer judge."""


_FALSE_SLOT = "\x00FALSE\x00"


def _lower_first(text: str) -> str:
    """The text with its first letter in lower case, unless its first word is an acronym (``MSG``)."""
    first = text.split(" ", 1)[0]
    return text if len(first) > 1 and first[1].isupper() else text[:1].lower() + text[1:]


def _messages(template: ConditionTemplate, fact: ImportedFact) -> tuple[list[Message], FalsehoodSpan | None]:
    """A template's prompt for an imported fact, and where the false answer sits in it."""
    before, after = fact.false_statement
    user = template.user.format(
        question=fact.question, question_lower=_lower_first(fact.question), instruction=fact.instruction,
        statement=before + _FALSE_SLOT + after, prefix=fact.prefill or "",
    )
    span = None
    if _FALSE_SLOT in user:
        start = user.index(_FALSE_SLOT)
        user = user.replace(_FALSE_SLOT, fact.false_answer)
        span = FalsehoodSpan(message_index=1, start=start, end=start + len(fact.false_answer))
    messages = [Message(role="system", content=template.system), Message(role="user", content=user)]
    if fact.prefill is not None:
        messages.append(Message(role="assistant", content=fact.prefill))
    return messages, span


def _scenario(fact: ImportedFact, condition: Condition, template: ConditionTemplate, split: Split) -> Scenario:
    """One scenario (validated: a ``ValidationError`` where the template cannot serve this fact)."""
    messages, span = _messages(template, fact)
    return Scenario(
        id=f"{fact.fact_id}/{condition.value}/{template.template_id}", condition=condition, messages=messages,
        true_answer=fact.true_answer, false_answer=fact.false_answer, falsehood_span=span, fact_id=fact.fact_id,
        relation=fact.relation, split=split, template_id=template.template_id, template_split=template.split,
        aliases=fact.aliases,
    )


def _templates(condition: Condition, fact: ImportedFact, splits: Sequence[Split]) -> list[ConditionTemplate]:
    """The templates of a condition that can phrase the fact (one that continues a prefix needs one)."""
    return [t for t in templates_for(condition, splits) if fact.prefill is not None or "{prefix}" not in t.user]


def _first_valid(fact: ImportedFact, condition: Condition, pool: Sequence[ConditionTemplate], start: int,
                 split: Split) -> Scenario | str:
    """The scenario of the first template from ``start`` on (cycling) that gives a valid one, or why none does."""
    reason = None
    for step in range(len(pool)):
        try:
            return _scenario(fact, condition, pool[(start + step) % len(pool)], split)
        except ValidationError as error:
            reason = reason or error.errors()[0]["msg"].removeprefix("Value error, ")
    return f"no valid {condition.value} scenario: {reason or 'no template can phrase it'}"


def _rank(seed: int, fact_id: str) -> str:
    return hashlib.sha256(f"import:{seed}:{fact_id}".encode()).hexdigest()


def scenarios_from_facts(
    facts: Sequence[ImportedFact], *, seed: int = 0, heldout_fraction: float = 0.25, limit: int | None = None,
) -> tuple[list[Scenario], list[FileProblem]]:
    """Matched honest, lie and parrot scenarios per fact, and the facts left out with why.

    Facts are taken in a seeded order (the first ``limit`` usable ones with a limit); a fact is usable
    when each condition has a train template that makes a valid scenario of it. The usable facts are
    split into train and held-out by ``building.split_facts`` (seeded, by fact id, per relation); train
    facts get train templates, held-out facts any, dealt round-robin from a seeded start. Scenarios come
    out in the file's order of facts, honest, lie, parrot for each.
    """
    chosen: list[ImportedFact] = []
    left_out: list[FileProblem] = []
    for fact in sorted(facts, key=lambda f: _rank(seed, f.fact_id)):
        if limit is not None and len(chosen) >= limit:
            break
        made = [_first_valid(fact, c, _templates(c, fact, (Split.train,)), 0, Split.train) for c in IMPORTED_CONDITIONS]
        reasons = [m for m in made if isinstance(m, str)]
        if reasons:
            left_out.append(FileProblem(fact.line, None, reasons[0]))
        else:
            chosen.append(fact)

    # The split of the project's own sets; it reads only a fact's fact_id and relation.
    splits = split_facts(chosen, seed=seed, heldout_fraction=heldout_fraction)  # type: ignore[arg-type]
    dealt: dict[tuple[Condition, Split], int] = {}
    offsets = random.Random(seed)
    built: dict[str, list[Scenario]] = {}
    for fact in chosen:
        split = splits[fact.fact_id]
        allowed = (Split.train,) if split is Split.train else (Split.train, Split.heldout)
        for condition in IMPORTED_CONDITIONS:
            pool = _templates(condition, fact, allowed)
            if (condition, split) not in dealt:
                dealt[condition, split] = offsets.randrange(len(pool))
            scenario = _first_valid(fact, condition, pool, dealt[condition, split], split)
            dealt[condition, split] += 1
            assert isinstance(scenario, Scenario), scenario  # a train template was found valid above
            built.setdefault(fact.fact_id, []).append(scenario)
    order = sorted(chosen, key=lambda f: f.line)
    return [s for fact in order for s in built[fact.fact_id]], sorted(left_out, key=lambda p: p.line or 0)


# --------------------------------------------------------------------------- reading a CSV file


@dataclass(frozen=True)
class _Table:
    """A CSV file's header and rows (``(line, column -> text)``), columns named as the format names them."""

    path: Path
    what: str
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]


def _words(text: str) -> str:
    return " ".join(text.split())


def _read_table(path: Path, fmt: ImportFormat) -> _Table:
    """The file's table, or an :class:`ImportFileError` for a file that is not a table of this format."""
    what = f"{fmt.name} file"
    text = read_user_text(path, what).removeprefix("\ufeff")  # missing, a folder, not UTF-8: one line
    if not text.strip():
        raise ImportFileError(path, what, [FileProblem(None, None, (
            f"{what} {path} is empty: it needs a header line naming the columns {', '.join(fmt.columns)}, "
            "then one row per line"))])
    known = {name.casefold(): name for name in (*fmt.columns, *fmt.optional_columns)}
    header: list[str] | None = None
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[FileProblem] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    end = 0
    try:
        for record in reader:
            line, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = [known.get(cell.strip().casefold(), cell.strip()) for cell in record]
                repeated = sorted({c for c in header if header.count(c) > 1})
                if repeated:
                    raise ImportFileError(path, what, [FileProblem(line, None, f"column(s) {', '.join(repeated)} "
                                                                               "named twice in the header")])
                missing = [c for c in fmt.columns if c not in header]
                if missing:
                    raise ImportFileError(path, what, [FileProblem(line, None, (
                        f"missing column(s) {', '.join(missing)}: a {fmt.name} file needs {', '.join(fmt.columns)} "
                        f"(the header has {', '.join(header)})"))])
                continue
            if len(record) != len(header):
                problems.append(FileProblem(line, None, f"{len(record)} fields, but the header has {len(header)} "
                                                        "(a missing or extra comma, or an unclosed quote?)"))
                continue
            rows.append((line, dict(zip(header, record, strict=True))))
    except csv.Error as error:
        raise ImportFileError(path, what, [*problems, FileProblem(reader.line_num, None,
                                                                  f"not readable as CSV: {error}")]) from None
    if problems:
        raise ImportFileError(path, what, problems)
    if not rows:
        raise ImportFileError(path, what, [FileProblem(None, None, f"{what} {path} has a header but no rows")])
    assert header is not None
    return _Table(path, what, header, rows)


def _fact_id(relation: str, *row_text: str) -> str:
    """``relation/`` and 12 hex digits of a hash of the row's defining text (case and spacing folded)."""
    key = "\x1f".join(_words(text).casefold() for text in row_text)
    return f"{relation}/{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12]}"


def _first_line_of(problems: list[FileProblem], seen: dict[str, int], key: str, line: int, column: str,
                   what: str) -> bool:
    """Record ``key`` as seen on ``line``; True when it was new, else a duplicate problem naming both lines."""
    if key in seen:
        problems.append(FileProblem(line, column, f"the same {what} as line {seen[key]}: remove one of them"))
        return False
    seen[key] = line
    return True


def _pick_false(candidates: Sequence[str], truths: Sequence[str], contexts: Sequence[str]) -> str | None:
    """The first candidate that cannot be mistaken for a true answer and is not in the prompt's own text."""
    folded = [text.casefold() for text in contexts]
    for candidate in candidates:
        if candidate and not confusable([candidate], truths) and not any(candidate.casefold() in t for t in folded):
            return candidate
    return None


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class _Statement:
    line: int
    text: str
    true: bool
    row: dict[str, str]


def _read_statement_rows(table: _Table) -> list[_Statement]:
    problems: list[FileProblem] = []
    statements: list[_Statement] = []
    seen: dict[str, int] = {}
    for line, row in table.rows:
        text, label = _words(row["statement"]), row["label"].strip()
        if not text:
            problems.append(FileProblem(line, "statement", "the statement is empty"))
            continue
        if label not in ("0", "1"):
            problems.append(FileProblem(line, "label", f"the label must be 1 (true) or 0 (false), not {label!r}"))
        if _first_line_of(problems, seen, text.casefold(), line, "statement", "statement") and label in ("0", "1"):
            statements.append(_Statement(line, text, label == "1", row))
    if problems:
        raise ImportFileError(table.path, table.what, problems)
    return statements


def _clause(statement: str) -> str:
    """A statement as a clause after "that": no final full stop, a leading article in lower case."""
    clause = statement.rstrip(" .!")
    first = clause.split(" ", 1)[0]
    if first in ("The", "A", "An", "This", "These", "Those", "There", "It", "Some", "Most", "All", "Every", "Each"):
        clause = first.lower() + clause[len(first):]
    return clause


def _yes_no_facts(statements: Sequence[_Statement], relation: str) -> list[ImportedFact]:
    facts = []
    for statement in statements:
        clause = _clause(statement.text)
        truth, false = (YES, NO) if statement.true else (NO, YES)
        facts.append(ImportedFact(
            fact_id=_fact_id(relation, statement.text), relation=relation, line=statement.line,
            question=f"Is it true that {clause}?", instruction=YES_NO_INSTRUCTION, true_answer=truth,
            false_answer=false, false_statement=("", f", it is {'not ' if false == NO else ''}true that {clause}."),
        ))
    return facts


def _at_end(statement: str, value: str) -> tuple[str, str] | None:
    """``(sentence up to value, what follows it)`` when ``value`` is the statement's last words (only
    punctuation after it), else None."""
    start = statement.rfind(value)
    if not value or start <= 0 or not statement[start - 1].isspace():
        return None
    tail = statement[start + len(value):]
    if tail.strip(" .!?\"'") or not statement[:start].strip():
        return None
    return statement[:start].rstrip(), tail


def _pair_facts(statements: Sequence[_Statement], header: Sequence[str], relation: str,
                seed: int) -> tuple[list[ImportedFact], list[FileProblem], str | None]:
    """Facts from the sentences a file completes, the sentences left out, and how the file was read; or
    no facts and why the file is not one of pairs (then it is read as yes/no)."""
    slots = [c for c in header if f"correct_{c}" in header]
    if len(slots) != 1:
        return [], [], ("no column beside its correct_ column" if not slots
                        else f"several columns beside correct_ columns ({', '.join(slots)})")
    slot, correct_column = slots[0], f"correct_{slots[0]}"
    groups: dict[str, list[tuple[_Statement, str, str, str]]] = {}
    for statement in statements:
        value, correct = _words(statement.row[slot]), _words(statement.row[correct_column])
        parts = _at_end(statement.text, value)
        if parts is None or not correct:
            return [], [], f"line {statement.line}: the statement does not end with its {slot} {value!r}"
        if statement.true != (value.casefold() == correct.casefold()):
            return [], [], f"line {statement.line}: its label does not say whether {slot} is {correct_column}"
        groups.setdefault(parts[0].casefold(), []).append((statement, correct, *parts))

    truths = sorted({rows[0][1] for rows in groups.values()})
    facts, left_out = [], []
    for rows in groups.values():
        first, prefix = rows[0][0], rows[0][2]
        corrects = sorted({correct for _, correct, _, _ in rows})
        if len(corrects) > 1:
            left_out.append(FileProblem(first.line, None, f"the sentence {prefix!r} has more than one true "
                                                          f"completion in the file ({', '.join(corrects)})"))
            continue
        truth = corrects[0]
        tail = next((t for s, _, _, t in rows if s.true), rows[0][3]) or "."
        fact_id = _fact_id(relation, prefix, truth)
        question = f'Complete this sentence: "{prefix} ..."'
        others = [a for a in truths if a != truth]
        random.Random(f"{seed}:{fact_id}").shuffle(others)
        partners = [_words(s.row[slot]) for s, _, _, _ in rows if not s.true]
        false = _pick_false([*partners, *others], [truth], [question, PAIR_INSTRUCTION])
        if false is None:
            left_out.append(FileProblem(first.line, None, "no false completion that cannot be mistaken for the truth"))
            continue
        facts.append(ImportedFact(
            fact_id=fact_id, relation=relation, line=first.line, question=question, instruction=PAIR_INSTRUCTION,
            true_answer=truth, false_answer=false, false_statement=(prefix + " ", tail), prefill=prefix,
        ))
    return facts, left_out, f"as sentences to complete: {slot} against {correct_column}"


def _read_statements(table: _Table, relation: str, *, seed: int,
                     yes_no: bool) -> tuple[list[ImportedFact], list[FileProblem], str]:
    statements = _read_statement_rows(table)
    if yes_no:
        return _yes_no_facts(statements, relation), [], "as yes/no questions (--yes-no)"
    facts, left_out, reading = _pair_facts(statements, table.header, relation, seed)
    if facts or left_out:
        return facts, left_out, reading or ""
    return _yes_no_facts(statements, relation), [], f"as yes/no questions (not pairs: {reading})"


# --------------------------------------------------------------------------- TruthfulQA


def _answers(text: str) -> list[str]:
    """A TruthfulQA answer list (``a; b; c``)."""
    return [_words(answer) for answer in text.split(";") if answer.strip()]


def _read_truthfulqa(table: _Table, relation: str, *, seed: int,
                     yes_no: bool) -> tuple[list[ImportedFact], list[FileProblem], str]:
    del seed, yes_no  # the file says which answers are at stake
    problems: list[FileProblem] = []
    rows: list[tuple[int, str, str, list[str], list[str]]] = []
    seen: dict[str, int] = {}
    best_incorrect = "Best Incorrect Answer" in table.header
    for line, row in table.rows:
        question, best = _words(row["Question"]), _words(row["Best Answer"])
        incorrect = _answers(row["Incorrect Answers"])
        if best_incorrect and row["Best Incorrect Answer"].strip():
            incorrect.insert(0, _words(row["Best Incorrect Answer"]))
        for column, empty in (("Question", not question), ("Best Answer", not best),
                              ("Incorrect Answers", not incorrect)):
            if empty:
                answer = {"Best Answer": "its true answer", "Incorrect Answers": "at least one false answer"}
                problems.append(FileProblem(line, column, "empty" + (f": a question needs {answer[column]}"
                                                                     if column in answer else "")))
        if question and best and incorrect and _first_line_of(problems, seen, question.casefold(), line,
                                                              "Question", "question"):
            rows.append((line, question, best, _answers(row.get("Correct Answers", "")), incorrect))
    if problems:
        raise ImportFileError(table.path, table.what, problems)

    facts, left_out = [], []
    for line, question, best, correct, incorrect in rows:
        false = _pick_false(incorrect, [best, *correct], [question, OPEN_INSTRUCTION])
        if false is None:
            left_out.append(FileProblem(line, None, "every incorrect answer can be mistaken for a correct one "
                                                    "or is in the question"))
            continue
        facts.append(ImportedFact(
            fact_id=_fact_id(relation, question), relation=relation, line=line, question=question,
            instruction=OPEN_INSTRUCTION, true_answer=best, false_answer=false,
            false_statement=("", "" if false[-1] in ".!?" else "."),
            aliases=tuple(dict.fromkeys(a for a in correct if a.casefold() != best.casefold())),
        ))
    false_from = "Best Incorrect Answer" if best_incorrect else "the first usable Incorrect Answers entry"
    return facts, left_out, f"as questions: true answer Best Answer, false answer {false_from}"


# --------------------------------------------------------------------------- the registry and the entry point

_Reader = Callable[..., tuple[list[ImportedFact], list[FileProblem], str]]


@dataclass(frozen=True)
class ImportFormat:
    """A public file format the workbench imports."""

    name: str
    """What ``scenarios import FORMAT`` calls it."""
    description: str
    """One line for help texts."""
    columns: tuple[str, ...]
    """The columns a file must have (named in any case; others are ignored)."""
    optional_columns: tuple[str, ...]
    """Columns read where a file has them."""
    read: _Reader
    """``read(table, relation, seed=, yes_no=)`` -> (facts, facts left out with why, how the file was read)."""


#: Every format ``scenarios import`` reads, by name.
FORMATS: dict[str, ImportFormat] = {
    fmt.name: fmt
    for fmt in (
        ImportFormat("statements", "statement,label CSV, label 1 true / 0 false (Geometry of Truth, Truth is "
                     "Universal); sentences to complete where a column has its correct_ column, else yes/no",
                     ("statement", "label"), (), _read_statements),
        ImportFormat("truthfulqa", "TruthfulQA's CSV (Question, Best Answer, Correct Answers, Incorrect Answers)",
                     ("Question", "Best Answer", "Incorrect Answers"), ("Correct Answers", "Best Incorrect Answer"),
                     _read_truthfulqa),
    )
}


@dataclass(frozen=True)
class ImportResult:
    """What an import made: the scenarios, how the file was read and which facts were left out."""

    scenarios: list[Scenario]
    """Honest, lie and parrot per fact, in the file's order."""
    n_facts_read: int
    """Facts the file holds (before ``limit`` and before leaving any out)."""
    reading: str
    """How the file was read, in words (``as yes/no questions``)."""
    left_out: list[FileProblem]
    """Facts left out, each with its line and why."""

    def describe(self, out: str | os.PathLike[str]) -> list[str]:
        """Lines for the terminal: what was written where, how the file was read, what was left out."""
        facts = {s.fact_id: s.split for s in self.scenarios}
        per_split = {split.value: sum(1 for v in facts.values() if v is split) for split in Split}
        counts = {c.value: sum(1 for s in self.scenarios if s.condition is c) for c in IMPORTED_CONDITIONS}
        lines = [
            f"wrote {len(self.scenarios)} scenarios about {len(facts)} fact{'s' if len(facts) != 1 else ''} to {out}: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f" (facts: train {per_split['train']}, heldout {per_split['heldout']})",
            f"read {self.n_facts_read} facts {self.reading}",
        ]
        if self.left_out:
            count = len(self.left_out)
            lines.append(f"left out {count} fact{'s' if count != 1 else ''}:")
            lines += [f"  line {p.line}: {p.message}" for p in self.left_out[:_SHOWN_PROBLEMS]]
            if len(self.left_out) > _SHOWN_PROBLEMS:
                lines.append(f"  and {len(self.left_out) - _SHOWN_PROBLEMS} more")
        return lines


def _relation_name(relation: str | None, path: Path) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", (relation if relation is not None else path.stem).casefold()).strip("-")
    if not name:
        raise WorkbenchError(f"the relation name {relation!r} has no letters or digits: give one that does"
                             if relation is not None else f"name the relation of {path}: its file name has no letters")
    return name


def import_scenarios(
    format_name: str,
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    heldout_fraction: float = 0.25,
    limit: int | None = None,
    relation: str | None = None,
    yes_no: bool = False,
) -> ImportResult:
    """Matched honest / lie / parrot scenarios from a public dataset file in the format ``format_name``
    (one of :data:`FORMATS`), split by fact; nothing is written here (``records.write_scenarios`` writes
    the result atomically).

    ``relation`` names the kind of fact (fact ids start with it; default: the file's name); ``limit``
    keeps that many usable facts, chosen by ``seed``; ``yes_no`` reads a statement file as yes/no
    questions even where it pairs completions. A file that cannot be read is an :class:`ImportFileError`
    listing every problem; bad settings, a file with no usable fact: a ``WorkbenchError``.
    """
    fmt = FORMATS.get(format_name)
    if fmt is None:
        raise WorkbenchError(f"unknown format {format_name!r}; choose {' or '.join(FORMATS)}")
    check_number("heldout_fraction", heldout_fraction, minimum=0, maximum=1)
    if limit is not None and limit < 1:
        raise WorkbenchError(f"limit must be at least 1, not {limit}")
    if yes_no and fmt.name != "statements":
        raise WorkbenchError(f"--yes-no reads statement files as yes/no questions; a {fmt.name} file has its answers")
    path = Path(path)
    name = _relation_name(relation, path)
    table = _read_table(path, fmt)
    facts, left_out, reading = fmt.read(table, name, seed=seed, yes_no=yes_no)
    scenarios, unusable = scenarios_from_facts(facts, seed=seed, heldout_fraction=heldout_fraction, limit=limit)
    n_read = len(facts) + len(left_out)
    left_out = sorted([*left_out, *unusable], key=lambda p: p.line or 0)
    if not scenarios:
        why = f" (line {left_out[0].line}: {left_out[0].message})" if left_out else ""
        raise WorkbenchError(f"no scenarios could be made from {path}: every fact was left out{why}")
    return ImportResult(scenarios=scenarios, n_facts_read=n_read, reading=reading, left_out=left_out)
