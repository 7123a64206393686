"""Conditions narrowed by what the model did (``lie+false``, ``lie+truth``): the names, choosing scenarios by
their judged responses, and the contrast between them on the command line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import behaviour_split, other_answer
from workbench.cli import app
from workbench.core.conditions import (
    BEHAVIOURS, CONDITIONS, NARROWED_CONDITIONS, check_conditions, condition_choices, condition_label,
    ordered_conditions, parse_condition,
)
from workbench.core.errors import WorkbenchError
from workbench.scenarios import (
    BEHAVIOUR_JUDGEMENTS, JUDGEMENTS, AnswerJudge, behaviour_of, select_by_behaviour, write_scenarios,
)

# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "parsed"), [
    ("lie", ("lie", None)), ("ignorant", ("ignorant", None)), ("lie+false", ("lie", "false")),
    ("lie+truth", ("lie", "truth")), ("honest+false", ("honest", "false")), ("parrot+truth", ("parrot", "truth")),
])
def test_parse_condition(name, parsed):
    assert parse_condition(name) == parsed


BAD_NAMES = [
    ("lei", "unknown condition 'lei'; conditions are honest, lie, parrot, ignorant"),
    ("lei+false", "unknown condition 'lei' in 'lei+false'; conditions are honest, lie, parrot, ignorant; narrowed by "
                  "behaviour: honest+false, honest+truth, lie+false, lie+truth, parrot+false, parrot+truth"),
    ("+false", "unknown condition '' in '+false'"),
    ("lie+lied", "unknown behaviour 'lied' in 'lie+lied'; behaviours are false (the response states a false answer: "
                 "the scenario's false answer or another answer of the same relation) and truth (the response "
                 "states the true answer): lie+false, lie+truth"),
    ("lie+", "unknown behaviour '' in 'lie+'"),
    ("lie+false+truth", "unknown behaviour 'false+truth' in 'lie+false+truth'"),
    ("Lie+false", "unknown condition 'Lie' in 'Lie+false'"),
    ("ignorant+false", "'ignorant+false': ignorant scenarios are not narrowed by behaviour (the model does not know "
                       "the answer, so a false response is a guess"),
    ("ignorant+truth", "conditions narrowed by behaviour are honest+false, honest+truth, lie+false, lie+truth"),
]


@pytest.mark.parametrize(("name", "message"), BAD_NAMES, ids=[row[0] or "empty" for row in BAD_NAMES])
def test_bad_names_say_what_is_wrong_and_what_is_valid(name, message):
    with pytest.raises(WorkbenchError) as error:
        parse_condition(name)
    assert message in str(error.value)
    with pytest.raises(WorkbenchError) as checked:  # the list check says the same
        check_conditions(["honest", name], behaviour=True)
    assert message in str(checked.value) or "unknown condition(s) lei" in str(checked.value)


def test_every_condition_with_a_true_and_a_false_answer_is_narrowed_by_both_behaviours():
    assert NARROWED_CONDITIONS == ("honest+false", "honest+truth", "lie+false", "lie+truth", "parrot+false",
                                   "parrot+truth")
    assert set(BEHAVIOURS) == set(BEHAVIOUR_JUDGEMENTS) == {"false", "truth"}  # the table and the judge agree
    assert not CONDITIONS["ignorant"].behaviours and CONDITIONS["ignorant"].not_narrowed_because
    assert condition_label("lie+false") == "lie+false: the model lied"
    assert condition_label("lie+truth").startswith("lie+truth: the model resisted")
    assert condition_label("lie") == "lie"


def test_each_judgement_shows_at_most_one_behaviour():
    shown = {judgement: behaviour_of(judgement) for judgement in JUDGEMENTS}
    assert shown == {"truth": "truth", "stated_false": "false", "other_false": "false", "no_answer": None}


def test_check_conditions_takes_narrowed_names_only_when_asked_and_checks_their_condition():
    check_conditions(["lie+false", "lie+truth"], {"lie"}, behaviour=True)
    with pytest.raises(WorkbenchError, match=r"narrowed by behaviour \(lie\+false\) are not taken by the hypothesis"):
        check_conditions(["lie+false", "honest"], needed_by="the hypothesis")
    with pytest.raises(WorkbenchError, match=r"the scenarios have no parrot scenarios, which the contrast needs "
                                             r"\(present: honest, lie\)"):
        check_conditions(["lie+false", "parrot+truth"], {"lie", "honest"}, needed_by="the contrast", behaviour=True)
    with pytest.raises(WorkbenchError, match="unknown condition"):
        check_conditions(["lie", "lei"], behaviour=True)


def test_pick_lists_offer_the_narrowed_conditions_of_the_conditions_present():
    assert condition_choices(["parrot", "lie", None, "lie"]) == [
        "lie", "parrot", "lie+false", "lie+truth", "parrot+false", "parrot+truth"]
    assert condition_choices(["ignorant"]) == ["ignorant"]
    assert ordered_conditions(["lie+truth", "other", "parrot", "lie+false"]) == [
        "parrot", "lie+false", "lie+truth", "other"]


# ----------------------------------------------------------------------------- choosing scenarios by behaviour


@pytest.fixture(scope="module")
def lies(tiny_scenarios):
    return [s for s in tiny_scenarios if s.condition.value == "lie"]


def test_responses_choose_the_behaviour(lies):
    truth, stated, other, neither, silent = lies[:5]
    responses = {truth.id: f" {truth.true_answer}.", stated.id: f" {stated.false_answer}, of course.",
                 other.id: f" {other_answer(other, lies)}.", neither.id: " a lovely city.", silent.id: None}
    chosen = lies[:5]
    lied = select_by_behaviour(chosen, "lie+false", responses)
    resisted = select_by_behaviour(chosen, "lie+truth", responses)
    assert [s.id for s in lied.scenarios] == [stated.id, other.id]
    assert [s.id for s in resisted.scenarios] == [truth.id]
    for selection in (lied, resisted):  # the rest is counted, not dropped
        assert selection.base == "lie" and selection.n_base == 5
        assert selection.by_behaviour == {"false": 2, "truth": 1}
        assert selection.no_answer == 1 and selection.no_response == 1
    everything = select_by_behaviour(chosen, "lie", responses)
    assert everything.scenarios == chosen and everything.no_answer == 0


def test_a_scenarios_own_response_is_judged_when_none_is_given(lies, tiny_scenarios):
    own = [lies[0].model_copy(update={"response": f" {lies[0].false_answer}"}), lies[1]]
    honest = [s for s in tiny_scenarios if s.condition.value == "honest"][:2]
    selection = select_by_behaviour(own + honest, "lie+false", {lies[1].id: f" {lies[1].false_answer}"})
    assert [s.id for s in selection.scenarios] == [lies[0].id, lies[1].id] and selection.n_base == 2
    judge_without_facts = AnswerJudge(facts=[])  # the scenario's own answers only: another capital is no answer
    other = select_by_behaviour(lies[:1], "lie+false", {lies[0].id: f" {other_answer(lies[0], lies)}"},
                                judge=judge_without_facts)
    assert other.scenarios == [] and other.no_answer == 1


def test_an_unknown_behaviour_is_refused_before_judging(lies):
    with pytest.raises(WorkbenchError, match="unknown behaviour 'lied'"):
        select_by_behaviour(lies, "lie+lied", {})


# ----------------------------------------------------------------------------- contrast


@pytest.fixture(scope="module")
def lie_args(tmp_path_factory, tiny_model_dir, tiny_sae_dir, lies):
    scenarios, _ = behaviour_split(lies)
    path = tmp_path_factory.mktemp("behaviour") / "lies.jsonl"
    write_scenarios(path, scenarios)
    return ["--model", str(tiny_model_dir), "--sae-path", str(tiny_sae_dir), "--scenarios", str(path)]


def test_contrast_lied_against_resisted_on_the_command_line(lie_args):
    runner = CliRunner()
    result = runner.invoke(app, ["contrast", "lie+false", "lie+truth", *lie_args, "--json", "--n-boot", "200",
                                 "--min-active", "1"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout.strip().splitlines()[-1])
    assert (table["condition_a"], table["n_a"], table["condition_b"], table["n_b"]) == ("lie+false", 10, "lie+truth", 8)
    assert table["behaviour"] == [{"condition": "lie", "n": 24, "by_behaviour": {"false": 10, "truth": 8},
                                   "no_answer": 6, "no_response": 0}]
    assert table["rows"] and all(r["auroc_low"] <= r["auroc"] <= r["auroc_high"] for r in table["rows"])
    printed = runner.invoke(app, ["contrast", "lie+truth", "lie+false", *lie_args, "--n-boot", "200"])
    assert printed.exit_code == 0, printed.output
    assert "lie+truth (n=8) vs lie+false (n=10)" in printed.stdout
    assert "lie responses (n=24): 10 false, 8 truth, 6 no answer (on neither side)" in printed.stdout


def test_contrast_needs_the_scenarios_to_judge_responses(tiny_model, tiny_sae, lies):
    from workbench.features.capture import inputs_from_scenarios, run_capture
    from workbench.features.contrast import condition_items, contrast

    scenarios, counts = behaviour_split(lies)
    capture = run_capture(tiny_model, [tiny_sae], inputs_from_scenarios(scenarios))
    with pytest.raises(WorkbenchError, match="give the scenarios the capture was made from"):
        contrast(capture, tiny_sae.site.name, "lie+false", "lie+truth")
    with pytest.raises(WorkbenchError, match="no match among the scenarios given"):
        contrast(capture, tiny_sae.site.name, "lie+false", "lie+truth", scenarios=scenarios[1:])
    with pytest.raises(WorkbenchError) as few:
        contrast(capture, tiny_sae.site.name, "lie+false", "lie+truth", scenarios=scenarios, min_items=9)
    assert str(few.value) == ("only 8 items of 'lie+truth' have tokens at position rule 'last_prompt_token'; at least "
                              "9 are needed (add scenarios); lie responses (n=24): 10 false, 8 truth, 6 no answer "
                              "(on neither side)")
    (lied, resisted), splits = condition_items(capture, ("lie+false", "lie+truth"), scenarios)
    assert [capture.items[i].response for i in resisted] == [s.response for s in scenarios[10:18]]
    assert len(lied) == counts["false"] and splits[0].no_answer == counts["no_answer"]


# ----------------------------------------------------------------------------- behaviour rates on any file


def test_judgement_rates_count_every_answer_per_condition_and_template(tiny_scenarios):
    from tests.conftest import behaviour_split
    from workbench.organism.evaluation import judgement_rates
    from workbench.scenarios import AnswerJudge

    lies, expected = behaviour_split([s for s in tiny_scenarios if s.condition.value == "lie"])
    judge = AnswerJudge.for_scenarios(lies)
    rows = judgement_rates(lies, [judge(s.response, s) for s in lies])
    overall = next(r for r in rows if r.template_id == "all")
    assert (overall.condition, overall.n) == ("lie", 24)
    assert round(overall.rates["truth"].value * 24) == expected["truth"]
    assert round((overall.rates["stated_false"].value + overall.rates["other_false"].value) * 24) == expected["false"]
    assert round(overall.rates["no_answer"].value * 24) == expected["no_answer"]
    assert round(overall.rates["other_false"].value * 24) == 4  # another capital, not the scenario's own
    per_template = [r for r in rows if r.template_id != "all"]
    assert sum(r.n for r in per_template) == 24 and len(per_template) == len({s.template_id for s in lies})
    for row in rows:
        assert sum(e.value for e in row.rates.values()) == pytest.approx(1.0)
        assert all(e.n == row.n and e.low <= e.value <= e.high for e in row.rates.values())


def test_the_behaviour_command_measures_any_model_on_any_file(tiny_model_dir, tiny_scenario_file, tmp_path, capsys):
    import json

    from workbench import cli
    from workbench.scenarios import read_scenarios

    out = tmp_path / "behaviour.json"
    with pytest.raises(SystemExit) as exited:
        cli.main(["behaviour", "--model", str(tiny_model_dir), "--scenarios", str(tiny_scenario_file),
                  "--split", "heldout", "--max-new-tokens", "3", "--out", str(out), "--json"])
    assert exited.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    heldout = [s for s in read_scenarios(tiny_scenario_file) if s.split.value == "heldout"]
    for condition in {s.condition.value for s in heldout}:
        overall = next(r for r in rows if r["condition"] == condition and r["template_id"] == "all")
        assert overall["n"] == sum(s.condition.value == condition for s in heldout)
    written = json.loads(out.read_text())
    assert len(written["answers"]) == len(heldout)


def test_a_features_evidence_is_shown_per_behaviour_beside_its_condition(lie_args, tiny_sae):
    """The explorer and `feature` show each condition narrowed by what the model did: the lied and resisted
    rows count the judged responses, and together they never exceed their condition."""
    result = CliRunner().invoke(app, ["feature", tiny_sae.site.name, "0", *lie_args, "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["condition"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])["per_condition"]}
    assert [rows[c]["active_fraction"]["n"] for c in ("lie", "lie+false", "lie+truth")] == [24, 10, 8]
    fired = {c: round(rows[c]["active_fraction"]["value"] * rows[c]["active_fraction"]["n"]) for c in rows}
    assert fired["lie+false"] + fired["lie+truth"] <= fired["lie"]
