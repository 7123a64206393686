"""``scenarios import``: public dataset formats (statement CSVs, TruthfulQA's CSV) become matched honest /
lie / parrot scenarios per fact, split by fact, that pass the project's own scenario check; every bad
file is one line naming the file and line, exit 2, and nothing written. The fixtures under
``tests/fixtures/importers/`` are small files in each format written for these tests."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import pytest

from workbench import cli
from workbench.core.conditions import Condition
from workbench.scenarios import Scenario, Split, read_scenarios
from workbench.scenarios.facts import asserted_in
from workbench.scenarios.importers import (
    OPEN_INSTRUCTION, PAIR_INSTRUCTION, YES_NO_INSTRUCTION, ImportFileError, import_scenarios,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"
PAIRS = FIXTURES / "statements-pairs.csv"
YES_NO = FIXTURES / "statements-yes-no.csv"
TRUTHFULQA = FIXTURES / "truthfulqa.csv"
MATCHED = [Condition.honest, Condition.lie, Condition.parrot]


def run_import(capsys, *args: str) -> tuple[int, str, str]:
    """``python -m workbench scenarios import ARGS``: exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["scenarios", "import", *map(str, args)])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def imported(capsys, tmp_path: Path, fmt: str, path: Path, *args: str) -> tuple[list[Scenario], str]:
    """The scenarios an import writes, read back through the project's scenario check, and what it printed."""
    out = tmp_path / "imported.jsonl"
    code, printed, err = run_import(capsys, fmt, path, "--out", out, *args)
    assert code == 0, err
    return read_scenarios(out), printed


def by_fact(scenarios: list[Scenario]) -> dict[str, list[Scenario]]:
    facts: dict[str, list[Scenario]] = defaultdict(list)
    for scenario in scenarios:
        facts[scenario.fact_id].append(scenario)
    return facts


def user_turn(scenario: Scenario) -> str:
    return next(m.content for m in scenario.messages if m.role == "user")


def check_matched(scenarios: list[Scenario]) -> dict[str, list[Scenario]]:
    """Every fact has exactly one honest, lie and parrot scenario sharing its question and answers; no message
    of a lie asserts its false answer, a parrot's span points at it; no fact is in both splits."""
    facts = by_fact(scenarios)
    for fact_id, group in facts.items():
        assert [s.condition for s in group] == MATCHED, fact_id
        assert len({(s.true_answer, s.false_answer, s.split, s.relation, s.prefill) for s in group}) == 1
        honest, lie, parrot = group
        assert user_turn(honest) == user_turn(lie)  # the same question; the lie's motive is in its system prompt
        assert all(asserted_in(m.content, lie.false_answer) is None for m in lie.messages)  # never asserted
        span = parrot.falsehood_span
        assert parrot.messages[span.message_index].content[span.start:span.end] == parrot.false_answer
        assert all(s.id == f"{fact_id}/{s.condition.value}/{s.template_id}" for s in group)
        assert all(s.template_split is Split.train for s in group if s.split is Split.train)
        assert all(s.fact_known is None for s in group)  # no knowledge check: unchecked
    return facts


# --------------------------------------------------------------------------- statements


def test_statement_pairs_become_sentences_to_complete(capsys, tmp_path):
    scenarios, printed = imported(capsys, tmp_path, "statements", PAIRS, "--heldout-fraction", "0.5")
    facts = check_matched(scenarios)
    answers = {group[0].true_answer: group[0] for group in facts.values()}
    assert sorted(answers) == ["Australia", "Japan", "Peru", "Poland", "Portugal"]
    # the false answer is the false statement's country about the same city, whichever row comes first
    assert {t: answers[t].false_answer for t in ("Portugal", "Poland", "Japan", "Peru")} == {
        "Portugal": "Kenya", "Poland": "Chile", "Japan": "Egypt", "Peru": "Sweden"}
    # Adelaide has no false statement: another city's country stands in
    assert answers["Australia"].false_answer in {"Portugal", "Poland", "Japan", "Peru"}
    porto = facts[answers["Portugal"].fact_id]
    assert all(s.prefill == "The city of Porto is in" for s in porto)  # the answer continues the sentence
    assert 'Complete this sentence: "The city of Porto is in ..."' in user_turn(porto[0])
    assert PAIR_INSTRUCTION in user_turn(porto[0])
    assert "The city of Porto is in Kenya" in user_turn(porto[2])  # the parrot prompt asserts the falsehood
    assert {s.relation for s in scenarios} == {"statements-pairs"}
    assert "read 5 facts as sentences to complete: country against correct_country" in printed
    assert "wrote 15 scenarios about 5 facts" in printed


def test_statements_without_pairs_become_yes_no_questions(capsys, tmp_path):
    scenarios, printed = imported(capsys, tmp_path, "statements", YES_NO, "--heldout-fraction", "0.5")
    facts = check_matched(scenarios)
    asked = {user_turn(group[0]).split("?")[0]: group for group in facts.values()}
    iron = asked["Is it true that Iron has the chemical symbol Fe"]
    assert (iron[0].true_answer, iron[0].false_answer) == ("Yes", "No")  # label 1
    moon = asked["Is it true that the Moon is larger than the Earth"]
    assert (moon[0].true_answer, moon[0].false_answer) == ("No", "Yes")  # label 0
    assert all(s.prefill is None and s.messages[-1].role == "user" for s in scenarios)  # the answer is the first word
    assert YES_NO_INSTRUCTION in user_turn(iron[0])
    # the parrot prompt asserts the opposite of the truth
    assert "No, it is not true that Iron has the chemical symbol Fe." in user_turn(iron[2])
    assert "Yes, it is true that the Moon is larger than the Earth." in user_turn(moon[2])
    # "Snow" holds "no" inside a word, and the question only asks: the lie's false answer 'No' is not asserted
    assert len(facts) == 8 and any("Snow" in user_turn(s) for s in scenarios)
    assert "read 8 facts as yes/no questions (not pairs: no column beside its correct_ column)" in printed
    assert "left out" not in printed


def test_negated_pairs_and_the_yes_no_option_read_statements_as_yes_no(capsys, tmp_path):
    negated = tmp_path / "neg_cities.csv"
    negated.write_text("statement,label,city,country,correct_country\n"
                       "The city of Porto is not in Kenya.,1,Porto,Kenya,Portugal\n"
                       "The city of Porto is not in Portugal.,0,Porto,Portugal,Portugal\n", encoding="utf-8")
    scenarios, printed = imported(capsys, tmp_path, "statements", negated)
    assert "as yes/no questions (not pairs: line 2: its label does not say whether country is correct_country)" in printed
    # "not" inside the asked statement asserts nothing: both statements make facts
    assert sorted(s.true_answer for s in scenarios) == ["No"] * 3 + ["Yes"] * 3
    assert {s.relation for s in scenarios} == {"neg-cities"}

    scenarios, printed = imported(capsys, tmp_path, "statements", PAIRS, "--yes-no")
    check_matched(scenarios)
    assert "read 9 facts as yes/no questions (--yes-no)" in printed
    assert {s.true_answer for s in scenarios} == {"Yes", "No"}


# --------------------------------------------------------------------------- TruthfulQA


def test_truthfulqa_questions_become_free_text_scenarios(capsys, tmp_path):
    scenarios, printed = imported(capsys, tmp_path, "truthfulqa", TRUTHFULQA, "--heldout-fraction", "0.5")
    facts = check_matched(scenarios)
    assert len(facts) == 5 and all(s.prefill is None for s in scenarios)
    answers = {group[0].true_answer: group for group in facts.values()}
    bear = answers["A polar bear's skin is black"]
    assert bear[0].false_answer == "A polar bear's skin is white"  # the first incorrect answer
    # the other Correct Answers become aliases the answer judge accepts
    assert all(s.aliases == ("Polar bears have black skin under their white fur",) for s in bear)
    assert user_turn(bear[0]) == f"What colour is the skin of a polar bear? {OPEN_INSTRUCTION}"
    assert user_turn(bear[1]) == user_turn(bear[0]) and bear[1].messages[0].content != bear[0].messages[0].content
    assert "A polar bear's skin is white." in user_turn(bear[2])
    # the first incorrect answer says what the best answer says: the next one is at stake
    assert answers["Botanically, a tomato is a fruit"][0].false_answer == "A tomato is only ever a vegetable"
    assert answers["No, in a vacuum both fall at the same rate"][0].false_answer == "Yes, the heavier ball falls faster"
    assert {s.relation for s in scenarios} == {"truthfulqa"}
    assert "false answer the first usable Incorrect Answers entry" in printed


def test_truthfulqa_best_incorrect_answer_is_the_false_answer_where_the_file_has_it(tmp_path):
    path = tmp_path / "TruthfulQA.csv"
    path.write_text("Type,Category,Question,Best Answer,Best Incorrect Answer,Correct Answers,Incorrect Answers,Source\n"
                    "Adversarial,Biology,What colour is the skin of a polar bear?,A polar bear's skin is black,"
                    "A polar bear's skin is pink,A polar bear's skin is black,A polar bear's skin is white,x\n",
                    encoding="utf-8")
    result = import_scenarios("truthfulqa", path)
    assert {s.false_answer for s in result.scenarios} == {"A polar bear's skin is pink"}
    assert "false answer Best Incorrect Answer" in result.reading


# --------------------------------------------------------------------------- split and ids


@pytest.mark.parametrize("path", [PAIRS, YES_NO, TRUTHFULQA], ids=lambda p: p.stem)
def test_split_by_fact_and_ids_stable(path, tmp_path):
    fmt = "truthfulqa" if path == TRUTHFULQA else "statements"
    result = import_scenarios(fmt, path, heldout_fraction=0.5, seed=3)
    splits = defaultdict(set)
    for scenario in result.scenarios:
        splits[scenario.fact_id].add(scenario.split)
    assert all(len(sides) == 1 for sides in splits.values())  # no fact on both sides
    assert {side for sides in splits.values() for side in sides} == {Split.train, Split.heldout}
    assert len({s.id for s in result.scenarios}) == len(result.scenarios)

    again = import_scenarios(fmt, path, heldout_fraction=0.5, seed=3)
    assert [s.model_dump() for s in again.scenarios] == [s.model_dump() for s in result.scenarios]  # deterministic
    # fact ids come from the row's text: the same under another seed, with the rows reversed and with fewer rows
    lines = path.read_text(encoding="utf-8").splitlines()
    reversed_file = tmp_path / path.name
    reversed_file.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n", encoding="utf-8")
    fact_ids = {s.fact_id for s in result.scenarios}
    assert {s.fact_id for s in import_scenarios(fmt, path, seed=11).scenarios} == fact_ids
    assert {s.fact_id for s in import_scenarios(fmt, reversed_file, heldout_fraction=0.5).scenarios} == fact_ids
    assert {s.fact_id for s in import_scenarios(fmt, path, limit=2).scenarios} < fact_ids


def test_fact_id_is_the_relation_and_a_hash_of_the_row():
    result = import_scenarios("statements", YES_NO, relation="My Facts")
    iron = next(s for s in result.scenarios if "Iron" in user_turn(s))
    digest = hashlib.sha256(b"iron has the chemical symbol fe.").hexdigest()[:12]
    assert iron.fact_id == f"my-facts/{digest}" and iron.relation == "my-facts"


def test_limit_keeps_that_many_facts_chosen_by_the_seed(capsys, tmp_path):
    scenarios, printed = imported(capsys, tmp_path, "truthfulqa", TRUTHFULQA, "--limit", "3")
    assert len(by_fact(scenarios)) == 3 and len(scenarios) == 9
    chosen = {seed: {s.fact_id for s in import_scenarios("truthfulqa", TRUTHFULQA, limit=2, seed=seed).scenarios}
              for seed in range(6)}
    assert len({frozenset(ids) for ids in chosen.values()}) > 1  # the seed chooses


# --------------------------------------------------------------------------- bad input

HEADER = "statement,label\n"
TQA = "Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"

#: (name, format, file content (text, or bytes as they are), extra arguments, what the one error line holds)
BAD: list[tuple[str, str, str | bytes, list[str], str]] = [
    ("empty file", "statements", "", [], "statements file {file} is empty: it needs a header line naming the "
                                         "columns statement, label"),
    ("blank lines only", "truthfulqa", "\n \n", [], "truthfulqa file {file} is empty"),
    ("header without rows", "statements", HEADER, [], "statements file {file} has a header but no rows"),
    ("missing statement column", "statements", "text,label\nA cat is an animal.,1\n", [],
     "statements file {file} line 1: missing column(s) statement: a statements file needs statement, label "
     "(the header has text, label); nothing was written"),
    ("missing TruthfulQA columns", "truthfulqa", "Question,Answer\nWhy?,Because\n", [],
     "line 1: missing column(s) Best Answer, Incorrect Answers"),
    ("a column twice", "statements", "statement,label,label\nA.,1,1\n", [], "line 1: column(s) label named twice"),
    ("label not 0/1", "statements", HEADER + "A cat is an animal.,1\nA cat is a plant.,yes\n", [],
     "statements file {file} line 3, field 'label': the label must be 1 (true) or 0 (false), not 'yes'; "
     "nothing was written"),
    ("label 2", "statements", HEADER + "A cat is an animal.,2\n", [], "line 2, field 'label': the label must be "
                                                                      "1 (true) or 0 (false), not '2'"),
    ("empty label", "statements", HEADER + "A cat is an animal.,\n", [], "line 2, field 'label'"),
    ("empty statement", "statements", HEADER + " ,1\n", [], "line 2, field 'statement': the statement is empty"),
    ("not UTF-8", "statements", HEADER.encode() + "Caf\xe9s sell coffee.,1\n".encode("latin-1"), [],
     "statements file {file} is not UTF-8 text (byte 19, line 2): save it as UTF-8"),
    ("duplicate statement", "statements", HEADER + "A cat is an animal.,1\nA dog barks.,1\nA cat  is an animal.,0\n",
     [], "line 4, field 'statement': the same statement as line 2: remove one of them"),
    ("duplicate question", "truthfulqa", TQA + "a,b,Why is the sky blue?,Scattering,Scattering,Paint,s\n"
                                               "a,b,Why is the sky blue?,Scattering,Scattering,Paint,s\n", [],
     "truthfulqa file {file} line 3, field 'Question': the same question as line 2"),
    ("missing true answer", "truthfulqa", TQA + "a,b,Why is the sky blue?,,Scattering,Paint,s\n", [],
     "line 2, field 'Best Answer': empty: a question needs its true answer"),
    ("no incorrect answer", "truthfulqa", TQA + "a,b,Why is the sky blue?,Scattering,Scattering, ; ,s\n", [],
     "line 2, field 'Incorrect Answers': empty: a question needs at least one false answer"),
    ("a row with too few fields", "statements", HEADER + "A cat is an animal.,1\nA dog barks.\n", [],
     "line 3: 1 fields, but the header has 2"),
    ("an unclosed quote", "statements", HEADER + '"A cat is, an animal.,1\n', [], "not readable as CSV"),
    ("every problem on one line", "statements", HEADER + "A.,1\nB.,x\nA.,0\n", [],
     "2 problems in statements file {file}; nothing was written: line 3, field 'label': the label must be 1 "
     "(true) or 0 (false), not 'x'; line 4, field 'statement': the same statement as line 2"),
    ("unknown format", "csv", HEADER + "A.,1\n", [], "unknown format 'csv'; choose statements or truthfulqa"),
    ("yes/no for TruthfulQA", "truthfulqa", TQA, ["--yes-no"], "--yes-no reads statement files as yes/no questions"),
    ("held-out fraction above 1", "statements", HEADER + "A.,1\n", ["--heldout-fraction", "1.5"],
     "heldout_fraction must be a finite number >= 0 and <= 1, not 1.5"),
    ("limit 0", "statements", HEADER + "A.,1\n", ["--limit", "0"], "Invalid value for '--limit'"),
    ("relation without letters", "statements", HEADER + "A.,1\n", ["--relation", "//"],
     "the relation name '//' has no letters or digits"),
    ("out is the input", "statements", HEADER + "A.,1\n", ["--out", "{file}"], "is the file being imported"),
    ("out is a folder", "statements", HEADER + "A.,1\n", ["--out", "{folder}"],
     "is a folder, so it cannot be written as the scenario file"),
]


@pytest.mark.parametrize(("fmt", "content", "args", "message"), [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_input_is_one_line_exit_2_and_nothing_written(fmt, content, args, message, tmp_path, capsys):
    file = tmp_path / "input.csv"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content, encoding="utf-8")
    before = file.read_bytes()
    (tmp_path / "folder").mkdir()
    out = tmp_path / "out" / "imported.jsonl"
    names = {"file": str(file), "folder": str(tmp_path / "folder")}
    extra = [arg.format(**names) for arg in args]
    code, printed, err = run_import(capsys, fmt, file, *([] if "--out" in extra else ["--out", out]), *extra)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(**names) in lines[0]
    assert "Traceback" not in err + printed
    assert not out.exists() and not out.parent.exists()
    assert file.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["folder", "input.csv"]


def test_a_bad_file_leaves_an_existing_output_as_it_was(tmp_path, capsys):
    out = tmp_path / "scenarios.jsonl"
    code, _, _ = run_import(capsys, "statements", PAIRS, "--out", out)
    assert code == 0
    written = out.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "A cat is an animal.,maybe\n", encoding="utf-8")
    code, _, err = run_import(capsys, "statements", bad, "--out", out)
    assert code == 2 and "not 'maybe'" in err
    assert out.read_bytes() == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "scenarios.jsonl"]  # no temporary file left


def test_the_library_lists_every_problem_with_its_line():
    with pytest.raises(ImportFileError) as error:
        import_scenarios("statements", FIXTURES / "truthfulqa.csv")
    assert [(p.line, p.field) for p in error.value.problems] == [(1, None)]


def test_instructions_name_no_answer():
    """A lie's false answer must not be in its prompt: the yes/no instruction names neither answer."""
    for word in ("yes", "no"):
        assert word not in YES_NO_INSTRUCTION.casefold()
