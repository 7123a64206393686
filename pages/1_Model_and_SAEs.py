"""Choose the model, adapter and SAE; see what is loaded."""

import streamlit as st

from ui.state import init_state, load_session, sidebar_summary
from workbench.core.errors import WorkbenchError
from workbench.model.resolve import AUTO_ADAPTER, refs_from_specs, specs_from_refs
from workbench.model.saes import read_registry

st.set_page_config(page_title="Model & SAEs", layout="wide")
init_state()
st.header("Model & SAEs")

registry = read_registry()
with st.form("model_form"):
    left, right = st.columns(2)
    # The form shows references (as a hypothesis file writes them); the resolver turns them into specs.
    model_ref, sae_ref = refs_from_specs(st.session_state.model_spec, st.session_state.sae_spec)
    source = left.text_input("Model", model_ref.source, help="'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id, or a local folder")
    gguf_file = left.text_input("GGUF file inside the model folder (optional)", model_ref.gguf_file or "")
    adapter = left.text_input("LoRA adapter folder (optional)", model_ref.adapter or "",
                              help=f"A peft folder merged at load; '{AUTO_ADAPTER}' = the adapter the registry SAE was "
                                   "trained on (default model only); empty = no adapter")
    kinds = ["Registry", "Local folder", "sae-lens release"]
    kind = right.radio("SAE from", kinds, index=1 if sae_ref.path else 2 if sae_ref.release else 0, horizontal=True)
    names = sorted(registry.entries)
    default_name = sae_ref.registry or registry.default
    registry_name = right.selectbox("Registry SAE", names, index=names.index(default_name) if default_name in names else 0) if names else None
    sae_path = right.text_input("Local SAE folder (sae-lens format)", sae_ref.path or "")
    release = right.text_input("sae-lens release", sae_ref.release or "", help="e.g. gpt2-small-res-jb (needs network)")
    sae_id = right.text_input("SAE id", sae_ref.id or "", help="e.g. blocks.8.hook_resid_pre")
    scenarios_path = st.text_input("Scenario file (JSONL)", st.session_state.scenarios_path)
    per_condition = st.number_input("Scenarios per condition to capture", 4, 2000, st.session_state.per_condition)
    submitted = st.form_submit_button("Load", type="primary")

if submitted:
    problems = []
    if kind == "Local folder" and not sae_path.strip():
        problems.append("Give a local SAE folder, or pick another source.")
    if kind == "sae-lens release" and not (release.strip() and sae_id.strip()):
        problems.append("A sae-lens release needs both the release and the SAE id.")
    if not source.strip():
        problems.append("Give a model: 'default', a Hugging Face id or a local folder.")
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
        st.session_state.per_condition = int(per_condition)

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
if registry.entries:
    st.subheader("Registered SAEs")
    st.dataframe([{"name": e.name, "site": e.site, "model": e.model, "adapter": e.adapter or "",
                   "description": e.description} for e in registry.entries.values()], hide_index=True)
