"""Smoke tests of every page with AppTest on a tiny model, tiny SAE and tiny scenario set."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.model.loading import ModelSpec
from workbench.model.saes import SAESpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_setup(tiny_model_dir, tiny_sae_dir, tiny_scenario_file):
    return {"model_spec": ModelSpec(source=str(tiny_model_dir)), "sae_spec": SAESpec(path=str(tiny_sae_dir)),
            "scenarios_path": str(tiny_scenario_file), "per_condition": 8}


def run_page(path: str, state: dict) -> AppTest:
    app = AppTest.from_file(str(ROOT / path), default_timeout=120)
    for key, value in state.items():
        app.session_state[key] = value
    return app.run()


def test_home_page(tiny_setup):
    app = run_page("Home.py", tiny_setup)
    assert not app.exception
    assert app.title[0].value == "Intent workbench"
    assert [m.value for m in app.metric][0] == "3"  # layers of the tiny model


def test_model_page_shows_what_is_loaded(tiny_setup):
    app = run_page("pages/1_Model_and_SAEs.py", tiny_setup)
    assert not app.exception
    assert any("128 features" in m.value for m in app.markdown)
    assert app.button  # the form's Load button


def test_model_page_reports_bad_model_without_traceback(tiny_setup):
    app = run_page("pages/1_Model_and_SAEs.py", tiny_setup | {"model_spec": ModelSpec(source="./no/such/model")})
    assert not app.exception
    assert any("no model folder" in e.value for e in app.error)


def test_feature_explorer(tiny_setup):
    app = run_page("pages/2_Feature_explorer.py", tiny_setup)
    assert not app.exception
    assert app.text_input[0].value == "0"
    app.text_input[0].set_value("5").run()
    assert not app.exception
    assert any("Feature 5" in s.value for s in app.subheader)
    app.button[0].click().run()  # "Try your own" with the default conversation
    assert not app.exception
    assert not app.error


def test_feature_explorer_takes_every_entry_and_follows_other_pages(tiny_setup):
    app = run_page("pages/2_Feature_explorer.py", tiny_setup)
    for feature in (5, 7, 9):  # consecutive entries: none may be dropped
        app.text_input[0].set_value(str(feature)).run()
        assert any(f"Feature {feature} " in s.value for s in app.subheader), feature
    app.session_state["feature"] = 11  # as the contrast page's "Open feature in the explorer" does
    app.run()
    assert app.text_input[0].value == "11"
    assert any("Feature 11 " in s.value for s in app.subheader)


@pytest.mark.parametrize("text, message", [("99999", "99999 is out of range"), ("1e3", "'1e3' is not a whole number"),
                                           ("-1", "-1 is out of range"), ("abc", "'abc' is not a whole number"),
                                           ("", "type a whole number")])
def test_feature_explorer_bad_index_is_an_error_and_shows_no_other_feature(tiny_setup, text, message):
    app = run_page("pages/2_Feature_explorer.py", tiny_setup)
    assert any("Feature 0 " in s.value for s in app.subheader)
    widget(app.text_input, "Feature index").set_value(text).run()
    assert not app.exception
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert not any(s.value.startswith("Feature ") for s in app.subheader)  # not feature 0, not feature 1


def test_contrast_page(tiny_setup):
    app = run_page("pages/3_Contrast.py", tiny_setup | {"per_condition": 8})
    assert not app.exception
    assert app.selectbox[0].value == "lie" and app.selectbox[1].value == "parrot"
    assert any("lie** (n=8)" in m.value for m in app.markdown)
    # recall at 1% FPR on the honest control, which 8 scenarios cannot resolve: said, and the column marked
    assert app.selectbox[4].label == "Control for recall@1%FPR" and app.selectbox[4].value == "honest"
    assert any("control **honest** (n=8)" in c.value for c in app.caption)
    assert any("cannot be resolved with 8 control scores" in w.value for w in app.warning)
    assert "recall@1%FPR (unresolved)" in app.dataframe[0].value.columns
    app.selectbox[4].set_value("lie").run()  # the control may not be side A
    assert not app.exception and any("shares scenarios with side A" in e.value for e in app.error)


def test_contrast_page_same_condition_is_an_error_not_a_crash(tiny_setup):
    app = run_page("pages/3_Contrast.py", tiny_setup)
    app.selectbox[1].set_value("lie").run()
    assert not app.exception
    assert any("two different conditions" in e.value for e in app.error)


def test_contrast_page_offers_conditions_narrowed_by_behaviour(tiny_setup, tiny_scenarios, tmp_path_factory):
    from tests.conftest import behaviour_split
    from workbench.scenarios import write_scenarios

    lies, _ = behaviour_split([s for s in tiny_scenarios if s.condition.value == "lie"])
    path = tmp_path_factory.mktemp("behaviour") / "lies.jsonl"
    write_scenarios(path, lies + [s for s in tiny_scenarios if s.condition.value == "parrot"][:8])
    app = run_page("pages/3_Contrast.py", tiny_setup | {"scenarios_path": str(path), "per_condition": 24})
    assert not app.exception
    assert app.selectbox[0].options == ["lie", "parrot", "lie+false: the model lied",
                                        "lie+truth: the model resisted: told the truth despite the motive or trigger",
                                        "parrot+false: the model parroted a falsehood",
                                        "parrot+truth: the model corrected the falsehood: told the truth instead"]
    app.selectbox[0].set_value("lie+false")
    app.selectbox[1].set_value("lie+truth").run()
    assert not app.exception and not app.error
    assert any("**lie+false** (n=10) vs **lie+truth** (n=8)" in m.value for m in app.markdown)
    assert any("lie responses (n=24): 10 false, 8 truth, 6 no answer" in c.value for c in app.caption)


def widget(elements, label_start: str):
    return next(e for e in elements if e.label.startswith(label_start))


def test_causal_lab_runs_a_sweep_with_controls(tiny_setup):
    app = run_page("pages/4_Causal_lab.py", tiny_setup | {"feature": 5})
    assert not app.exception
    assert widget(app.text_input, "Features").value == "5"  # pre-filled from the explorer's feature
    assert widget(app.text_input, "Strengths").value and app.button[0].label == "Run sweep"
    widget(app.text_input, "Scenarios").set_value("3")
    widget(app.text_input, "Random matched").set_value("1")
    app.button[0].click().run()
    assert not app.exception
    assert not app.error
    assert app.get("plotly_chart")
    numbers = app.dataframe[0].value
    assert set(numbers["n"]) == {3} and set(numbers["edit"]) >= {"ablate 5"}
    assert any("same edit on" in e for e in numbers["edit"]) and any("random" in e for e in numbers["edit"])


def test_causal_lab_steers_along_a_probe_direction_at_another_layer(tiny_setup):
    app = run_page("pages/4_Causal_lab.py", tiny_setup)
    widget(app.radio, "Intervention").set_value("steer").run()
    widget(app.radio, "Steer along").set_value("probe direction").run()
    assert widget(app.text_input, "Features").disabled
    widget(app.text_input, "Layer").set_value("0")
    widget(app.text_input, "Scenarios").set_value("3")
    widget(app.text_input, "Random directions").set_value("1")
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert any("probe direction lie - honest at model.layers.0" in h.value for h in app.subheader)
    numbers = app.dataframe[0].value
    assert set(numbers["n"]) == {3} and any("random directions" in e for e in numbers["edit"])


@pytest.mark.parametrize("field, text, message", [("Strengths", "1, abc", "not a number"), ("Strengths", " ", "empty"),
                                                  ("Strengths", "1, inf", "not finite"),
                                                  ("Features", "5, 4000", "out of range"),
                                                  ("Scenarios", "0", "0 is out of range"),
                                                  ("Scenarios", "1e3", "not a whole number"),
                                                  ("Scenarios", "100000", "out of range"),
                                                  ("Random matched feature sets", "9", "9 is out of range"),
                                                  ("Random matched feature sets", "two", "not a whole number")])
def test_causal_lab_bad_input_is_an_error_next_to_the_field(tiny_setup, field, text, message):
    app = run_page("pages/4_Causal_lab.py", tiny_setup)
    widget(app.text_input, field).set_value(text).run()
    assert not app.exception
    assert any(message in e.value for e in app.error)
    assert app.button[0].disabled  # nothing runs on bad input


def test_causal_lab_runs_on_the_lies_the_model_told(tiny_setup, tmp_path):
    """The lab offers conditions narrowed by behaviour; on scenarios whose responses are set (10 lies told,
    8 resisted), ablating on lie+false runs on the 10 and controls with the same edit on the 8."""
    from tests.conftest import behaviour_split
    from workbench.scenarios import Split, read_scenarios, write_scenarios

    scenarios = read_scenarios(tiny_setup["scenarios_path"])
    lies, expected = behaviour_split([s for s in scenarios if s.condition.value == "lie"])
    pool = [s.model_copy(update={"split": Split.heldout})
            for s in lies + [s for s in scenarios if s.condition.value in ("honest", "parrot")]]
    path = tmp_path / "told.jsonl"
    write_scenarios(path, pool)
    app = run_page("pages/4_Causal_lab.py", tiny_setup | {"feature": 5, "scenarios_path": str(path)})
    target = widget(app.selectbox, "Apply to condition")
    assert {"lie+false", "lie+truth"} <= {option.split(":")[0] for option in target.options}
    target.set_value("lie+false").run()
    widget(app.selectbox, "Same edit on").set_value("lie+truth").run()
    widget(app.text_input, "Scenarios").set_value("20")
    widget(app.text_input, "Random matched").set_value("1")
    app.button[0].click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    numbers = app.dataframe[0].value
    by_condition = dict(zip(numbers["condition"], numbers["n"]))
    assert by_condition["lie+false"] == expected["false"] and by_condition["lie+truth"] == expected["truth"]


def write_tiny_hypothesis(folder: Path, scenario_file: Path, name: str = "tiny-claim") -> Path:
    from workbench.hypotheses import parse_hypothesis, write_hypothesis

    hypothesis = parse_hypothesis({
        "name": name, "claim": "feature 5 carries something", "model": {"source": "unused", "adapter": None},
        "sae": {"path": "unused"}, "features": [5], "probe_baseline": False,
        "scenarios": {"source": "file", "file": str(scenario_file), "max_per_condition": 5},
        "tests": [{"name": "ablate-lie", "intervention": {"kind": "ablate"}, "condition": "lie", "metric": "p_true",
                   "comparison": ">=", "threshold": 0.05, "controls": ["random", "other_conditions"],
                   "other_conditions": ["parrot"], "n_random": 1}],
    })
    path = folder / f"{name}.yaml"
    write_hypothesis(path, hypothesis)
    return path


def test_hypotheses_page_lists_and_runs_a_file_from_its_folder(tiny_setup, tmp_path, tiny_model_dir, tiny_sae_dir,
                                                               tiny_scenario_file):
    folder, runs = tmp_path / "hypotheses", tmp_path / "runs"
    folder.mkdir()
    path = write_tiny_hypothesis(folder, tiny_scenario_file)
    path.write_text(path.read_text().replace("source: unused", f"source: {tiny_model_dir}")
                    .replace("path: unused", f"path: {tiny_sae_dir}"))
    (folder / "broken.yaml").write_text("name: [unclosed\n")
    app = run_page("pages/5_Hypotheses.py", tiny_setup | {"hypotheses_dir": str(folder), "runs_dir": str(runs)})
    assert not app.exception
    assert app.selectbox[0].options == ["broken.yaml", "tiny-claim.yaml"]
    assert any("not valid YAML" in e.value for e in app.error)  # the broken file, shown as an error
    app.selectbox[0].select_index(1).run()
    assert any("feature 5 carries something" in m.value for m in app.markdown)
    next(b for b in app.button if b.label == "Run this hypothesis").click().run()
    assert not app.exception and not app.error
    written = list(runs.glob("tiny-claim-*.json"))
    assert len(written) == 1
    assert any("tiny-claim" in m.value and ("supported" in m.value or "refuted" in m.value or "inconclusive" in m.value)
               for m in app.markdown)
    assert any({"n", "outcome"} <= set(frame.value.columns) for frame in app.table)  # the predictions, with n


def test_hypotheses_page_saves_the_lab_experiment_without_overwriting(tiny_setup, tmp_path):
    from workbench.hypotheses import read_hypothesis
    from workbench.causal.experiment import EditSettings, Experiment

    folder = tmp_path / "hypotheses"
    lab = Experiment(edit=EditSettings(kind="steer"), features=(5, 9), strengths=(0.0, 1.0, 2.0), condition="honest")
    app = run_page("pages/5_Hypotheses.py", tiny_setup | {"hypotheses_dir": str(folder), "lab_experiment": lab})
    assert not app.exception
    assert any("No hypothesis files" in i.value for i in app.info)
    widget(app.text_input, "Name").set_value("steer-5-9")
    widget(app.text_area, "Claim").set_value("steering along 5 and 9 induces lies")
    next(b for b in app.button if b.label == "Save hypothesis").click().run()
    assert not app.exception and not app.error
    saved = read_hypothesis(folder / "steer-5-9.yaml")
    assert saved.features == [5, 9] and saved.tests[0].intervention.kind == "steer"
    assert saved.tests[0].intervention.strengths == [1.0, 2.0] and saved.tests[0].condition == "honest"
    widget(app.text_input, "Name").set_value("steer-5-9")
    widget(app.text_area, "Claim").set_value("a different claim")
    next(b for b in app.button if b.label == "Save hypothesis").click().run()
    assert any("exists already" in e.value for e in app.error)
    assert read_hypothesis(folder / "steer-5-9.yaml").claim == "steering along 5 and 9 induces lies"
    widget(app.text_input, "Name").set_value("")
    next(b for b in app.button if b.label == "Save hypothesis").click().run()
    assert any("name" in e.value for e in app.error) and not app.exception


def test_reports_page_opens_a_record_and_offers_downloads(tiny_setup, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(ROOT / "tests" / "fixtures" / "run-record-v1.json", runs / "old-run.json")
    (runs / "not-a-record.json").write_text("{\"hello\": 1}")
    app = run_page("pages/6_Reports.py", tiny_setup | {"runs_dir": str(runs)})
    assert not app.exception
    index = next(i for i, label in enumerate(app.selectbox[0].options) if "old-run.json" in label)
    app.selectbox[0].select_index(index).run()  # the repository's own runs/ may list more records
    assert any("inconclusive" in m.value for m in app.markdown)
    predictions = next(t.value for t in app.table if "outcome" in t.value.columns)
    assert {"measured", "95% CI", "n", "outcome"} <= set(predictions.columns) and len(predictions) == 3
    labels = [b.proto.label for b in app.get("download_button")]
    assert any("JSON" in label for label in labels) and any("HTML" in label for label in labels)
    assert any("not-a-record.json" in w.value for w in app.warning)


def test_model_form_applies_every_load_and_remembers_a_failed_one(tiny_setup, tiny_model_dir, tmp_path, monkeypatch):
    import workbench.model.loading as loading

    app = run_page("pages/1_Model_and_SAEs.py", tiny_setup)
    model_box = widget(app.text_input, "Model")
    assert model_box.value == str(tiny_model_dir)
    for attempt in ("./no/such/model-a", "./no/such/model-b", "./no/such/model-c"):  # each Load applies
        widget(app.text_input, "Model").set_value(attempt)
        next(b for b in app.button if b.label == "Load").click().run()
        assert not app.exception
        assert widget(app.text_input, "Model").value == attempt  # what was typed stays
        assert any(attempt.lstrip("./") in e.value for e in app.error), (attempt, [e.value for e in app.error])
    loads = []
    monkeypatch.setattr(loading, "load_hf", lambda spec: loads.append(spec) or (_ for _ in ()).throw(AssertionError))
    app.run()  # a rerun shows the remembered failure without loading again
    assert not loads and any("model-c" in e.value for e in app.error)
    assert any(b.label == "Retry loading" for b in app.button)
    monkeypatch.undo()
    widget(app.text_input, "Model").set_value(str(tiny_model_dir))
    next(b for b in app.button if b.label == "Load").click().run()
    assert not app.exception and not app.error
    assert any("128 features" in m.value for m in app.markdown)


@pytest.mark.parametrize("field, text, message", [
    ("Scenarios per condition", "0", "out of range"), ("Scenarios per condition", "100000", "out of range"),
    ("Scenarios per condition", "1e3", "not a whole number"), ("Scenario file", "./no/such.jsonl", "no/such.jsonl"),
])
def test_model_form_rejects_bad_input_and_keeps_what_is_loaded(tiny_setup, field, text, message):
    app = run_page("pages/1_Model_and_SAEs.py", tiny_setup)
    widget(app.text_input, field).set_value(text)
    next(b for b in app.button if b.label == "Load").click().run()
    assert not app.exception
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert app.session_state["per_condition"] == tiny_setup["per_condition"]
    assert app.session_state["scenarios_path"] == tiny_setup["scenarios_path"]


@pytest.mark.parametrize("change, message", [("features: [5]", "features: [999999]"),
                                             ("condition: lie", "condition: nonsense")])
def test_hypotheses_page_offers_no_run_for_a_hypothesis_that_cannot_run(tiny_setup, tmp_path, tiny_model_dir,
                                                                        tiny_sae_dir, tiny_scenario_file, change,
                                                                        message):
    folder = tmp_path / "hypotheses"
    folder.mkdir()
    path = write_tiny_hypothesis(folder, tiny_scenario_file)
    text = path.read_text().replace("source: unused", f"source: {tiny_model_dir}").replace("path: unused",
                                                                                          f"path: {tiny_sae_dir}")
    if change.startswith("features"):
        text = text.replace("features:\n- 5", "features:\n- 999999")
    else:
        text = text.replace("condition: lie", "condition: nonsense")
    assert text != path.read_text()
    path.write_text(text)
    app = run_page("pages/5_Hypotheses.py", tiny_setup | {"hypotheses_dir": str(folder), "runs_dir": str(tmp_path / "r")})
    assert not app.exception
    assert any("cannot run as written" in e.value for e in app.error), [e.value for e in app.error]
    assert not any(b.label == "Run this hypothesis" for b in app.button)


@pytest.mark.parametrize("bad, message", [("nan threshold", "threshold"), ("latin-1 bytes", "UTF-8")])
def test_hypotheses_page_shows_why_a_file_cannot_be_read(tiny_setup, tmp_path, tiny_scenario_file, bad, message):
    folder = tmp_path / "hypotheses"
    folder.mkdir()
    path = write_tiny_hypothesis(folder, tiny_scenario_file)
    text = path.read_text()
    if bad == "nan threshold":
        assert "threshold: 0.05" in text
        path.write_text(text.replace("threshold: 0.05", "threshold: .nan"))
    else:
        path.write_bytes(text.replace("feature 5 carries something", "feature 5 carries caf\xe9").encode("latin-1"))
    app = run_page("pages/5_Hypotheses.py", tiny_setup | {"hypotheses_dir": str(folder), "runs_dir": str(tmp_path / "r")})
    assert not app.exception
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert not any(b.label == "Run this hypothesis" for b in app.button)


@pytest.mark.slow  # checks the repository's hypotheses against the real default model
def test_hypotheses_page_shows_the_committed_verdict(tiny_setup):
    app = run_page("pages/5_Hypotheses.py", tiny_setup)  # the repository's own hypotheses and runs
    assert not app.exception
    assert any("Last recorded run" in m.value and "verdict" in m.value for m in app.markdown)



def test_feature_explorer_shows_stored_explanations(tiny_setup, tiny_model, tiny_sae, tiny_scenarios, tmp_path,
                                                     monkeypatch):
    from tests.unit.test_explanations import FakeExplainer
    from workbench.features.capture import inputs_from_scenarios, run_capture
    from workbench.features.explanations import ExplainSettings, add_explanations, explain_feature
    from workbench.model.loading import load_model
    from workbench.model.saes import load_sae

    capture = run_capture(tiny_model, [tiny_sae], inputs_from_scenarios(tiny_scenarios[:24]), generate_responses=False)
    acts = capture.site(tiny_sae.site.name)
    feature = int(acts.features.long().bincount(minlength=acts.d_sae).argmax())
    made = explain_feature(capture, tiny_sae.site.name, feature, FakeExplainer(), FakeExplainer(),
                           ExplainSettings(n_score=4, n_explain=2))
    model = load_model(tiny_setup["model_spec"])
    sae = load_sae(tiny_setup["sae_spec"], model)
    store = tmp_path / "explanations.json"
    add_explanations(store, [made.model_copy(update={"model_identity": model.identity, "sae_identity": sae.identity,
                                                     "feature": 5})])
    monkeypatch.setenv("WORKBENCH_EXPLANATIONS", str(store))
    app = run_page("pages/2_Feature_explorer.py", tiny_setup)
    app.text_input[0].set_value("5").run()
    assert not app.exception
    shown = [d.value for d in app.dataframe if "explanation" in getattr(d.value, "columns", [])]
    assert len(shown) == 1 and shown[0]["explanation"][0] == "capital cities in lies"
    app.text_input[0].set_value("6").run()
    assert any("No stored explanation of feature 6" in c.value for c in app.caption)


def test_contrast_page_shows_the_baselines(tiny_setup):
    app = run_page("pages/3_Contrast.py", tiny_setup | {"per_condition": 8})
    assert not app.exception
    app.checkbox[0].check().run()
    assert not app.exception, app.exception
    shown = app.dataframe[-1].value
    assert list(shown["detector"])[0] == "black box: follow-up questions" and len(shown) == 3
    assert shown["white-box gain [95% CI]"].iloc[1].startswith(("+", "-"))
