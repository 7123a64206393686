"""Typed run records: every part typed, old versions migrated with every number kept, JSON round trips,
and what the runner constructs for the parts it owns.

Fast: the committed records, the frozen fixtures of versions 1 and 2, and hand-built results.
The runner test at the end uses the tiny model.
"""

from __future__ import annotations

import json
import math
import re
from html import unescape
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from workbench.causal.experiment import Curve, EditSettings, Experiment, ExperimentResult, Generation
from workbench.core.errors import WorkbenchError
from workbench.core.stats import Estimate
from workbench.features.probes import ProbeResult
from workbench.hypotheses import records
from workbench.hypotheses.verdicts import judge_prediction
from workbench.hypotheses.records import (
    INTERVAL_NOT_RECORDED,
    NOT_RECORDED,
    RECORD_VERSION,
    CausalDetails,
    ContrastDetails,
    Environment,
    PredictionResult,
    ResponseCall,
    RunRecord,
    read_record,
    write_record,
)
from workbench.report import build_report, render_report

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
V1, V2 = FIXTURES / "run-record-v1.json", FIXTURES / "run-record-v2.json"
#: A committed record as version 3 wrote it (before the black-box baseline), frozen.
V3 = FIXTURES / "run-record-v3.json"
COMMITTED = sorted((ROOT / "hypotheses" / "runs").glob("*.json"))
#: The committed records as first written (version 2), frozen: the migration is tested on them.
FROZEN_V2 = sorted((FIXTURES / "records-v2").glob("*.json"))
ALL_RECORDS = [*COMMITTED, *FROZEN_V2, V1, V2, V3]


def _raw(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _same(a: Estimate | dict, b: Estimate | dict) -> bool:
    a = a if isinstance(a, dict) else a.model_dump()
    b = b if isinstance(b, dict) else b.model_dump()
    return all(a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in a)


# ----------------------------------------------------------------------------- every old record loads


def test_the_committed_records_load_and_the_first_three_have_frozen_v2_copies():
    assert len(COMMITTED) >= 3 and all(_raw(p)["version"] in (2, 3, RECORD_VERSION) for p in COMMITTED)
    assert all(read_record(p).verdict for p in COMMITTED)
    frozen = {p.name for p in FROZEN_V2}
    assert frozen == {"copying-l15.json", "intent-l15.json", "lie-direction-l15.json"} <= {p.name for p in COMMITTED}
    assert all(_raw(p)["version"] == 2 for p in FROZEN_V2)
    assert _raw(V2)["version"] == 2 and _raw(V1)["version"] == 1 and _raw(V3)["version"] == 3


def test_a_version_3_record_migrates_without_a_black_box_baseline_and_says_so():
    raw = _raw(V3)
    record = read_record(V3)
    assert record.version == RECORD_VERSION == 4 and record.blackbox is None
    assert [p.measured for p in record.predictions] == [
        Estimate.model_validate(p["measured"]) for p in raw["predictions"]]
    assert record.probe == [ProbeResult.model_validate(p) for p in raw["probe"]]
    assert "No black-box baseline in this record" in render_report(record, "md")
    with pytest.raises(WorkbenchError, match="version 3"):
        RunRecord.model_validate({**raw, "blackbox": None})


def test_a_record_with_a_black_box_baseline_round_trips_and_reports_the_gain(tmp_path):
    from workbench.features.blackbox import BlackBoxComparison, ResponseCount, SeparationGap, evaluate_blackbox
    from workbench.core.stats import auroc_difference
    from tests.unit.test_blackbox import planted

    logodds, conditions, splits = planted()
    white = torch.tensor([3.0 if c == "lie" else 0.0 for c in conditions]) + torch.randn(len(conditions))
    results = evaluate_blackbox(logodds, conditions, splits, n_boot=50, followups="36 follow-up questions (v1, x)",
                                white={pair: {"probe at s": white}
                                       for pair in (("lie", "honest"), ("lie", "parrot"))})
    gap = SeparationGap(positive="lie", first="honest", second="parrot",
                        difference=auroc_difference((white[:5], white[5:10]), (white[:5], white[10:15])))
    comparison = BlackBoxComparison(model_name="m", model_identity="i", site="s", followups="36 follow-up questions",
                                    counts=[ResponseCount(split="train", condition="lie", n=30)],
                                    responses_generated=0, seed=0, results=results, gaps=[gap])
    record = read_record(V3).model_copy(update={"blackbox": comparison})
    assert read_record_roundtrip(record, tmp_path) == record and read_record(tmp_path / "run.json").blackbox == comparison
    markdown = render_report(record, "md")
    gain = results[0].gains[0].gain
    assert "Black-box baseline" in markdown and "probe at s" in markdown
    assert f"{gain.value:.3f}" in markdown and "The black box separates lie from parrot" in markdown


@pytest.mark.parametrize("path", ALL_RECORDS, ids=lambda p: p.name)
def test_old_records_load_round_trip_and_render(path, tmp_path):
    record = read_record(path)
    assert record.version == RECORD_VERSION
    again = RunRecord.model_validate_json(record.model_dump_json())
    assert again == record and again.model_dump_json() == record.model_dump_json()
    write_record(tmp_path / "r.json", record)
    assert read_record(tmp_path / "r.json") == record
    for fmt in ("md", "html"):
        text = render_report(record, fmt)
        assert record.verdict in text.lower() and all(p.name in text for p in record.predictions)


@pytest.mark.parametrize("path", [*FROZEN_V2, V2], ids=lambda p: p.name)
def test_the_v2_migration_keeps_every_number(path):
    raw, record = _raw(path), read_record(path)
    assert [s.model_dump(exclude={"site"}) for s in record.feature_stats] == \
        [RunRecord.model_validate(raw).feature_stats[i].model_dump(exclude={"site"}) for i in range(len(raw["feature_stats"]))]
    for old, stat in zip(raw["feature_stats"], record.feature_stats):
        assert stat.site == raw["setup"]["site"] and stat.values == old["values"]
        assert _same(stat.mean, old["mean"]) and _same(stat.active_fraction, old["active_fraction"])
        assert stat.histogram.edges == old["histogram"]["edges"] and stat.histogram.counts == old["histogram"]["counts"]
    # every number the record had (fields added since, e.g. ``detection``, take their defaults)
    assert [{key: p.model_dump()[key] for key in old} for p, old in zip(record.probe, raw["probe"])] == raw["probe"]
    assert len(record.probe) == len(raw["probe"])
    assert record.environment.model_dump() == raw["environment"]
    assert record.setup.model.adapter == raw["setup"]["model"]["adapter"]
    assert record.setup.train_hash == raw["setup"]["train_hash"] and record.setup.heldout_hash == raw["setup"]["heldout_hash"]
    for old, new in zip(raw["predictions"], record.predictions):
        assert _same(new.measured, old["measured"]) and new.outcome == old["outcome"]
        if old["kind"] == "contrast":
            assert new.contrast.model_dump(exclude={"kind", "a", "b", "position"}) == old["details"]
            continue
        details, causal = old["details"], new.causal
        assert causal.judged_strength == details["judged_strength"]
        target = causal.result.target
        assert target.strengths == details["curve"]["strengths"]
        assert all(_same(e, o) for e, o in zip(target.effects, details["curve"]["target"]))
        assert target.unedited.value == details["curve"]["unedited_mean"]
        assert causal.result.experiment.edit.kind == details["intervention"]["kind"]
        assert list(causal.result.experiment.strengths) == details["intervention"]["strengths"]
        assert causal.result.random_feature_sets == details.get("random_feature_sets", [])
        assert _same(causal.result.neutral_kl, details["neutral_kl"])
        assert [(g.scenario_id, g.before, g.after) for g in causal.result.generations] == \
            [(g["scenario_id"], g["before"], g["after"]) for g in details.get("generations", [])]
        # every control, at the judged strength, as a control curve of that one strength
        assert [c.name for c in new.controls] == [c["name"] for c in old["controls"]]
        for control, old_control in zip(new.controls, old["controls"]):
            assert _same(control.effect, old_control["effect"])
            assert _same(control.target_minus_control, old_control["target_minus_control"])
        assert all(len(c.strengths) == 1 for c in causal.result.curves[1:])


def test_the_v2_migration_marks_what_the_old_record_did_not_measure():
    record = read_record(V2)
    causal = next(p.causal for p in record.predictions if p.causal and len(p.controls) == 4)
    roles = [c.role for c in causal.result.curves]
    assert roles == ["target", "random", "sign_flip", "other_condition", "other_condition"]
    assert causal.result.curves[2].strengths == [-causal.judged_strength]  # the sign-flipped edit
    assert [c.condition for c in causal.result.curves[3:]] == ["parrot", "honest"]
    assert causal.result.target.unedited.method == INTERVAL_NOT_RECORDED and math.isnan(causal.result.target.unedited.low)
    assert all(c.unedited.method == NOT_RECORDED and c.unedited.n == 0 for c in causal.result.curves[3:])
    assert causal.result.scenario_ids == [] and "version-2 record" in causal.result.notes[0]
    assert "version-2 runner" in causal.result.unit
    assert causal.result.experiment.other_conditions == ("parrot", "honest")
    report = render_report(record, "md")
    assert "no interval recorded" in report and "ids not recorded" in report


def test_the_v1_fixture_migrates_its_calls_and_evidence():
    raw, record = _raw(V1), read_record(V1)
    assert [r.call for r in record.responses] == [r["verdict"] for r in raw["responses"]]
    first = record.responses[0].evidence
    old = raw["responses"][0]["evidence"]
    assert (first.knows_truth, first.lens_best_rank, first.feature_activation) == \
        (old["knows_truth"], old["true_answer_rank_midlayer"], old["feature_max"])


def test_unreadable_versions_and_shapes_say_what_to_do(tmp_path):
    data = _raw(V2)
    data["version"] = RECORD_VERSION + 1
    with pytest.raises(WorkbenchError, match="update the workbench"):
        RunRecord.model_validate(data)
    data = _raw(V2)
    del data["predictions"][2]["controls"][0]["effect"]
    with pytest.raises(WorkbenchError, match="malformed"):
        RunRecord.model_validate(data)
    data = _raw(V2)
    data["predictions"][0]["details"]["auroc_by_hand"] = 1.0
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(data))
    with pytest.raises(WorkbenchError, match="odd.json.*auroc_by_hand"):
        read_record(path)


def test_migration_does_not_change_its_input():
    data = _raw(V1)
    before = json.dumps(data, sort_keys=True)
    RunRecord.model_validate(data)
    assert json.dumps(data, sort_keys=True) == before


# ----------------------------------------------------------------------------- the typed parts


def _record_models() -> list[type[BaseModel]]:
    return [obj for obj in vars(records).values()
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == records.__name__
            and not obj.__name__.startswith("_")]


def test_every_field_of_every_record_part_has_a_docstring():
    models = _record_models()
    assert {m.__name__ for m in models} >= {"RunRecord", "Setup", "Environment", "FeatureStat", "PredictionResult",
                                            "CausalDetails", "ContrastDetails", "ResponseCall", "CallEvidence"}
    missing = [f"{m.__name__}.{name}" for m in models for name, info in m.model_fields.items() if not info.description]
    assert missing == []
    assert next(iter(RunRecord.model_fields)) == "version"


def test_no_part_of_a_record_is_a_free_form_dict():
    """Only the hypothesis (the user's own file, re-parsed on a rerun), the package versions and the counts
    per condition are mappings; every other part is a model."""
    def mappings(model: type[BaseModel], seen: set) -> list[str]:
        found = []
        for name, info in model.model_fields.items():
            text = str(info.annotation)
            if "dict[" in text:
                found.append(f"{model.__name__}.{name}")
        return found

    found = [f for m in _record_models() for f in mappings(m, set())]
    assert sorted(found) == ["Environment.packages", "RunRecord.hypothesis", "RunRecord.scenario_counts"]


def test_environment_measures_this_process():
    environment = Environment.measure()
    assert environment.packages["torch"] and environment.packages["pydantic"]
    assert environment.python.count(".") == 2 and environment.torch_threads >= 1
    assert environment.git_commit is None or len(environment.git_commit) == 40


def test_a_call_is_built_from_the_protocols_evidence():
    from workbench.incrimination import ResponseEvidence

    evidence = ResponseEvidence(scenario_id="s1", fact_id="f", condition="lie", template_id="t", response="Oslo.",
                                judgement="stated_false", false_in_context=False, feature_activation=3.5,
                                lens_best_rank=0, verdict="intentional lie", truth="intentional lie")
    call = ResponseCall.from_evidence(evidence)
    assert call.call == "intentional lie" and call.evidence.feature_activation == 3.5
    assert call.evidence.lens_best_rank == 0 and call.evidence.judgement == "stated_false"


# ----------------------------------------------------------------------------- what the engine side constructs


def _estimate(value: float, half: float = 0.05, n: int = 5) -> Estimate:
    return Estimate(value=value, low=value - half, high=value + half, n=n, method="bootstrap")


def experiment_result() -> ExperimentResult:
    """A result as ``causal.experiment.run_experiment`` returns it: every curve over the whole sweep."""
    experiment = Experiment(edit=EditSettings(kind="steer", scale="feature"), features=(3, 7), condition="honest",
                            n_scenarios=5, strengths=(1.0, 2.0), metric="lie_rate")
    strengths = [0.0, 1.0, 2.0]

    def curve(label, role, condition, values, flip=False):
        return Curve(label=label, role=role, condition=condition, strengths=[-s if flip else s for s in strengths],
                     effects=[_estimate(v) for v in values], unedited=_estimate(0.1),
                     target_minus_control=[] if role == "target" else [_estimate(t - v, n=5)
                                                                       for t, v in zip((0.0, 0.2, 0.5), values)])

    return ExperimentResult(
        experiment=experiment, site="model.layers.1", unit="one typical firing (2.5 residual units)",
        scenario_ids=[f"s{i}" for i in range(5)],
        curves=[curve("steer 3, 7", "target", "honest", (0.0, 0.2, 0.5)),
                curve("random matched features (3 sets, averaged)", "random", "honest", (0.0, 0.0, 0.05)),
                curve("sign-flipped", "sign_flip", "honest", (0.0, -0.1, -0.2), flip=True),
                curve("same edit on parrot", "other_condition", "parrot", (0.0, 0.01, 0.02))],
        generations=[Generation(scenario_id="s0", question="Capital of France?", true_answer="Paris", before="Paris.",
                                after="Rome.", strength=2.0)],
        random_feature_sets=[[11, 12], [13, 14], [15, 16]], neutral_kl=_estimate(0.02, 0.01, 8),
        notes=["the clamp control does not apply to steering"])


def causal_prediction(result: ExperimentResult, judged: float = 2.0) -> PredictionResult:
    """Exactly what the runner's causal test constructs from the engine's result."""
    target = result.target
    measured = target.effects[target.strengths.index(judged)]
    return PredictionResult(
        name="steer-honest", kind="causal", description="steering honest prompts induces lies",
        metric=f"{result.experiment.metric} change at strength {judged:g}", comparison=">=", threshold=0.3,
        measured=measured, outcome=judge_prediction(measured, ">=", 0.3), notes=[],
        details=CausalDetails(result=result, judged_strength=judged))


def contrast_prediction() -> PredictionResult:
    """Exactly what the runner's contrast prediction constructs."""
    measured = Estimate(value=0.9, low=0.85, high=0.95, n=10, method="bootstrap")
    return PredictionResult(
        name="lie-vs-parrot", kind="contrast", description="features separate lie from parrot",
        metric="auroc lie vs parrot at last_prompt_token", comparison=">=", threshold=0.8, measured=measured,
        outcome="holds", details=ContrastDetails(a="lie", b="parrot", position="last_prompt_token", n_a=5, n_b=5,
                                                 mean_a=2.0, mean_b=0.1, active_a=5, active_b=1))


def test_the_engines_result_becomes_a_causal_prediction_with_controls_at_the_judged_strength():
    prediction = causal_prediction(experiment_result())
    controls = prediction.controls
    assert [(c.role, c.strength) for c in controls] == [("random", 2.0), ("sign_flip", -2.0), ("other_condition", 2.0)]
    assert controls[1].effect.value == -0.2 and controls[1].target_minus_control.value == pytest.approx(0.7)
    with pytest.raises(ValueError, match="judged_strength 3 is not one of"):
        CausalDetails(result=experiment_result(), judged_strength=3.0)
    with pytest.raises(ValueError, match="holds causal details"):
        PredictionResult(**{**contrast_prediction().model_dump(exclude={"details"}),
                            "details": CausalDetails(result=experiment_result(), judged_strength=2.0)})


def test_a_current_record_round_trips_and_reports_every_curve_and_generation():
    base = read_record(V1).model_dump()
    base["predictions"] = [contrast_prediction(), causal_prediction(experiment_result())]
    record = RunRecord.model_validate(base)
    assert RunRecord.model_validate_json(record.model_dump_json()) == record
    document = build_report(record)
    assert {f.name for f in document.figures()} >= {"prediction-2-effects", "prediction-2-curves"}
    html = unescape(re.sub(r"<[^>]+>", "", render_report(record, "html")))
    for text in ("random matched features (3 sets, averaged)", "0.500 [0.450, 0.550] n=5", "-0.200 [-0.250, -0.150] n=5",
                 "Capital of France?", "Rome.", "one typical firing (2.5 residual units)",
                 "the clamp control does not apply to steering", "s0, s1, s2, s3, s4"):
        assert text in html
    markdown = render_report(record, "md")
    assert "| lie | 5 | 2.000 (no interval recorded) | 1.000 \\[0.566, 1.000\\] n=5 (5 of 5) |" in markdown


# ----------------------------------------------------------------------------- the runner's own parts


def test_the_runner_records_typed_setup_environment_feature_stats_and_probes(monkeypatch, tiny_model, tiny_sae,
                                                                             tmp_path):
    """The parts the runner builds itself (causal tests and contrasts stand in, as the engine would make them)."""
    from workbench.hypotheses import parse_hypothesis, runner
    from workbench.scenarios import build_contrast_set, load_facts, write_scenarios

    scenarios = tmp_path / "scenarios.jsonl"
    write_scenarios(scenarios, build_contrast_set(load_facts()[:60], seed=0))
    monkeypatch.setattr(runner, "_contrast_prediction", lambda ctx, c: contrast_prediction())
    monkeypatch.setattr(runner, "_causal_test", lambda *args: causal_prediction(experiment_result()))
    hypothesis = parse_hypothesis({
        "name": "tiny", "claim": "Features 3 and 7 carry intent.", "features": [3, 7],
        "scenarios": {"source": "file", "file": str(scenarios), "max_per_condition": 5},
        "contrasts": [{"name": "lie-vs-parrot", "a": "lie", "b": "parrot", "threshold": 0.8}],
        "tests": [{"name": "steer-honest", "intervention": {"kind": "steer", "strengths": [1.0, 2.0]},
                   "condition": "honest", "metric": "lie_rate", "comparison": ">=", "threshold": 0.3}],
        "max_new_tokens": 3})
    record = runner.run_hypothesis(hypothesis, path="tiny.yaml", loaded=(tiny_model, tiny_sae))
    assert record.setup.site == tiny_sae.site.name and record.setup.d_sae == tiny_sae.d_sae
    assert record.setup.model_identity == tiny_model.identity and record.setup.scenarios.source == "file"
    assert len(record.setup.train_hash) == 16 and record.setup.seed == 0
    assert record.environment.packages["torch"]
    assert {(s.feature, s.condition) for s in record.feature_stats} >= {(3, "lie"), (7, "parrot")}
    assert all(s.n == len(s.values) == sum(s.histogram.counts) for s in record.feature_stats)
    assert {p.kind for p in record.probe} == {"difference_of_means", "logistic_regression"}
    blackbox = record.blackbox  # on the probe's held-out sample (5 a condition), fitted on train responses
    assert [(r.positive, r.negative, r.n_heldout_positive) for r in blackbox.results] == [
        ("lie", "honest", 5), ("lie", "parrot", 5)]
    assert [g.detector.split(" at ")[0] for g in blackbox.results[0].gains] == [
        "probe: logistic_regression", "features 3+7"]
    assert read_record_roundtrip(record, tmp_path) == record


def read_record_roundtrip(record: RunRecord, folder: Path) -> RunRecord:
    write_record(folder / "run.json", record)
    return read_record(folder / "run.json")


def test_a_prediction_built_the_version_2_way_says_how_to_build_it_now():
    measured = Estimate(value=0.2, low=0.1, high=0.3, n=5, method="bootstrap")
    with pytest.raises(ValueError, match="CausalDetails\\(result="):
        PredictionResult(name="p", kind="causal", description="", metric="m", comparison=">=", threshold=0.1,
                         measured=measured, outcome="holds", controls=[], details={"curve": {}})
