"""Choose the model, adapter and SAE; see what is loaded."""

import streamlit as st

from ui.fields import parse_whole_number
from ui.tables import show_table
from ui.state import MAX_PER_CONDITION, MIN_PER_CONDITION, check_scenario_file, forget_failures, init_state, load_session, sidebar_summary
from workbench.core.constants import repo_relative
from workbench.core.errors import WorkbenchError
from workbench.model.resolve import AUTO_ADAPTER, read_organisms, refs_from_specs, specs_from_refs
from workbench.model.saes import read_registry

organisms = read_organisms()[1]

st.set_page_config(page_title="Model & SAEs", layout="wide")
init_state()
st.header("Model & SAEs")

registry = read_registry()
names = sorted(registry.entries)
KINDS = ["Registry", "Local folder", "sae-lens release"]


def fill_form_from_loaded() -> None:
    """Put the loaded specs into the form's fields. Every field has a key and no ``value=``: a
    field whose default changes between runs is a new widget to Streamlit, which dropped the next
    Load after every change. The fields are refilled only when the specs changed elsewhere (another
    page, a hypothesis), never over what the user typed."""
    model_ref, sae_ref = refs_from_specs(st.session_state.model_spec, st.session_state.sae_spec)
    default_name = sae_ref.registry or registry.default
    st.session_state.update({
        "form_source": model_ref.source, "form_gguf": model_ref.gguf_file or "", "form_adapter": model_ref.adapter or "",
        "form_kind": KINDS[1 if sae_ref.path else 2 if sae_ref.release else 0],
        "form_sae_path": sae_ref.path or "", "form_release": sae_ref.release or "", "form_sae_id": sae_ref.id or "",
        "form_scenarios": st.session_state.scenarios_path, "form_per_condition": str(st.session_state.per_condition),
    })
    if names:
        st.session_state.form_registry = default_name if default_name in names else names[0]
    st.session_state.form_synced = (st.session_state.model_spec, st.session_state.sae_spec)


if st.session_state.get("form_synced") != (st.session_state.model_spec, st.session_state.sae_spec):
    fill_form_from_loaded()

with st.form("model_form"):
    left, right = st.columns(2)
    # The form shows references (as a hypothesis file writes them); the resolver turns them into specs.
    source = left.text_input("Model", key="form_source",
                             help="'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id, or a local folder")
    gguf_file = left.text_input("GGUF file inside the model folder (optional)", key="form_gguf")
    adapter = left.text_input("LoRA adapter folder or organism (optional)", key="form_adapter",
                              help=f"A peft folder merged at load, or an organism's name ({', '.join(organisms)}); "
                                   f"'{AUTO_ADAPTER}' = the adapter the registry SAE was trained on (default model only); "
                                   "empty = no adapter")
    kind = right.radio("SAE from", KINDS, key="form_kind", horizontal=True)
    registry_name = right.selectbox("Registry SAE", names, key="form_registry") if names else None
    sae_path = right.text_input("Local SAE folder (sae-lens format)", key="form_sae_path")
    release = right.text_input("sae-lens release", key="form_release", help="e.g. gpt2-small-res-jb (needs network)")
    sae_id = right.text_input("SAE id", key="form_sae_id", help="e.g. blocks.8.hook_resid_pre")
    scenarios_path = st.text_input("Scenario file (JSONL)", key="form_scenarios")
    per_condition_text = st.text_input(f"Scenarios per condition to capture ({MIN_PER_CONDITION} to {MAX_PER_CONDITION})",
                                       key="form_per_condition")
    submitted = st.form_submit_button("Load", type="primary")

if submitted:
    problems = []
    if kind == "Local folder" and not sae_path.strip():
        problems.append("Give a local SAE folder, or pick another source.")
    if kind == "sae-lens release" and not (release.strip() and sae_id.strip()):
        problems.append("A sae-lens release needs both the release and the SAE id.")
    if not source.strip():
        problems.append("Give a model: 'default', a Hugging Face id or a local folder.")
    try:
        per_condition = parse_whole_number(per_condition_text, "Scenarios per condition", MIN_PER_CONDITION,
                                           MAX_PER_CONDITION)
    except ValueError as error:
        problems.append(str(error))
    try:
        check_scenario_file(scenarios_path.strip())
    except WorkbenchError as error:
        problems.append(str(error))
    specs = None
    if not problems:
        chosen_sae = ({"registry": registry_name} if kind == "Registry"
                      else {"path": sae_path.strip()} if kind == "Local folder"
                      else {"release": release.strip(), "id": sae_id.strip()})
        try:
            specs = specs_from_refs({"source": source.strip(), "gguf_file": gguf_file.strip() or None,
                                     "adapter": adapter.strip() or None}, chosen_sae)
        except WorkbenchError as error:
            problems.append(str(error))
    for problem in problems:
        st.error(problem)
    if specs is not None:
        st.session_state.model_spec, st.session_state.sae_spec = specs
        st.session_state.scenarios_path = scenarios_path.strip()
        st.session_state.per_condition = per_condition
        st.session_state.form_synced = specs  # the fields already say what was loaded
        forget_failures()  # a new Load tries again

session = load_session(with_capture=False)
sidebar_summary(session)
model, sae = session.model, session.sae
st.subheader("Loaded")
left, right = st.columns(2)
left.markdown(f"**Model** {model.spec.display_name}  \n`{model.identity}`")
left.markdown(f"{model.n_layers} layers · d_model {model.d_model} · vocabulary {model.vocab_size}")
right.markdown(f"**SAE** {sae.spec.describe()}  \n`{sae.identity}`")
right.markdown(f"site `{sae.site.name}` · d_in {sae.d_in} · {sae.d_sae} features · architecture "
               f"{sae.sae.cfg.architecture()}")
if organisms:
    st.subheader("Registered organisms")
    st.caption("Give a name as the adapter to load it. An SAE is trained on one organism: the registered SAEs "
               "below say which.")
    show_table([{"name": o.name, "folder": repo_relative(str(o.path)) or "", "description": o.description}
                for o in organisms.values()])
if registry.entries:
    st.subheader("Registered SAEs")
    show_table([{"name": e.name, "site": e.site, "model": e.model, "adapter": repo_relative(e.adapter) or "",
                 "description": e.description} for e in registry.entries.values()])
