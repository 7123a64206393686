"""Showing run records in the app: the verdict and the numbers behind every prediction."""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from workbench.hypotheses.records import RunRecord
from workbench.core.stats import Estimate

VERDICT_BADGES = {"supported": ":green-background[supported]", "refuted": ":red-background[refuted]",
                  "inconclusive": ":orange-background[inconclusive]"}
OUTCOME_WORDS = {"holds": "holds", "contradicted": "contradicted", "unclear": "unclear (interval overlaps the threshold)"}


def _number(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def interval(e: Estimate) -> str:
    return f"[{_number(e.low)}, {_number(e.high)}]"


def prediction_rows(record: RunRecord) -> list[dict]:
    return [{"prediction": p.name, "kind": p.kind, "metric": p.metric, "measured": _number(p.measured.value),
             "95% CI": interval(p.measured), "n": p.measured.n, "predicted": f"{p.comparison} {p.threshold:g}",
             "outcome": OUTCOME_WORDS.get(p.outcome, p.outcome)} for p in record.predictions]


def control_rows(record: RunRecord) -> list[dict]:
    return [{"prediction": p.name, "control": c.name, "control effect": _number(c.effect.value),
             "95% CI": interval(c.effect), "n": c.effect.n,
             "target − control": _number(c.target_minus_control.value),
             "95% CI ": interval(c.target_minus_control)}
            for p in record.predictions for c in p.controls]


def show_record(record: RunRecord) -> None:
    """Verdict, reason, setup, and the predictions and controls tables."""
    name = record.hypothesis.get("name", "hypothesis")
    st.markdown(f"### {name}: {VERDICT_BADGES.get(record.verdict, record.verdict)}")
    st.markdown(f"{record.verdict_reason}")
    claim = record.hypothesis.get("claim")
    if claim:
        st.markdown(f"> {claim}")
    setup = record.setup
    direction = record.hypothesis.get("direction")
    target = (f"{direction['probe']} direction {direction['positive']} - {direction['negative']}" if direction
              else f"features {record.hypothesis.get('features', [])}")
    st.caption(f"model {setup.get('model_name') or setup.get('model', {}).get('source', '?')} · site "
               f"`{setup.get('site', '?')}` · {target} · scenarios "
               + ", ".join(f"{k} {v}" for k, v in sorted(record.scenario_counts.items()))
               + f" · run {record.created} in {record.seconds:g} s")
    st.markdown("**Predictions** (measured value with its 95% interval and n; a prediction holds only if the whole "
                "interval is on the predicted side of the threshold)")
    st.dataframe(prediction_rows(record), hide_index=True)
    controls = control_rows(record)
    if controls:
        st.markdown("**Controls** (the same measurement under control edits)")
        st.dataframe(controls, hide_index=True)
    st.caption(f"Rerun: `{record.command}`")


def record_label(path: Path, record: RunRecord | None, root: Path) -> str:
    try:
        shown = path.relative_to(root)
    except ValueError:
        shown = path
    if record is None:
        return f"{shown} (unreadable)"
    return f"{shown} · {record.hypothesis.get('name', '?')} · {record.verdict} · {record.created}"
