"""Causal lab: edit the model (any registered edit kind) over a sweep of strengths and measure the
effect on the answer against controls. The page builds one ``Experiment`` and runs it through the
engine every hypothesis test uses, so saving it as a hypothesis reruns the same experiment."""

import streamlit as st

from ui.charts import METRIC_LABELS, sweep_figure
from ui.state import cached_scenarios, load_session, sidebar_summary
from workbench.causal.edits import CONTROLS, EDIT_KINDS, UNITS
from workbench.causal.experiment import (
    EditSettings,
    Experiment,
    ProbeDirection,
    parse_features,
    parse_strengths,
    run_experiment,
)
from workbench.causal.measurements import GENERATION_METRICS, LOGIT_METRICS
from workbench.core.conditions import CONDITIONS
from workbench.core.errors import WorkbenchError
from workbench.core.positions import POSITIONS

st.set_page_config(page_title="Causal lab", layout="wide")
session = load_session(with_capture=False)
sidebar_summary(session)
model, sae = session.model, session.sae
st.header("Causal lab")
st.caption("Edit the model and measure how the answer changes, per scenario, against the same scenarios unedited. "
           "Controls: random features matched on density and decoder norm (random directions for a probe), the "
           "sign-flipped edit, and the same edit on another condition. An effect only means something where the "
           "target's interval clears the controls'.")

try:
    scenarios = cached_scenarios(st.session_state.scenarios_path)
except WorkbenchError as error:
    st.error(str(error))
    st.stop()
conditions = [c for c in CONDITIONS if c in {s.condition.value for s in scenarios}]


def pick(label: str, choices: list[str], preferred: str, column, **kwargs) -> str:
    return column.selectbox(label, choices, index=choices.index(preferred) if preferred in choices else 0, **kwargs)


previous: Experiment | None = st.session_state.get("lab_experiment")
explorer_feature = int(st.session_state.get("feature", 0))
if previous is not None and explorer_feature in previous.features:
    default_features = ", ".join(map(str, previous.features))
else:
    default_features = str(explorer_feature)

problems = []
c1, c2, c3 = st.columns(3)
kind_name = c1.radio("Intervention", list(EDIT_KINDS), horizontal=True,
                     help=" · ".join(f"{k.name}: {k.description}" for k in EDIT_KINDS.values()))
kind = EDIT_KINDS[kind_name]
use_probe = False
if kind.target == "features_or_direction":
    use_probe = c1.radio("Steer along", ["SAE features", "probe direction"], horizontal=True,
                         help="probe direction: a supervised probe between two conditions' residuals at the last "
                              "prompt token, trained on the file's train-split scenarios (never on the scenarios it "
                              "is tested on)") == "probe direction"
features: tuple[int, ...] = ()
direction: ProbeDirection | None = None
if use_probe:
    p1, p2 = c1.columns(2)
    positive = pick("Probe: from", conditions, "lie", p1)
    negative = pick("minus", conditions, "honest", p2)
    direction = ProbeDirection(positive=positive, negative=negative)
    if positive == negative:
        c1.error("the probe needs two different conditions (e.g. lie minus honest)")
        problems.append("probe")
features_text = c1.text_input(f"Features (indices 0 to {sae.d_sae - 1}, comma-separated)", default_features,
                              disabled=use_probe or kind.target == "pairs",
                              help="Pre-filled with the feature open in the explorer")
if not use_probe and kind.target != "pairs":
    try:
        features = parse_features(features_text, sae.d_sae)
    except WorkbenchError as error:
        c1.error(str(error))
        problems.append("features")
positions = c1.selectbox("Positions", list(kind.positions), index=kind.positions.index(kind.default_positions),
                         help=" · ".join(f"{name}: {POSITIONS[name].description}" for name in kind.positions))
layer: int | None = None
if kind.target == "pairs" or use_probe:
    sae_layer = sae.site.layer if sae.site.layer is not None else model.n_layers // 2
    layer = int(c1.number_input("Layer (residual stream after it)", min_value=0, max_value=model.n_layers - 1,
                                value=sae_layer, step=1,
                                help=f"SAE features live at the SAE's site ({sae.site.name}); a probe direction or "
                                     "a patch can act after any decoder layer"))
    if layer == sae.site.layer:
        layer = None
strengths_text = c2.text_input("Strengths (a sweep)", "0, 1, 2, 4" if kind.name == "steer" else "0, 0.5, 1",
                               help=f"Comma-separated. {kind.strength_help}."
                                    + (" 0 (unedited) is always included." if kind.identity_at_zero else ""))
strengths: list[float] = []
try:
    strengths = parse_strengths(strengths_text) if kind.identity_at_zero else \
        sorted({float(v) for v in parse_strengths(strengths_text)})
except WorkbenchError as error:
    c2.error(str(error))
    problems.append("strengths")
metric = c2.selectbox("Metric", list(LOGIT_METRICS) + list(GENERATION_METRICS),
                      format_func=lambda m: METRIC_LABELS.get(m, m) + (" (greedy answers, slower)"
                                                                       if m in GENERATION_METRICS else ""))
edit: dict = {"kind": kind.name, "positions": positions}
if "mode" in kind.settings:
    edit["mode"] = c2.radio("Ablate to", ["zero", "mean"], horizontal=True,
                            help="mean: the feature's mean activation over the reference condition's tokens")
    if edit["mode"] == "mean":
        edit["mean_over"] = pick("Mean over", conditions, "honest", c2)
if "scale" in kind.settings:
    units = [u for u in kind.units if not (use_probe and u == "feature")]
    edit["scale"] = c2.radio("Strength unit", units, horizontal=True,
                             help=" · ".join(f"{u}: {UNITS[u]}" for u in units))
if "patch_from" in kind.settings:
    edit["patch_from"] = pick("Patch from", conditions, "honest", c2)
condition = pick("Apply to condition", conditions, "lie", c3)
n_scenarios = c3.number_input("Scenarios", min_value=1, max_value=200, value=8, step=1,
                              help="A seeded sample of the condition's scenarios about facts the model knows, from the "
                                   "held-out split where the file has one. Each costs one forward pass per strength "
                                   "and control.")
others = ["none"] + [c for c in conditions if c != condition]
other = pick("Same edit on (control)", others, "honest" if "honest" in others else others[min(1, len(others) - 1)], c3)
n_random = c3.number_input("Random directions (control)" if use_probe else "Random matched feature sets (control)",
                           min_value=0, max_value=5, value=2, step=1, help=CONTROLS["random"])
sign_flip = "sign_flip" in kind.controls and c3.checkbox("Sign-flipped edit (control)", value=False,
                                                         help=CONTROLS["sign_flip"])

controls = tuple(c for c, wanted in (("random", n_random > 0), ("sign_flip", sign_flip),
                                     ("other_conditions", other != "none")) if wanted and c in kind.controls)
run = st.button("Run sweep", type="primary", disabled=bool(problems))
if run:
    bar = st.progress(0.0, text="starting")
    try:
        experiment = Experiment(edit=EditSettings(**edit), features=features, direction=direction, layer=layer,
                                condition=condition, n_scenarios=int(n_scenarios), strengths=tuple(strengths),
                                metric=metric, controls=controls,
                                other_conditions=(other,) if other != "none" else (), n_random=int(n_random),
                                n_generations=3, neutral_kl=False)
        result = run_experiment(model, sae, experiment, scenarios,
                                progress=lambda message, fraction: bar.progress(min(max(fraction, 0.0), 1.0),
                                                                                text=message))
    except WorkbenchError as error:
        st.error(str(error))
    else:
        st.session_state.lab_experiment = experiment
        st.session_state.lab_result = result
    finally:
        bar.empty()

result = st.session_state.get("lab_result")
if result is not None:
    st.subheader(f"Result: {result.description()}")
    st.caption(f"Strength unit: {result.unit}")
    target = result.target
    strongest = max(range(len(target.strengths)), key=lambda k: abs(target.strengths[k]))
    effect = target.effects[strongest]
    m1, m2, m3 = st.columns(3)
    label = METRIC_LABELS.get(result.experiment.metric, result.experiment.metric)
    m1.metric(f"Unedited {label}", f"{target.unedited.value:.3g}")
    few = target.unedited.n < 10  # a bootstrap over fewer scenarios is not a 95% interval worth the name
    interval = "bootstrap range" if few else "95% CI"
    m1.caption(f"{interval} [{target.unedited.low:.3g}, {target.unedited.high:.3g}] · n={target.unedited.n} scenarios")
    m2.metric(f"Change at strength {target.strengths[strongest]:g}", f"{effect.value:+.3g}")
    m2.caption(f"{interval} [{effect.low:+.3g}, {effect.high:+.3g}] · n={effect.n} scenarios"
               + (": too few for a meaningful interval" if few else ""))
    if len(result.curves) > 1:
        m3.markdown("**Controls at the strongest strength**")
    for curve in result.curves[1:]:
        control = curve.effects[strongest]
        m3.caption(f"{curve.label} on {curve.condition}: {control.value:+.3g} "
                   f"[{control.low:+.3g}, {control.high:+.3g}] · n={control.n}")
    st.plotly_chart(sweep_figure(result), use_container_width=True)
    for note in result.notes:
        st.info(note)
    if result.random_feature_sets:
        st.caption("Random feature sets: " + " · ".join(", ".join(map(str, r)) for r in result.random_feature_sets))
    st.markdown("**Numbers** (change = edited minus unedited on the same scenario; bootstrap 95% CI over facts)")
    st.dataframe(result.rows(), hide_index=True)
    if result.generations:
        st.markdown(f"**Greedy answers, unedited and at strength {result.generations[0].strength:g}** "
                    f"(first {len(result.generations)} {result.experiment.condition} scenarios)")
        st.dataframe([{"scenario": g.scenario_id, "question": g.question, "true answer": g.true_answer,
                       "unedited answer": g.before, "true? (unedited)": "yes" if g.truthful_before else "no",
                       "edited answer": g.after, "true? (edited)": "yes" if g.truthful_after else "no"}
                      for g in result.generations], hide_index=True)
    st.caption("Turn this experiment into a hypothesis file on the Hypotheses page: it reruns the same experiment.")
