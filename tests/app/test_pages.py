"""Smoke tests of every page with AppTest on a tiny model, tiny SAE and tiny scenario set."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.models import ModelSpec
from workbench.saes import SAESpec

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
    assert app.number_input[0].value == 0
    app.number_input[0].set_value(5).run()
    assert not app.exception
    assert any("Feature 5" in s.value for s in app.subheader)
    app.button[0].click().run()  # "Try your own" with the default conversation
    assert not app.exception
    assert not app.error


def test_contrast_page(tiny_setup):
    app = run_page("pages/3_Contrast.py", tiny_setup | {"per_condition": 8})
    assert not app.exception
    assert app.selectbox[0].value == "lie" and app.selectbox[1].value == "parrot"
    assert any("lie** (n=8)" in m.value for m in app.markdown)


def test_contrast_page_same_condition_is_an_error_not_a_crash(tiny_setup):
    app = run_page("pages/3_Contrast.py", tiny_setup)
    app.selectbox[1].set_value("lie").run()
    assert not app.exception
    assert any("two different conditions" in e.value for e in app.error)


def widget(elements, label_start: str):
    return next(e for e in elements if e.label.startswith(label_start))


def test_causal_lab_runs_a_sweep_with_controls(tiny_setup):
    app = run_page("pages/4_Causal_lab.py", tiny_setup | {"feature": 5})
    assert not app.exception
    assert widget(app.text_input, "Features").value == "5"  # pre-filled from the explorer's feature
    assert widget(app.text_input, "Strengths").value and app.button[0].label == "Run sweep"
    widget(app.number_input, "Scenarios").set_value(3)
    widget(app.number_input, "Random matched").set_value(1)
    app.button[0].click().run()
    assert not app.exception
    assert not app.error
    assert app.get("plotly_chart")
    numbers = app.dataframe[0].value
    assert set(numbers["n"]) == {3} and set(numbers["edit"]) >= {"ablate 5"}
    assert any("same edit on" in e for e in numbers["edit"]) and any("random" in e for e in numbers["edit"])


@pytest.mark.parametrize("field, text, message", [("Strengths", "1, abc", "not a number"), ("Strengths", " ", "empty"),
                                                  ("Strengths", "1, inf", "not finite"),
                                                  ("Features", "5, 4000", "out of range")])
def test_causal_lab_bad_input_is_an_error_next_to_the_field(tiny_setup, field, text, message):
    app = run_page("pages/4_Causal_lab.py", tiny_setup)
    widget(app.text_input, field).set_value(text).run()
    assert not app.exception
    assert any(message in e.value for e in app.error)
    assert app.button[0].disabled  # nothing runs on bad input
