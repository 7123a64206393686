"""Hypothesis files, runs, records and verdicts, on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from workbench.core.errors import FeatureIndexError, WorkbenchError
from workbench.hypotheses import compare_records, parse_hypothesis, preflight, read_hypothesis, run_hypothesis
from workbench.hypotheses.records import PredictionResult, read_record, write_record
from workbench.hypotheses.verdicts import decide_verdict, judge_prediction
from workbench.core.stats import Estimate


@pytest.fixture(scope="module", autouse=True)
def _no_blackbox_baseline():
    """The runs here test contrasts, causal tests and verdicts; the black-box baseline a run records (a pass
    per follow-up question and response) is tested in test_records and test_blackbox."""
    from workbench.hypotheses import runner

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "_blackbox_baseline", lambda ctx: None)
        yield


def base_hypothesis(scenario_file, **overrides) -> dict:
    data = {
        "name": "tiny",
        "claim": "Features 3 and 7 carry intent.",
        "features": [3, 7],
        "scenarios": {"source": "file", "file": str(scenario_file), "max_per_condition": 5},
        "contrasts": [{"name": "lie-vs-parrot", "a": "lie", "b": "parrot", "threshold": 0.8}],
        "tests": [
            {"name": "ablate-lies", "intervention": {"kind": "ablate"}, "condition": "lie", "metric": "p_true",
             "comparison": ">=", "threshold": 0.1, "n_random": 2},
            {"name": "steer-honest", "intervention": {"kind": "steer", "strengths": [1.0, 2.0]},
             "condition": "honest", "metric": "lie_rate", "comparison": ">=", "threshold": 0.3,
             "controls": ["random", "sign_flip"], "n_random": 1},
        ],
        "max_new_tokens": 3,
    }
    data.update(overrides)
    return data


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    from workbench.scenarios import build_contrast_set, load_facts, write_scenarios

    facts = load_facts()[:60]
    path = tmp_path_factory.mktemp("hyp") / "scenarios.jsonl"
    write_scenarios(path, build_contrast_set(facts, seed=0))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": []}, "name the features"),
        ({"tests": [{"name": "t", "intervention": {"kind": "steer", "strengths": []}, "condition": "lie",
                     "metric": "p_true", "comparison": ">=", "threshold": 0.1}]}, "strength sweep is empty"),
        ({"tests": [{"name": "t", "intervention": {"kind": "steer", "strengths": [1.0, float("nan")]},
                     "condition": "lie", "metric": "p_true", "comparison": ">=", "threshold": 0.1}]}, "finite"),
        ({"tests": [{"name": "t", "intervention": {"kind": "ablate"}, "condition": "lie", "metric": "vibes",
                     "comparison": ">=", "threshold": 0.1}]}, "unknown metric"),
        ({"contrasts": [], "tests": []}, "at least one prediction"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_hypotheses_say_which_field(scenario_file, change, message):
    with pytest.raises(WorkbenchError, match=message):
        parse_hypothesis(base_hypothesis(scenario_file, **change), "bad.yaml")


def test_yaml_files_are_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(WorkbenchError, match="not valid YAML"):
        read_hypothesis(path)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(WorkbenchError, match="mapping"):
        read_hypothesis(tmp_path / "list.yaml")


def test_missing_feature_or_condition_fails_before_any_compute(scenario_file, tiny_model, tiny_sae, monkeypatch):
    from workbench.hypotheses import scenario_sets

    forward_passes = []
    monkeypatch.setattr(type(tiny_model.lm), "trace", lambda *a, **k: forward_passes.append("trace"))
    monkeypatch.setattr(type(tiny_model.lm), "generate", lambda *a, **k: forward_passes.append("generate"))
    hypothesis = parse_hypothesis(base_hypothesis(scenario_file, features=[3, 9999]))
    with pytest.raises(FeatureIndexError, match="out of range"):
        run_hypothesis(hypothesis, loaded=(tiny_model, tiny_sae))
    needs_ignorant = parse_hypothesis(base_hypothesis(scenario_file, contrasts=[
        {"name": "x", "a": "lie", "b": "nonsense", "threshold": 0.8}], tests=[]))
    with pytest.raises(WorkbenchError, match="unknown condition"):
        run_hypothesis(needs_ignorant, loaded=(tiny_model, tiny_sae))
    bad_patch = parse_hypothesis(base_hypothesis(scenario_file, tests=[
        {"name": "p", "intervention": {"kind": "patch", "positions": "all"}, "condition": "lie", "metric": "p_true",
         "comparison": ">=", "threshold": 0.1}]))
    with pytest.raises(WorkbenchError, match="test 'p': positions 'all' do not work for patch"):
        run_hypothesis(bad_patch, loaded=(tiny_model, tiny_sae))
    assert forward_passes == []
    _, heldout = scenario_sets(needs_ignorant)
    with pytest.raises(WorkbenchError, match="no ignorant scenarios"):
        preflight(parse_hypothesis(base_hypothesis(scenario_file, contrasts=[
            {"name": "x", "a": "lie", "b": "ignorant", "threshold": 0.8}], tests=[])), tiny_sae,
            [s for s in heldout if s.condition.value != "ignorant"])


@pytest.fixture(scope="module")
def tiny_run(scenario_file, tiny_model, tiny_sae, tmp_path_factory):
    import os

    os.environ["WORKBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    hypothesis = parse_hypothesis(base_hypothesis(scenario_file))
    return hypothesis, run_hypothesis(hypothesis, path="tiny.yaml", loaded=(tiny_model, tiny_sae))


def test_run_measures_every_prediction_with_controls(tiny_run):
    hypothesis, record = tiny_run
    assert [p.name for p in record.predictions] == ["lie-vs-parrot", "ablate-lies", "steer-honest"]
    ablation = record.predictions[1]
    assert ablation.measured.n == 5 and ablation.measured.low <= ablation.measured.value <= ablation.measured.high
    names = [c.name for c in ablation.controls]
    assert any(n.startswith("random features") for n in names)
    assert "sign-flipped edit" in names
    assert {"same edit on parrot", "same edit on honest"} <= set(names)
    # The sweep curve starts at strength 0, where the edit is the unedited model: no effect.
    curve = record.predictions[2].causal.result.target
    assert curve.strengths[0] == 0.0 and curve.effects[0].value == 0.0
    assert (record.verdict, record.verdict_reason) == decide_verdict(record.predictions)
    assert record.probe and {p.kind for p in record.probe} == {"difference_of_means", "logistic_regression"}
    assert record.environment.packages["torch"]


def test_record_round_trips_and_reruns_to_the_same_numbers(tiny_run, tiny_model, tiny_sae, tmp_path):
    hypothesis, record = tiny_run
    path = tmp_path / "run.json"
    write_record(path, record)
    loaded = read_record(path)
    assert loaded.model_dump_json() == record.model_dump_json()
    again = run_hypothesis(parse_hypothesis(loaded.hypothesis), path="tiny.yaml", loaded=(tiny_model, tiny_sae))
    assert compare_records(record, again) == []


def _prediction(low: float, high: float, comparison: str, threshold: float) -> PredictionResult:
    measured = Estimate(value=(low + high) / 2, low=low, high=high, n=10, method="bootstrap")
    return PredictionResult(name="p", kind="causal", description="", metric="m", comparison=comparison,
                            threshold=threshold, measured=measured,
                            outcome=judge_prediction(measured, comparison, threshold))


@given(low=st.floats(-5, 5), width=st.floats(0, 5), threshold=st.floats(-5, 5))
def test_outcome_follows_the_interval(low, width, threshold):
    high = low + width
    outcome = _prediction(low, high, ">=", threshold).outcome
    if low >= threshold:
        assert outcome == "holds"
    elif high < threshold:
        assert outcome == "contradicted"
    else:
        assert outcome == "unclear"
    flipped = _prediction(low, high, "<=", threshold).outcome
    assert (flipped == "holds") == (high <= threshold)


def test_verdict_needs_every_prediction_to_hold():
    holds, unclear, contradicted = (_prediction(0.5, 0.9, ">=", 0.2), _prediction(0.1, 0.9, ">=", 0.2),
                                    _prediction(0.0, 0.1, ">=", 0.2))
    assert decide_verdict([holds, holds])[0] == "supported"
    assert decide_verdict([holds, unclear])[0] == "inconclusive"
    assert decide_verdict([holds, unclear, contradicted])[0] == "refuted"
    assert decide_verdict([])[0] == "inconclusive"


def test_nan_measurements_are_unclear_and_survive_json(tmp_path):
    nan = Estimate(value=math.nan, low=math.nan, high=math.nan, n=0, method="bootstrap")
    assert judge_prediction(nan, ">=", 0.1) == "unclear"
    assert Estimate.model_validate_json(nan.model_dump_json()).n == 0


def test_shipped_hypotheses_are_valid():
    from workbench.hypotheses import list_hypotheses

    files = list_hypotheses()
    assert len(files) >= 2
    for path in files:
        hypothesis = read_hypothesis(path)
        assert (hypothesis.features or hypothesis.direction) and (hypothesis.contrasts or hypothesis.tests)
        assert yaml.safe_load(path.read_text())["name"] == hypothesis.name
        # every shipped hypothesis has a committed run record from the same file
        record = read_record(path.parent / "runs" / f"{hypothesis.name}.json")
        assert parse_hypothesis(record.hypothesis, "record") == hypothesis


def test_matched_random_features_avoid_targets_and_match_density():
    from workbench.causal.measurements import matched_random_features

    density = torch.cat([torch.full((50,), 1e-4), torch.full((50,), 1e-1)])
    norms = torch.ones(100)
    sets = matched_random_features([60, 61], density, norms, n_sets=3, seed=0)
    assert len(sets) == 3
    drawn = [f for s in sets for f in s]
    assert not {60, 61} & set(drawn)
    assert all(f >= 50 for f in drawn)  # same density band as the targets
    assert len(set(drawn)) == len(drawn)


def test_paths_inside_the_repository_are_recorded_relative_to_it(tmp_path):
    from workbench.core.constants import REPO_ROOT, repo_relative

    assert repo_relative(str(REPO_ROOT / "organisms" / "smollm2-liar")) == "organisms/smollm2-liar"
    assert repo_relative(str(tmp_path)) == str(tmp_path)  # outside: kept as given
    assert repo_relative("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert repo_relative(None) is None


def test_a_lab_experiment_becomes_a_valid_hypothesis():
    from workbench.causal.experiment import EditSettings, Experiment
    from workbench.model.resolve import refs_from_specs, specs_from_refs
    from workbench.hypotheses import hypothesis_from_experiment
    from workbench.model.loading import ModelSpec
    from workbench.model.saes import SAESpec

    model_ref, sae_ref = refs_from_specs(ModelSpec(source="some/folder"), SAESpec(path="saes/x"))
    experiment = Experiment(edit=EditSettings(kind="ablate"), features=(3, 7), strengths=(0.0, 1.0), condition="lie")
    hypothesis = hypothesis_from_experiment(experiment, name="h1", claim="3 and 7 carry intent", comparison=">=",
                                            threshold=0.05, model_ref=model_ref, sae_ref=sae_ref)
    assert hypothesis.features == [3, 7] and hypothesis.tests[0].intervention.kind == "ablate"
    assert hypothesis.tests[0].intervention.strengths == [1.0]
    model_spec, sae_spec = specs_from_refs(hypothesis.model, hypothesis.sae, hypothesis.site)
    assert model_spec.source == "some/folder" and sae_spec.path == "saes/x"
    with pytest.raises(WorkbenchError, match="name"):
        hypothesis_from_experiment(experiment, name=" ", claim="c", comparison=">=", threshold=0.05,
                                   model_ref=model_ref, sae_ref=sae_ref)
    with pytest.raises(WorkbenchError, match="comparison"):
        hypothesis_from_experiment(experiment, name="h", claim="c", comparison="=>", threshold=0.05,
                                   model_ref=model_ref, sae_ref=sae_ref)


def test_a_probe_experiment_becomes_a_direction_hypothesis():
    from workbench.causal.experiment import EditSettings, Experiment, ProbeDirection
    from workbench.hypotheses import hypothesis_from_experiment

    experiment = Experiment(edit=EditSettings(kind="steer", scale="residual"), strengths=(0.0, 0.5),
                            direction=ProbeDirection(positive="lie", negative="honest"), condition="honest")
    refs = {"model_ref": {"source": "some/folder"}, "sae_ref": {"path": "saes/x"}}
    hypothesis = hypothesis_from_experiment(experiment, name="probe", claim="the lie direction induces lies",
                                            comparison=">=", threshold=0.1, **refs)
    assert hypothesis.features == [] and hypothesis.direction.positive == "lie"
    assert hypothesis.tests[0].intervention.scale == "residual"
    with pytest.raises(WorkbenchError, match="unset the layer"):
        hypothesis_from_experiment(experiment.model_copy(update={"layer": 1}), name="p", claim="c", comparison=">=",
                                   threshold=0.1, **refs)


@pytest.mark.parametrize("kind", ["ablate", "steer", "clamp", "patch"])
def test_an_experiment_and_the_hypothesis_saved_from_it_give_identical_curves(kind, scenario_file, tiny_model,
                                                                             tiny_sae):
    """What the causal lab runs and what the saved hypothesis file reruns are the same experiment."""
    from workbench.causal.experiment import EditSettings, Experiment, ExperimentContext, run_experiment
    from workbench.hypotheses import hypothesis_from_experiment
    from workbench.scenarios import read_scenarios

    scenarios = read_scenarios(scenario_file)  # the lab's pool: the whole file
    ctx = ExperimentContext(tiny_model, tiny_sae, scenarios, site=tiny_sae.site.name)
    features = () if kind == "patch" else tuple(int(f) for f in torch.argsort(ctx.density(), descending=True)[:2])
    edit = {"ablate": {"kind": "ablate"}, "steer": {"kind": "steer", "scale": "feature"},
            "clamp": {"kind": "clamp", "scale": "feature"},
            "patch": {"kind": "patch", "positions": "last_prompt_token", "patch_from": "honest"}}[kind]
    experiment = Experiment(edit=EditSettings(**edit), features=features, condition="lie", n_scenarios=5,
                            strengths=(0.0, 0.5, 2.0), metric="p_true",
                            controls=("random", "sign_flip", "other_conditions"), other_conditions=("honest",),
                            n_random=2, n_generations=0, neutral_kl=False)
    in_the_lab = run_experiment(tiny_model, tiny_sae, experiment, scenarios)
    hypothesis = hypothesis_from_experiment(experiment, name="saved", claim="c", comparison=">=", threshold=0.0,
                                            model_ref={"source": "tiny"}, sae_ref={"path": "tiny"},
                                            scenarios_file=str(scenario_file))
    record = run_hypothesis(hypothesis, loaded=(tiny_model, tiny_sae))
    rerun = record.predictions[0].causal.result
    assert [c.model_dump(mode="json") for c in in_the_lab.curves] == [c.model_dump(mode="json") for c in rerun.curves]
    assert len(in_the_lab.curves) >= 3  # the controls were really measured, not only the target


@pytest.mark.parametrize(("low", "high", "prompt_separates", "n", "reading"), [
    (0.85, 0.95, True, 10, "behaviour"),
    (0.80, 0.95, False, 10, "behaviour"),  # at the threshold counts, as a prediction's does
    (0.40, 0.70, True, 10, "instruction"),
    (0.40, 0.70, False, 10, "unclear"),  # nothing separates: no instruction to read either
    (0.60, 0.90, True, 10, "unclear"),  # the interval straddles the threshold
    (0.85, 0.95, True, 4, "too few"),
    (float("nan"), float("nan"), True, 10, "too few"),
])
def test_the_behaviour_reading_follows_the_interval(low, high, prompt_separates, n, reading):
    from workbench.core.stats import read_behaviour

    auroc = Estimate(value=(low + high) / 2, low=low, high=high, n=2 * n, method="bootstrap")
    assert read_behaviour(auroc, 0.8, prompt_separates, n, n + 3, min_n=5) == reading


@pytest.fixture(scope="module")
def behaviour_run(tiny_scenarios, tiny_model, tiny_sae, tmp_path_factory):
    """A run whose lie responses are set (10 lies, 8 resisted, 6 neither: ``conftest.behaviour_split``)."""
    import os

    from tests.conftest import behaviour_split
    from workbench.scenarios import Split, write_scenarios

    os.environ["WORKBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    lies, expected = behaviour_split([s for s in tiny_scenarios if s.condition.value == "lie"])
    others = [s for s in tiny_scenarios if s.condition.value in ("honest", "parrot")]
    scenarios = [s.model_copy(update={"split": Split.heldout}) for s in lies + others]
    path = tmp_path_factory.mktemp("behaviour") / "scenarios.jsonl"
    write_scenarios(path, scenarios)
    hypothesis = parse_hypothesis(base_hypothesis(path, tests=[], probe_baseline=False, contrasts=[
        {"name": "lie-vs-honest", "a": "lie", "b": "honest", "threshold": 0.7},
        {"name": "lies-vs-resisted", "a": "lie+false", "b": "lie+truth", "threshold": 0.7}]))
    return run_hypothesis(hypothesis, loaded=(tiny_model, tiny_sae)), expected


def test_every_run_checks_intent_against_instruction(behaviour_run, tmp_path):
    from workbench.core.stats import read_behaviour
    from workbench.report import build_report, to_markdown

    record, expected = behaviour_run
    check = record.behaviour_check
    assert (check.n_false, check.n_truth, check.no_answer) == (expected["false"], expected["truth"],
                                                                 expected["no_answer"])
    assert check.threshold == 0.7 and check.position == "last_prompt_token"
    assert check.auroc.n == expected["false"] + expected["truth"]
    assert [name for name, _ in check.prompt_aurocs] == ["lie-vs-honest"]  # the behaviour contrast is not a prompt contrast
    prompt = record.predictions[0].measured
    assert check.reading == read_behaviour(check.auroc, 0.7, prompt.low >= 0.7, check.n_false, check.n_truth, 5)
    # A hypothesis can predict the behaviour contrast itself: measured on the same responses.
    predicted = record.predictions[1]
    assert predicted.details.n_a == expected["false"] and predicted.details.n_b == expected["truth"]
    assert predicted.measured.value == pytest.approx(check.auroc.value)
    # The report says what the check found, beside the verdict and in the evidence.
    text = to_markdown(build_report(record))
    assert "Act or instruction?" in text and check.summary.split(":")[0] in text and check.condition == "lie"
    path = tmp_path / "record.json"
    write_record(path, record)
    assert read_record(path).behaviour_check == check


def test_an_old_record_says_it_has_no_behaviour_check():
    from pathlib import Path

    from workbench.report import build_report, to_markdown

    record = read_record(Path(__file__).parents[1] / "fixtures" / "run-record-v1.json")
    assert record.behaviour_check is None
    assert "This record has no behaviour check" in to_markdown(build_report(record))


def test_the_probe_baseline_reports_recall_at_1pct_fpr_on_every_held_out_honest_answer(tiny_run):
    from workbench.report import build_report, to_markdown
    from workbench.hypotheses.runner import scenario_sets

    hypothesis, record = tiny_run
    _, heldout = scenario_sets(hypothesis)
    honest = sum(s.condition.value == "honest" for s in heldout)
    assert record.probe and all(p.detection is not None for p in record.probe)
    for probe in record.probe:
        assert probe.detection.control == "held-out honest answers" and probe.detection.n_control == honest
        assert probe.detection.resolved == (honest >= 100)
    assert "recall at 1% FPR" in to_markdown(build_report(record))


def test_a_copying_hypothesis_is_checked_on_parrot_prompts(tiny_scenarios, tiny_model, tiny_sae, tmp_path, monkeypatch):
    """The check runs on the condition the hypothesis is about (its first contrast's higher side): for copying
    features, parrot prompts the model repeated the falsehood on vs those it resisted."""
    from workbench.scenarios import Split, write_scenarios

    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    parrots = [s for s in tiny_scenarios if s.condition.value == "parrot"][:16]
    planted = [s.model_copy(update={"response": f" {s.false_answer if i < 9 else s.true_answer}.",
                                    "split": Split.heldout}) for i, s in enumerate(parrots)]
    others = [s.model_copy(update={"split": Split.heldout}) for s in tiny_scenarios if s.condition.value == "lie"]
    path = tmp_path / "scenarios.jsonl"
    write_scenarios(path, planted + others)
    hypothesis = parse_hypothesis(base_hypothesis(path, tests=[], probe_baseline=False, contrasts=[
        {"name": "parrot-vs-lie", "a": "parrot", "b": "lie", "threshold": 0.7}]))
    check = run_hypothesis(hypothesis, loaded=(tiny_model, tiny_sae)).behaviour_check
    assert check.condition == "parrot" and (check.n_false, check.n_truth) == (9, 7)
    assert [name for name, _ in check.prompt_aurocs] == ["parrot-vs-lie"]
    assert "lie instruction" not in check.summary
