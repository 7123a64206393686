"""Causal lab: edit the model (any registered edit kind) over a sweep of strengths and measure the
effect on the answer against controls. The page builds one ``Experiment`` and runs it through the
engine every hypothesis test uses, so saving it as a hypothesis reruns the same experiment."""

import streamlit as st

from ui.charts import METRIC_LABELS, sweep_figure
from ui.fields import int_field
from ui.tables import show_table
from ui.state import cached_scenarios, load_session, sidebar_summary
from workbench.causal.edits import CONTROLS, EDIT_KINDS, UNITS
from workbench.causal.experiment import (
    EditSettings,
    Experiment,
    check_experiment,
    ExperimentContext,
    ProbeDirection,
    experiment_site,
    far_strengths,
    parse_features,
    parse_strengths,
    run_experiment,
    select_scenarios,
)
from workbench.causal.measurements import GENERATION_METRICS, LOGIT_METRICS
from workbench.core.conditions import CONDITIONS, condition_choices, condition_label
from workbench.core.errors import WorkbenchError
from workbench.core.positions import POSITIONS
from workbench.core.stats import MIN_BOOTSTRAP_N

MAX_SCENARIOS = 200

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


def lab_scale_measures(experiment: Experiment) -> dict:
    """For the raw ``unit`` scale only: the features' largest typical firing or the residual norm, so
    far strengths can be judged before the sweep (cached feature statistics; other units need none)."""
    if getattr(experiment.edit, "scale", None) != "unit":
        return {}
    ctx = ExperimentContext(model, sae, scenarios, site=experiment_site(experiment, model, sae), seed=experiment.seed)
    with st.spinner("measuring the features' typical firing to judge the strengths"):
        if experiment.direction is None:
            return {"typical_firing": max(ctx.typical_firing(experiment.features))}
        ctx.targets = select_scenarios(scenarios, experiment.condition, experiment.n_scenarios, experiment.seed)
        return {"residual_norm": ctx.residual_norm()}


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
    layer = int_field(c1, f"Layer (residual stream after it; 0 to {model.n_layers - 1})", 0, model.n_layers - 1,
                      key="lab_layer", default=sae_layer,
                      help=f"SAE features live at the SAE's site ({sae.site.name}); a probe direction or "
                           "a patch can act after any decoder layer")
    if layer is None:
        problems.append("layer")
    elif layer == sae.site.layer:
        layer = None
strengths_text = c2.text_input("Strengths (a sweep)", "0, 0.5, 1, 2" if kind.name == "steer" else "0, 0.5, 1",
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
# Targets and the specificity control may be narrowed by what the model did (lie+false: the lies it told).
targets_offered = condition_choices(conditions)
condition = pick("Apply to condition", targets_offered, "lie", c3, format_func=condition_label,
                 help="A condition narrowed by behaviour (lie+false, lie+truth, ...) takes the scenarios whose greedy "
                      "response shows it: the model's responses are generated once and cached.")
n_scenarios = int_field(c3, f"Scenarios (1 to {MAX_SCENARIOS})", 1, MAX_SCENARIOS, key="lab_scenarios", default=8,
                        help="A seeded sample of the condition's scenarios about facts the model knows, from the "
                             f"held-out split where the file has one. Each costs one forward pass per strength "
                             f"and control. Fewer than {MIN_BOOTSTRAP_N} give no interval.")
if n_scenarios is None:
    problems.append("scenarios")
others = ["none"] + [c for c in targets_offered if c != condition]
other = pick("Same edit on (control)", others, "honest" if "honest" in others else others[min(1, len(others) - 1)], c3,
             format_func=lambda c: c if c == "none" else condition_label(c))
n_random = int_field(c3, ("Random directions (control)" if use_probe else "Random matched feature sets (control)")
                     + " (0 to 5)", 0, 5, key="lab_random", default=2, help=CONTROLS["random"])
if n_random is None:
    problems.append("random")
sign_flip = "sign_flip" in kind.controls and c3.checkbox("Sign-flipped edit (control)", value=False,
                                                         help=CONTROLS["sign_flip"])

controls = tuple(c for c, wanted in (("random", bool(n_random)), ("sign_flip", sign_flip),
                                     ("other_conditions", other != "none")) if wanted and c in kind.controls)
experiment: Experiment | None = None

if not problems:
    try:
        experiment = Experiment(edit=EditSettings(**edit), features=features, direction=direction, layer=layer,
                                condition=condition, n_scenarios=n_scenarios, strengths=tuple(strengths),
                                metric=metric, controls=controls,
                                other_conditions=(other,) if other != "none" else (), n_random=n_random,
                                n_generations=3, neutral_kl=False)
        check_experiment(experiment, model, sae, scenarios)  # everything that needs no forward pass
    except (WorkbenchError, ValueError) as error:
        experiment = None
        st.error(str(error))
        problems.append("settings")
far: list[str] = []
if experiment is not None:
    try:
        far = far_strengths(experiment, **lab_scale_measures(experiment))
    except WorkbenchError as error:
        st.error(str(error))
        problems.append("scale")
    if far:
        st.warning("Strengths far outside the measured range: " + "; ".join(far) + ". Edits this large usually push "
                   "the model off its distribution (answers turn to repeated tokens), so the result shows the KL "
                   "divergence on neutral text beside it.")
        if not st.checkbox("Run these strengths anyway", key="lab_far_ok"):
            problems.append("far")
        else:
            experiment = experiment.model_copy(update={"neutral_kl": True})
run = st.button("Run sweep", type="primary", disabled=bool(problems))
if run and experiment is not None:
    bar = st.progress(0.0, text="starting")
    try:
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
if result is not None and experiment is not None and result.experiment != experiment:
    # A result is shown only beside the settings that made it: never a stale one under new settings.
    st.info("The settings changed since the last sweep: run it again to see their result.")
    result = None
if result is not None:
    st.subheader(f"Result: {result.description()}")
    st.caption(f"Strength unit: {result.unit}")
    target = result.target
    strongest = max(range(len(target.strengths)), key=lambda k: abs(target.strengths[k]))
    effect = target.effects[strongest]
    m1, m2, m3 = st.columns(3)
    label = METRIC_LABELS.get(result.experiment.metric, result.experiment.metric)
    m1.metric(f"Unedited {label}", f"{target.unedited.value:.3g}")
    m1.caption(f"{target.unedited.labelled_interval('.3g')} · n={target.unedited.n} scenarios")
    m2.metric(f"Change at strength {target.strengths[strongest]:g}", f"{effect.value:+.3g}")
    m2.caption(f"{effect.labelled_interval('+.3g')} · n={effect.n} scenarios")
    if not effect.has_interval:
        m2.caption(f"Too few scenarios for an interval: a bootstrap over {effect.n} values gives a range, not a 95% "
                   f"interval. Run at least {MIN_BOOTSTRAP_N} scenarios.")
    if len(result.curves) > 1:
        m3.markdown("**Controls at the strongest strength**")
    for curve in result.curves[1:]:
        control = curve.effects[strongest]
        m3.caption(f"{curve.label} on {curve.condition}: {control.value:+.3g} "
                   f"{control.interval('+.3g')} · n={control.n}")
    if result.neutral_kl is not None:
        kl = result.neutral_kl
        st.warning(f"Side effect on neutral text at strength {target.strengths[strongest]:g}: KL {kl.value:.3g} nats "
                   f"{kl.interval('.3g')} · n={kl.n} (unedited vs edited next-token distributions)")
    st.plotly_chart(sweep_figure(result), use_container_width=True)
    for note in result.notes:
        st.info(note)
    if result.random_feature_sets:
        st.caption("Random matched feature sets drawn (seeded): "
                   + " · ".join("{" + ", ".join(map(str, r)) + "}" for r in result.random_feature_sets))
    st.markdown("**Numbers** (change = edited minus unedited on the same scenario; bootstrap 95% CI over facts)")
    # Widths that keep every column on the page at 1400 px (the edit's label wraps in the tooltip).
    measured = result.experiment.metric
    st.dataframe(result.rows(), hide_index=True, column_config={
        "edit": st.column_config.TextColumn(width=190), "condition": st.column_config.TextColumn(width=75),
        "strength": st.column_config.NumberColumn(width=65), f"{measured} change": st.column_config.NumberColumn(width=95),
        "95% CI": st.column_config.TextColumn(width=150), "n": st.column_config.NumberColumn(width=40),
        f"unedited {measured}": st.column_config.NumberColumn(width=95),
        "target minus this": st.column_config.TextColumn(width=200)})
    if result.generations:
        st.markdown(f"**Greedy answers, unedited and at strength {result.generations[0].strength:g}** "
                    f"(first {len(result.generations)} {result.experiment.condition} scenarios)")
        show_table([{"scenario": g.scenario_id, "question": g.question, "true answer": g.true_answer,
                     "unedited answer": g.before, "true? (unedited)": "yes" if g.truthful_before else "no",
                     "edited answer": g.after, "true? (edited)": "yes" if g.truthful_after else "no"}
                    for g in result.generations])
    st.caption("Turn this experiment into a hypothesis file on the Hypotheses page: it reruns the same experiment.")
