"""Intent workbench: the Streamlit app's entry page. Run with `make app`."""

import streamlit as st

from ui.state import load_session, sidebar_summary

st.set_page_config(page_title="Intent workbench", layout="wide")
st.title("Intent workbench")
st.markdown(
    "Incriminate model intent: find SAE features that separate **lies** (the model knows the truth "
    "and says otherwise) from **parroting** (it copies a falsehood from its context) and "
    "**ignorance**, see each one in its whole conversation, and test it causally."
)
session = load_session(with_capture=False)
sidebar_summary(session)
st.markdown(f"**Model** {session.model.spec.display_name} · **SAE** {session.sae.spec.describe()} at "
            f"`{session.sae.site.name}`")
columns = st.columns(3)
columns[0].metric("Layers", session.model.n_layers)
columns[1].metric("Residual width", session.model.d_model)
columns[2].metric("SAE features", session.sae.d_sae)
st.markdown(
    "1. **Model & SAEs**: choose the model (default: the embedded SmolLM2), an adapter and the SAE.\n"
    "2. **Feature explorer**: a feature's density, histogram, logit effects and its top examples, "
    "each shown as the whole conversation.\n"
    "3. **Contrast**: rank every feature by how well it separates two conditions (AUROC with a "
    "bootstrap 95% interval)."
)
