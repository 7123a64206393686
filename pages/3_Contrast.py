"""Rank features by how well they separate two conditions."""

import streamlit as st

from ui.charts import distribution_figure
from ui.state import cached_scenarios, load_session, sidebar_summary
from workbench.core.conditions import Condition, condition_choices, condition_label
from workbench.core.errors import WorkbenchError
from workbench.core.positions import POSITION_NAMES, POSITIONS
from workbench.core.stats import fpr_label, percent
from workbench.features.contrast import (
    AGGREGATIONS,
    condition_items,
    contrast,
    default_control,
    describe_split,
    item_feature_matrix,
)

st.set_page_config(page_title="Contrast", layout="wide")
session = load_session()
sidebar_summary(session)
capture, site = session.capture, session.sae.site.name
st.header("Contrast")
conditions = condition_choices(item.condition for item in capture.items if item.condition)
if len(conditions) < 2:
    st.warning("The captured scenarios have fewer than two conditions; load a scenario file with more.")
    st.stop()
c1, c2, c3, c4 = st.columns(4)
lie, parrot = Condition.lie.value, Condition.parrot.value
narrowing = ("A condition narrowed by behaviour (lie+false, lie+truth, ...) holds the scenarios whose response "
             "shows it, judged against the scenario's answers: lie+false vs lie+truth holds the prompt fixed and "
             "varies what the model did")
condition_a = c1.selectbox("Condition A", conditions, index=conditions.index(lie) if lie in conditions else 0,
                           format_func=condition_label, help=narrowing)
condition_b = c2.selectbox("Condition B", conditions, index=conditions.index(parrot) if parrot in conditions else 1,
                           format_func=condition_label, help=narrowing)
position = c3.selectbox("Positions", POSITION_NAMES, help="Which tokens of each scenario are compared (never the "
                        "first, the attention sink)", format_func=lambda name: f"{name}: {POSITIONS[name].description}")
aggregation = c4.selectbox("Aggregate over positions", AGGREGATIONS)
c5, c6 = st.columns([1, 3])
suggested = default_control(condition_a, condition_b, set(conditions))
control = c5.selectbox(f"Control for {fpr_label()}", conditions, index=conditions.index(suggested),
                       format_func=condition_label,
                       help="Each feature's recall of condition A at 1% false-positive rate: the share of A's "
                            "scenarios above the 99th percentile of the control's (default: honest, answers to plain "
                            "questions, when neither side is honest; else condition B)")
min_active = c6.slider("Rank only features active in at least this many scenarios", 1, 50, 5)
# The scenarios the capture was made from: their answers judge the responses of a narrowed condition.
scenarios = cached_scenarios(st.session_state.scenarios_path)


SHOWN = 200  # rows shown (and given a recall); every feature is still ranked


@st.cache_data(show_spinner="ranking features (bootstrap)...", max_entries=16)
def cached_contrast(key: str, a: str, b: str, rule: str, agg: str, minimum: int, control_condition: str):
    return contrast(capture, site, a, b, position_rule=rule, aggregation=agg, min_active=minimum, n_boot=500,
                    scenarios=scenarios, control=control_condition, top=SHOWN)


try:
    result = cached_contrast(capture.meta.key, condition_a, condition_b, position, aggregation, min_active, control)
except WorkbenchError as error:
    st.error(str(error))
    st.stop()

st.markdown(f"**{condition_a}** (n={result.n_a}) vs **{condition_b}** (n={result.n_b}) · ranked "
            f"{result.n_ranked} of {result.n_features} features · dropped: "
            + "; ".join(f"{count} {reason}" for reason, count in result.dropped.items())
            + (f" · excluded {result.excluded_items} scenarios with no token at `{position}`" if result.excluded_items else ""))
for behaviour_split in result.behaviour:
    st.caption(describe_split(behaviour_split))
recall = fpr_label(result.fpr)
st.caption(f"{recall}: the share of {condition_a} above the {percent(1 - result.fpr)} quantile of the control **{result.control}** "
           f"(n={result.n_control})")
if result.recall_note:
    st.warning(result.recall_note)
    recall += " (unresolved)"
rows = [{"feature": r.feature, "AUROC": round(r.auroc, 3), "95% CI": f"[{r.auroc_low:.3f}, {r.auroc_high:.3f}]",
         recall: round(r.recall_at_fpr, 3), f"{recall} 95% CI": f"[{r.recall_at_fpr_low:.3f}, {r.recall_at_fpr_high:.3f}]",
         f"mean {condition_a}": round(r.mean_a, 3), f"mean {condition_b}": round(r.mean_b, 3),
         "active a/b": f"{r.active_a}/{r.active_b}"} for r in result.rows]
selection = st.dataframe(rows, hide_index=True, on_select="rerun", selection_mode="single-row")
chosen_rows = selection.selection.rows if selection else []
if result.rows:
    chosen = result.rows[chosen_rows[0]] if chosen_rows else result.rows[0]
    matrix, selected = item_feature_matrix(capture, site, position, aggregation)
    (members_a, members_b), _ = condition_items(capture, (condition_a, condition_b), scenarios)
    values_a = [float(matrix[i, chosen.feature]) for i in members_a if selected[i] > 0]
    values_b = [float(matrix[i, chosen.feature]) for i in members_b if selected[i] > 0]
    st.plotly_chart(distribution_figure(values_a, values_b, condition_a, condition_b, chosen.feature), use_container_width=True)
    if st.button(f"Open feature {chosen.feature} in the explorer"):
        st.session_state.feature = chosen.feature
        st.switch_page("pages/2_Feature_explorer.py")

st.subheader("Baselines: black box and linear probe")
st.caption("The black-box detector asks the model unrelated yes/no follow-up questions after its answer and separates "
           "the conditions by the log-odds of its yes vs no (a logistic regression); beside it a linear probe at this "
           "site and the top-ranked feature. Each is trained on the scenario file's train split and scored on its "
           "held-out one; the white-box gain is a detector's AUROC minus the black box's on the same responses "
           "(paired bootstrap 95% CI).")
if st.checkbox("Compute the baselines (a forward pass per follow-up question and response)", value=False):
    from workbench.features.blackbox import contrast_baselines

    @st.cache_data(show_spinner="asking the follow-up questions...", max_entries=8)
    def cached_baselines(key: str, a: str, b: str, feature: int | None, per_condition: int):
        responses = {item.item_id: item.response for item in capture.items if item.kind == "scenario"}
        return contrast_baselines(session.model, session.sae, scenarios, a, b,
                                  features=[feature] if feature is not None else [], responses=responses,
                                  max_per_condition=per_condition, n_boot=500)

    try:
        baselines = cached_baselines(capture.meta.key, condition_a, condition_b,
                                     result.rows[0].feature if result.rows else None,
                                     int(st.session_state.get("per_condition", 24)))
    except WorkbenchError as error:
        st.error(str(error))
        st.stop()
    for outcome in baselines.results:
        st.markdown(f"**{outcome.positive}** vs **{outcome.negative}** on held-out responses "
                    f"(n={outcome.n_heldout_positive}+{outcome.n_heldout_negative}; trained on "
                    f"{outcome.n_train_positive}+{outcome.n_train_negative}) · {baselines.followups}")
        table = [{"detector": "black box: follow-up questions", "AUROC [95% CI]": str(outcome.detection.auroc),
                  fpr_label(outcome.detection.fpr): outcome.detection.recall_text(), "white-box gain [95% CI]": ""}]
        table += [{"detector": gain.detector, "AUROC [95% CI]": str(gain.detection.auroc),
                   fpr_label(gain.detection.fpr): gain.detection.recall_text(),
                   "white-box gain [95% CI]": f"{gain.gain.value:+.3f} {gain.gain.interval()}"}
                  for gain in outcome.gains]
        st.dataframe(table, hide_index=True)
