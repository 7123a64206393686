"""Hypotheses as files: read one, run it against its controls, save the lab's experiment as one."""

import datetime as dt
from pathlib import Path

import streamlit as st

from ui.records import show_record
from ui.state import cached_model, cached_sae, init_state
from workbench.core.constants import REPO_ROOT
from workbench.core.errors import WorkbenchError
from workbench.core.constants import repo_relative
from workbench.hypotheses import (
    hypothesis_from_experiment,
    list_hypotheses,
    read_hypothesis,
    run_hypothesis,
    write_hypothesis,
)
from workbench.hypotheses.records import read_record, write_record
from workbench.hypotheses.runner import preflight, scenario_sets
from workbench.model.resolve import refs_from_specs, specs_from_refs

st.set_page_config(page_title="Hypotheses", layout="wide")
init_state()
st.session_state.setdefault("hypotheses_dir", str(REPO_ROOT / "hypotheses"))
st.session_state.setdefault("runs_dir", str(REPO_ROOT / "runs"))
folder, runs_dir = Path(st.session_state.hypotheses_dir), Path(st.session_state.runs_dir)
st.header("Hypotheses")
st.caption(f"Hypothesis files (YAML) in `{repo_relative(str(folder))}`; runs are written to "
           f"`{repo_relative(str(runs_dir))}`. "
           "Run one from the command line with `python -m workbench run FILE.yaml`.")

@st.cache_resource(show_spinner=False, max_entries=64)
def cached_record(record_path: str, _mtime: float):
    return read_record(record_path)


def records_of(name: str, file_name: str) -> list[tuple[str, object]]:
    """The newest run record of this hypothesis among the committed runs and the runs folder."""
    found = []
    for runs in {REPO_ROOT / "hypotheses" / "runs", runs_dir}:
        for record_path in sorted(runs.glob("*.json")) if runs.is_dir() else []:
            try:
                record = cached_record(str(record_path), record_path.stat().st_mtime)
            except WorkbenchError:
                continue
            if record.hypothesis.get("name") == name or Path(record.hypothesis_path or "").name == file_name:
                found.append((repo_relative(str(record_path)), record))
    found.sort(key=lambda pair: pair[1].created)
    return found[-1:]


files = list_hypotheses(folder)
if not files:
    st.info(f"No hypothesis files in {folder} yet. Save one from the Causal lab below.")
else:
    path = st.selectbox("Hypothesis file", files, format_func=lambda p: p.name)
    text = path.read_bytes().decode("utf-8", errors="replace")  # shown as it is; read_hypothesis says what is wrong
    try:
        hypothesis = read_hypothesis(path)
    except WorkbenchError as error:
        st.error(str(error))
        hypothesis = None
    if hypothesis is not None:
        st.markdown(f"**Claim** {hypothesis.claim}")
        target = f"features {hypothesis.features}" if hypothesis.features else f"{hypothesis.direction.probe} direction"
        st.caption(f"{target} · {len(hypothesis.contrasts)} contrast(s), {len(hypothesis.tests)} causal test(s)")
        st.dataframe([{"prediction": c.name, "kind": "contrast", "what": f"AUROC {c.a} vs {c.b} at {c.position}",
                       "predicted": f"{c.comparison} {c.threshold:g}"} for c in hypothesis.contrasts]
                     + [{"prediction": t.name, "kind": "causal",
                         "what": f"{t.intervention.kind} on {t.condition}: {t.metric} change at strength {t.judged_strength:g}",
                         "predicted": f"{t.comparison} {t.threshold:g}"} for t in hypothesis.tests], hide_index=True)
        for record_path, record in records_of(hypothesis.name, path.name):
            st.markdown(f"**Last recorded run** (`{record_path}`, {record.created}): verdict **{record.verdict}** "
                        f"({record.verdict_reason}). The whole report is on the Reports page.")
    with st.expander("YAML", expanded=hypothesis is None):
        st.code(text, language="yaml")
    if hypothesis is not None:
        # Everything that needs no forward pass, before a Run button is offered: features against the
        # SAE, conditions and positions, each causal test as the engine checks it.
        try:
            with st.spinner("checking the hypothesis against its model, SAE and scenarios"):
                _train, heldout = scenario_sets(hypothesis)
                model_spec, sae_spec = specs_from_refs(hypothesis.model, hypothesis.sae, hypothesis.site)
                checked_model = cached_model(model_spec)
                checked_sae = cached_sae(sae_spec, checked_model.identity, checked_model)
                preflight(hypothesis, checked_sae, heldout)
        except WorkbenchError as error:
            st.error(f"This hypothesis cannot run as written: {error}")
            hypothesis = None
    if hypothesis is not None and st.button("Run this hypothesis", type="primary",
                                            help="Contrasts, causal tests with controls, probe baseline. "
                                                 "Minutes on a CPU for the default model."):
        bar = st.progress(0.0, text="loading the model and SAE")
        try:
            model_spec, sae_spec = specs_from_refs(hypothesis.model, hypothesis.sae, hypothesis.site)
            model = cached_model(model_spec)
            sae = cached_sae(sae_spec, model.identity, model)
            try:
                shown = path.relative_to(REPO_ROOT)
            except ValueError:
                shown = path
            record = run_hypothesis(hypothesis, path=str(shown), command=f"python -m workbench run {shown}",
                                    progress=lambda message, fraction: bar.progress(min(max(fraction, 0.0), 1.0),
                                                                                    text=message),
                                    loaded=(model, sae))
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            out = runs_dir / f"{hypothesis.name}-{stamp}.json"
            write_record(out, record)
        except WorkbenchError as error:
            st.error(str(error))
        else:
            st.session_state.hypothesis_run = (str(path), str(out), record)
        finally:
            bar.empty()
    last = st.session_state.get("hypothesis_run")
    if last is not None and last[0] == str(path):
        st.success(f"Run record written to `{last[1]}` (open it on the Reports page).")
        st.markdown(f"**{last[2].hypothesis.get('name')}**: verdict **{last[2].verdict}** ({last[2].verdict_reason})")
        show_record(last[2])

st.divider()
st.subheader("New hypothesis from the causal lab")
if "hypothesis_saved" in st.session_state:
    st.success(st.session_state.pop("hypothesis_saved"))
experiment = st.session_state.get("lab_experiment")
if experiment is None:
    st.info("Run an experiment in the Causal lab first: its edit, features, positions, sweep, condition and controls "
            "become the hypothesis' causal test (and rerunning the file reruns exactly that experiment).")
elif experiment.layer is not None:
    st.warning("The lab's experiment edits another layer than the SAE's site; hypothesis files edit at the SAE's "
               "site. Unset the layer in the Causal lab to save it.")
else:
    st.markdown(f"From the lab: **{experiment.description()}**, strengths "
                f"{', '.join(f'{s:g}' for s in experiment.strengths)}, metric `{experiment.metric}`, controls "
                f"{', '.join(experiment.controls) or 'none'}.")
    with st.form("new_hypothesis"):
        c1, c2 = st.columns(2)
        name = c1.text_input("Name", "")
        file_name = c1.text_input("File name", "", help="Saved in the hypotheses folder; .yaml is added if missing")
        claim = st.text_area("Claim", "", help="The claim in words, e.g. 'feature 12 carries the intent to deceive'")
        comparison = c2.selectbox("Predicted change", [">=", "<=", "abs<"],
                                  help=">=: at least the threshold; <=: at most; abs<: no effect beyond ± threshold")
        threshold = c2.number_input("Threshold (change of the metric at the strongest strength)", value=0.05,
                                    format="%.4f")
        overwrite = st.checkbox("Overwrite a file of the same name")
        save = st.form_submit_button("Save hypothesis")
    if save:
        try:
            stem = (file_name.strip() or name.strip()).removesuffix(".yaml")
            if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
                raise WorkbenchError("give a plain file name (no folders), e.g. `intent-l15-f123`")
            target_path = folder / f"{stem}.yaml"
            if target_path.exists() and not overwrite:
                raise WorkbenchError(f"{target_path.name} exists already: tick 'Overwrite' or choose another name")
            model_ref, sae_ref = refs_from_specs(st.session_state.model_spec, st.session_state.sae_spec)
            scenarios_path = Path(st.session_state.scenarios_path)
            new = hypothesis_from_experiment(experiment, name=name, claim=claim, comparison=comparison,
                                             threshold=float(threshold), model_ref=model_ref, sae_ref=sae_ref,
                                             scenarios_file=repo_relative(str(scenarios_path.resolve())))
            folder.mkdir(parents=True, exist_ok=True)
            write_hypothesis(target_path, new)
        except WorkbenchError as error:
            st.error(str(error))
        else:
            st.session_state.hypothesis_saved = f"Saved `{target_path}`: pick it in the list above to read or run it."
            st.rerun()
