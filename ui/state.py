"""What the app has loaded, held across reruns and pages.

Models, SAEs and captures are shared through ``st.cache_resource``: never mutate them.
The user's choices live in ``st.session_state``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import streamlit as st

from workbench.features.capture import Capture, inputs_from_scenarios, run_capture
from workbench.core.conditions import ordered_conditions
from workbench.core.constants import DEFAULT_SCENARIOS
from workbench.core.errors import WorkbenchError
from workbench.model.loading import LoadedModel, ModelSpec, load_model  # noqa: F401  (ModelSpec: state type)
from workbench.model.resolve import ModelRef, model_spec_from_ref, sae_ref_from_spec
from workbench.model.saes import LoadedSAE, SAESpec, load_sae
from workbench.scenarios import Scenario, read_scenarios

MIN_PER_CONDITION, MAX_PER_CONDITION = 4, 2000

DEFAULTS = {
    "model_spec": None,  # filled by init_state: the default model reference for the chosen SAE
    "sae_spec": SAESpec(),  # the registry's default SAE
    "scenarios_path": str(DEFAULT_SCENARIOS),
    "per_condition": 32,
    "generate_responses": True,
    "feature": 0,
}


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    if st.session_state.model_spec is None:
        # `model: {source: default, adapter: auto}`: the model the SAE was trained on, by the resolver.
        st.session_state.model_spec = model_spec_from_ref(ModelRef(), sae_ref_from_spec(st.session_state.sae_spec))


@st.cache_resource(show_spinner=False, max_entries=2)
def cached_model(spec: ModelSpec) -> LoadedModel:
    return load_model(spec)


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_sae(spec: SAESpec, model_identity: str, _model: LoadedModel) -> LoadedSAE:
    return load_sae(spec, _model)


@st.cache_data(show_spinner=False, max_entries=4)
def cached_scenarios(path: str) -> list[Scenario]:
    return read_scenarios(path)


def check_scenario_file(path: str) -> None:
    """Raise ``WorkbenchError`` if the scenario file cannot be read whole (before anything loads)."""
    if not path:
        raise WorkbenchError("Give a scenario file (JSONL).")
    cached_scenarios(path)


def sample_scenarios(scenarios: list[Scenario], per_condition: int) -> list[Scenario]:
    """The first ``per_condition`` scenarios of each condition, in file order."""
    seen: Counter[str] = Counter()
    chosen = []
    for scenario in scenarios:
        condition = scenario.condition.value
        if seen[condition] < per_condition:
            chosen.append(scenario)
            seen[condition] += 1
    return chosen


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_capture(model_identity: str, sae_identity: str, path: str, per_condition: int, generate: bool,
                   _model: LoadedModel, _sae: LoadedSAE) -> Capture:
    scenarios = sample_scenarios(cached_scenarios(path), per_condition)
    bar = st.progress(0.0, text="capturing feature activations (first time only; cached on disk)")

    def report(done: int, total: int) -> None:
        bar.progress(done / total, text=f"capturing feature activations: {done}/{total} scenarios")

    try:
        return run_capture(_model, [_sae], inputs_from_scenarios(scenarios), generate_responses=generate,
                           on_progress=report)
    finally:
        bar.empty()


@dataclass
class Session:
    model: LoadedModel
    sae: LoadedSAE
    capture: Capture | None


FAILURES = "load_failures"


def forget_failures() -> None:
    st.session_state[FAILURES] = {}


def _failure_key() -> tuple:
    return (st.session_state.model_spec, st.session_state.sae_spec, st.session_state.scenarios_path,
            st.session_state.per_condition)


def load_session(with_capture: bool = True) -> Session:
    """Model, SAE and capture for the current choices; shows a readable error and stops on failure.

    A failed load is remembered for the session: later reruns and pages show the error with a Retry
    button instead of trying again (an unreachable hub id costs tens of seconds each time)."""
    init_state()
    failures = st.session_state.setdefault(FAILURES, {})
    key = _failure_key()
    if key in failures:
        st.error(failures[key])
        if st.button("Retry loading", key="retry_load"):
            failures.pop(key, None)
            st.rerun()
        st.caption("Or change the model, SAE or scenario file on the Model & SAEs page.")
        st.stop()
    try:
        with st.spinner(f"loading {st.session_state.model_spec.display_name}..."):
            model = cached_model(st.session_state.model_spec)
            sae = cached_sae(st.session_state.sae_spec, model.identity, model)
        capture = None
        if with_capture:
            with st.spinner("generating responses and capturing features (first time only)..."):
                capture = cached_capture(model.identity, sae.identity, st.session_state.scenarios_path,
                                         st.session_state.per_condition, st.session_state.generate_responses,
                                         model, sae)
    except WorkbenchError as error:
        failures[key] = str(error)
        st.error(str(error))
        if st.button("Retry loading", key="retry_load"):
            failures.pop(key, None)
            st.rerun()
        st.stop()
    return Session(model=model, sae=sae, capture=capture)


def sidebar_summary(session: Session) -> None:
    with st.sidebar:
        st.caption(f"**Model** {session.model.spec.display_name}")
        st.caption(f"**SAE** {session.sae.spec.describe()} at `{session.sae.site.name}` ({session.sae.d_sae} features)")
        if session.capture is not None:
            counts = Counter(item.condition for item in session.capture.items)
            st.caption("**Scenarios** " + ", ".join(f"{c} {counts[c]}" for c in ordered_conditions(counts))
                       + f" · {session.capture.n_tokens} tokens")
