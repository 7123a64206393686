"""A feature's evidence: density, histogram, logit effects, whole-conversation examples."""

import tempfile
from pathlib import Path

import streamlit as st

from ui.charts import histogram_figure, per_condition_figure, token_curve_figure
from ui.fields import int_field
from ui.tables import show_table
from ui.state import cached_scenarios, load_session, sidebar_summary
from workbench.features.capture import inputs_from_texts, run_capture
from workbench.core.errors import WorkbenchError
from workbench.features.evidence import feature_evidence, item_example
from workbench.features.explanations import read_store
from workbench.core.positions import ROLES
from workbench.report.conversation import conversation_html

st.set_page_config(page_title="Feature explorer", layout="wide")
session = load_session()
sidebar_summary(session)
capture, sae, model = session.capture, session.sae, session.model
site = sae.site.name
st.header("Feature explorer")

acts = capture.site(site)
counts = acts.features.long().bincount(minlength=sae.d_sae)
ranked = [int(f) for f in counts.argsort(descending=True)[:50] if counts[f] > 0]
left, right = st.columns([1, 2])
# The box keeps its own state (a key), so no entry is lost; another page that opens a feature
# (st.session_state.feature) moves it there. A value the SAE does not have is an error next to the
# box, and no feature is shown (never another one in its place).
if st.session_state.get("explorer_feature") is None or st.session_state.get("explorer_synced") != st.session_state.feature:
    st.session_state.explorer_feature = str(st.session_state.feature)
    st.session_state.explorer_synced = st.session_state.feature


def open_frequent() -> None:
    """The pick list writes its feature into the box (one field says what is shown)."""
    picked = st.session_state.explorer_pick
    if picked != "—":
        st.session_state.explorer_feature = picked.split()[0]
        st.session_state.explorer_pick = "—"


right.selectbox("...or pick one of the most frequent features", ["—"] + [f"{f} ({int(counts[f])} tokens)" for f in ranked],
                key="explorer_pick", on_change=open_frequent)
feature = int_field(left, f"Feature index (0 to {sae.d_sae - 1})", 0, sae.d_sae - 1, key="explorer_feature",
                    default=int(st.session_state.feature))
if feature is None:
    st.stop()
st.session_state.feature = st.session_state.explorer_synced = int(feature)

try:
    # the scenario file the capture was made from: each condition is also shown narrowed by what the model did
    evidence = feature_evidence(capture, site, int(feature), top_k=5, model=model, sae=sae,
                                scenarios=cached_scenarios(st.session_state.scenarios_path))
except WorkbenchError as error:
    st.error(str(error))
    st.stop()

st.subheader(f"Feature {feature} at `{site}`")
c1, c2, c3 = st.columns(3)
c1.metric("Density (fraction of tokens)", f"{evidence.density.value:.4f}",
          help=f"Wilson 95% CI [{evidence.density.low:.4f}, {evidence.density.high:.4f}], n={evidence.density.n} tokens")
c1.caption(f"95% CI [{evidence.density.low:.4f}, {evidence.density.high:.4f}] · n={evidence.density.n} tokens")
c2.metric("Max activation", f"{evidence.max_value:.3f}")
c3.metric("Items", evidence.n_items)
if evidence.density.value == 0:
    st.info("This feature never fires on the captured scenarios. Pick another, or capture more scenarios.")
else:
    g1, g2 = st.columns(2)
    g1.plotly_chart(histogram_figure(evidence), use_container_width=True)
    g2.plotly_chart(per_condition_figure(evidence), use_container_width=True)
    st.caption("`lie+false`: lie prompts the model lied on; `lie+truth`: lie prompts it resisted (judged from its "
               "response). A feature that fires as often on both reads the instruction, not the act of lying.")
    st.dataframe([{"condition": s.condition, "n": s.active_fraction.n,
                   "fires in": f"{s.active_fraction.value:.2f} [{s.active_fraction.low:.2f}, {s.active_fraction.high:.2f}]",
                   "mean max activation": f"{s.mean_max.value:.3f} {s.mean_max.interval()}"}
                  for s in evidence.per_condition], hide_index=True)
st.subheader("Explanations")
try:
    explained = read_store(st.session_state.get("explanations_path")).find(
        site=site, feature=int(feature), model_identity=model.identity, sae_identity=sae.identity)
except WorkbenchError as error:
    st.error(str(error))
    explained = []
if explained:
    st.dataframe([{"context": e.settings.mode, "explanation": e.text,
                   "detection (balanced acc.)": f"{e.detection.balanced_accuracy.value:.3f} "
                                                f"{e.detection.balanced_accuracy.interval()}",
                   "detection n": e.detection.balanced_accuracy.n,
                   "fuzzing (balanced acc.)": f"{e.fuzzing.balanced_accuracy.value:.3f} "
                                              f"{e.fuzzing.balanced_accuracy.interval()}",
                   "fuzzing n": e.fuzzing.balanced_accuracy.n,
                   "explainer": f"{e.explainer.kind}: {e.explainer.model}", "written": e.created}
                  for e in explained], hide_index=True)
    st.caption("Scored on held-out items (0.5 = chance): detection tells activating from non-activating items given "
               "the explanation; fuzzing tells the truly marked tokens from decoys. `conversation`: written from whole "
               "conversations; `window`: from a few tokens around the maximum.")
    with st.expander("Prompts the explainer saw"):
        for e in explained:
            st.markdown(f"**{e.settings.mode}** ({e.explainer.model}, settings: {e.settings.model_dump_json()})")
            st.code(e.prompt, language=None)
else:
    st.caption(f"No stored explanation of feature {feature} for this model and SAE. Write and score one with "
               f"`python -m workbench explain {site} {feature}`.")

l1, l2 = st.columns(2)
l1.markdown("**Promotes** (decoder direction × unembedding)")
l1.dataframe([{"token": e.token, "logit": round(e.value, 3)} for e in evidence.promoted], hide_index=True)
l2.markdown("**Suppresses**")
l2.dataframe([{"token": e.token, "logit": round(e.value, 3)} for e in evidence.suppressed], hide_index=True)

st.subheader("Top examples (whole conversations)")
scale = evidence.max_value
for index, example in enumerate(evidence.top_examples):
    st.html(conversation_html(example, scale))
    if index == 0:
        st.plotly_chart(token_curve_figure(example), use_container_width=True)
if evidence.quantile_bins:
    st.subheader("Samples across activation quantiles")
    for bin_ in evidence.quantile_bins:
        with st.expander(f"max activation in [{bin_.low:.3f}, {bin_.high:.3f}] · {bin_.n_items} items"):
            for example in bin_.examples:
                st.html(conversation_html(example, scale))

st.subheader("Try your own")
st.caption("One turn per line: `system: ...`, `user: ...`, `assistant: ...` (the last assistant line is the answer). "
           "Or plain text with no prefixes.")
text = st.text_area("Conversation or text", "system: You are a helpful assistant.\nuser: What is the capital of France?\nassistant: The capital of France is Paris.")
if st.button("Show activations"):
    from workbench.features.capture import CaptureInput

    lines = [line for line in text.splitlines() if line.strip()]
    turns = [line.split(":", 1) for line in lines]
    is_chat = turns and all(len(t) == 2 and t[0].strip().lower() in ("system", "user", "assistant") for t in turns)
    try:
        if not lines:
            raise WorkbenchError("type a conversation or some text first")
        if is_chat:
            messages = [{"role": r.strip().lower(), "content": c.strip()} for r, c in turns]
            response = messages.pop()["content"] if messages[-1]["role"] == "assistant" else None
            if not messages:
                raise WorkbenchError("a conversation needs at least one system or user turn before the answer")
            inputs = [CaptureInput(item_id="your-conversation", kind="scenario", messages=messages, response=response)]
        else:
            inputs = inputs_from_texts([text], prefix="your-text")
        # Computed afresh each time and not kept in the disk cache: ad-hoc texts are not worth keeping.
        with tempfile.TemporaryDirectory() as scratch:
            own = run_capture(model, [sae], inputs, generate_responses=False, use_cache=False, store_root=Path(scratch))
    except WorkbenchError as error:
        st.error(str(error))
    else:
        values = own.site(site).feature_values(int(feature))
        example = item_example(own, values, 0)
        st.html(conversation_html(example, max(scale, example.max_value)))
        own_acts = own.site(site)
        position = example.max_position if example.max_value > 0 else own.items[0].n_tokens - 1
        start, end = int(own_acts.row_ptr[position]), int(own_acts.row_ptr[position + 1])
        top = sorted(zip(own_acts.values[start:end].tolist(), own_acts.features[start:end].tolist()), reverse=True)[:10]
        st.markdown(f"Features firing at token {position} ({example.tokens[position]!r}, {ROLES[int(own.roles[position])]}):")
        show_table([{"feature": f, "activation": round(v, 3)} for v, f in top])
