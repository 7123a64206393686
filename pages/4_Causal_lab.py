"""Causal lab: ablate, steer or patch features over a sweep of strengths and measure the effect on
the answer against controls (matched random features, the same edit on another condition)."""

import streamlit as st

from ui.charts import METRIC_LABELS, sweep_figure
from ui.state import cached_scenarios, load_session, sidebar_summary
from workbench.core.errors import WorkbenchError
from workbench.causal.interventions import INTERVENTION_POSITIONS
from workbench.causal.lab import (
    PATCH_POSITIONS,
    LabSettings,
    feature_density,
    parse_features,
    parse_strengths,
    run_lab,
)
from workbench.causal.measurements import LOGIT_METRICS

st.set_page_config(page_title="Causal lab", layout="wide")
session = load_session()
sidebar_summary(session)
model, sae, capture = session.model, session.sae, session.capture
st.header("Causal lab")
st.caption("Edit the model at the SAE's site and measure how the answer changes, per scenario, against the same "
           "scenarios unedited (strength 0). Controls: random features matched on density and decoder norm, and the "
           "same edit on another condition. An effect only means something where the target's interval clears the "
           "controls'.")

try:
    scenarios = cached_scenarios(st.session_state.scenarios_path)
except WorkbenchError as error:
    st.error(str(error))
    st.stop()
conditions = sorted({s.condition.value for s in scenarios})
previous: LabSettings | None = st.session_state.get("lab_settings")
explorer_feature = int(st.session_state.get("feature", 0))
if previous is not None and explorer_feature in previous.features:
    default_features = ", ".join(map(str, previous.features))
else:
    default_features = str(explorer_feature)

problems = []
c1, c2, c3 = st.columns(3)
kind = c1.radio("Intervention", ["ablate", "steer", "patch"], horizontal=True,
                help="ablate: remove the features' decoder contribution (SAE error kept) · steer: add strength × "
                     "the features' decoder direction · patch: copy the last prompt token's activation from the "
                     "paired scenario (same fact) of another condition")
along = "SAE features"
if kind == "steer":
    along = c1.radio("Steer along", ["SAE features", "probe direction"], horizontal=True,
                     help="probe direction: difference of means of two conditions' residuals at the last prompt "
                          "token, trained on the file's train-split scenarios (never on the scenarios it is tested on)")
use_probe = along == "probe direction"
features_text = c1.text_input(f"Features (indices 0 to {sae.d_sae - 1}, comma-separated)", default_features,
                              disabled=kind == "patch" or use_probe, help="Pre-filled with the feature open in the explorer")
features: tuple[int, ...] = ()
probe: tuple[str, str] | None = None
if use_probe:
    p1, p2 = c1.columns(2)
    positive = p1.selectbox("Probe: from", conditions, index=conditions.index("lie") if "lie" in conditions else 0)
    negative = p2.selectbox("minus", conditions, index=conditions.index("honest") if "honest" in conditions else 0)
    probe = (positive, negative)
    if positive == negative:
        c1.error("the probe needs two different conditions (e.g. lie minus honest)")
        problems.append("probe")
elif kind != "patch":
    try:
        features = parse_features(features_text, sae.d_sae)
    except WorkbenchError as error:
        c1.error(str(error))
        problems.append("features")
position_rules = PATCH_POSITIONS if kind == "patch" else INTERVENTION_POSITIONS
positions = c1.selectbox("Positions", position_rules, help="Which tokens are edited (never the first, the attention sink)")
layer: int | None = None
if kind == "patch" or use_probe:
    sae_layer = sae.site.layer if sae.site.layer is not None else model.n_layers // 2
    layer = int(c1.number_input("Layer (residual stream after it)", min_value=0, max_value=model.n_layers - 1,
                                value=sae_layer, step=1,
                                help=f"SAE features live at the SAE's site ({sae.site.name}); a probe direction or "
                                     "a patch can act after any decoder layer"))
    if layer == sae.site.layer:
        layer = None
strengths_text = c2.text_input("Strengths (a sweep)", "0, 0.5, 1" if kind != "steer" else "0, 1, 2, 4",
                               help="Comma-separated; 0 (unedited) is always included. Ablation: 1 = ablated, "
                                    "-1 = contribution doubled. Steering: multiples of one typical firing. "
                                    "Patching: 1 = fully patched.")
strengths: list[float] = []
try:
    strengths = parse_strengths(strengths_text)
except WorkbenchError as error:
    c2.error(str(error))
    problems.append("strengths")
metric = c2.selectbox("Metric", LOGIT_METRICS, format_func=lambda m: METRIC_LABELS.get(m, m))
mode, scale, reference = "zero", "feature", "honest"
if kind == "ablate":
    mode = c2.radio("Ablate to", ["zero", "mean"], horizontal=True,
                    help="mean: the feature's mean activation over the reference condition's captured tokens")
if kind == "steer":
    units = ["residual", "unit"] if use_probe else ["feature", "residual", "unit"]
    scale = c2.radio("Strength unit", units, horizontal=True,
                     help="feature: one typical firing (mean non-zero activation × decoder norm); residual: the mean "
                          "residual norm at the edited site; unit: raw residual units")
if kind == "patch" or mode == "mean":
    reference = c2.selectbox("Patch from" if kind == "patch" else "Mean over", conditions,
                             index=conditions.index("honest") if "honest" in conditions else 0)
condition = c3.selectbox("Apply to condition", conditions, index=conditions.index("lie") if "lie" in conditions else 0)
n_scenarios = c3.number_input("Scenarios", min_value=1, max_value=200, value=8, step=1,
                              help="Known facts, held-out first. Each costs one forward pass per strength and control.")
others = ["none"] + [c for c in conditions if c != condition]
control_condition = c3.selectbox("Same edit on (control)", others, index=others.index("honest") if "honest" in others
                                 else min(1, len(others) - 1))
n_random = c3.number_input("Random directions (control)" if use_probe else "Random matched feature sets (control)",
                           min_value=0, max_value=5, value=2, step=1)

run = st.button("Run sweep", type="primary", disabled=bool(problems))
if run:
    settings = LabSettings(features=features, kind=kind, positions=positions, strengths=tuple(strengths),
                           condition=condition, n_scenarios=int(n_scenarios), metric=metric, mode=mode,
                           reference=reference, scale=scale,
                           control_condition=None if control_condition == "none" else control_condition,
                           n_random=int(n_random), probe=probe, layer=layer)
    bar = st.progress(0.0, text="starting")
    try:
        density = feature_density(capture, sae.site.name, sae.d_sae) if capture is not None else None
        result = run_lab(model, sae, scenarios, settings, capture=capture, density=density,
                         progress=lambda message, fraction: bar.progress(min(max(fraction, 0.0), 1.0), text=message))
    except WorkbenchError as error:
        st.error(str(error))
    else:
        st.session_state.lab_settings = settings
        st.session_state.lab_result = result
    finally:
        bar.empty()

result = st.session_state.get("lab_result")
if result is not None:
    s = result.settings
    st.subheader(f"Result: {s.description()}")
    target = result.target
    strongest = max(range(len(target.strengths)), key=lambda k: abs(target.strengths[k]))
    effect = target.effects[strongest]
    m1, m2, m3 = st.columns(3)
    label = METRIC_LABELS.get(result.metric, result.metric)
    m1.metric(f"Unedited {label}", f"{target.unedited.value:.3g}")
    m1.caption(f"95% CI [{target.unedited.low:.3g}, {target.unedited.high:.3g}] · n={target.unedited.n} scenarios")
    m2.metric(f"Change at strength {target.strengths[strongest]:g}", f"{effect.value:+.3g}")
    m2.caption(f"95% CI [{effect.low:+.3g}, {effect.high:+.3g}] · n={effect.n} scenarios")
    if len(result.curves) > 1:
        m3.markdown(f"**Controls at strength {target.strengths[strongest]:g}**")
    for curve in result.curves[1:]:
        control = curve.effects[strongest]
        m3.caption(f"{curve.label} on {curve.condition}: {control.value:+.3g} "
                   f"[{control.low:+.3g}, {control.high:+.3g}] · n={control.n}")
    st.plotly_chart(sweep_figure(result), use_container_width=True)
    for note in result.notes:
        st.info(note)
    if result.random_sets:
        st.caption("Random feature sets: " + " · ".join(", ".join(map(str, r)) for r in result.random_sets))
    st.markdown("**Numbers** (change = edited minus unedited on the same scenario; bootstrap 95% CI over facts)")
    st.dataframe(result.rows(), hide_index=True)
    if result.generations:
        st.markdown(f"**Greedy answers, unedited and at strength {result.generations[0].strength:g}** "
                    f"(first {len(result.generations)} {s.condition} scenarios)")
        st.dataframe([{"scenario": g.scenario_id, "question": g.question, "true answer": g.true_answer,
                       "unedited answer": g.before, "true? (unedited)": "yes" if g.truthful_before else "no",
                       "edited answer": g.after, "true? (edited)": "yes" if g.truthful_after else "no"}
                      for g in result.generations], hide_index=True)
    st.caption("Turn this experiment into a hypothesis file on the Hypotheses page.")
