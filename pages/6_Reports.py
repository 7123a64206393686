"""Past run records: open one, read its verdict and numbers, download its report."""

from pathlib import Path

import streamlit as st

from ui.records import record_label, show_document
from ui.state import init_state
from workbench.core.constants import REPO_ROOT, repo_relative
from workbench.core.errors import WorkbenchError
from workbench.hypotheses.records import RunRecord, read_record
from workbench.report import ReportDocument, build_report, to_html, to_markdown

st.set_page_config(page_title="Reports", layout="wide")
init_state()
st.session_state.setdefault("runs_dir", str(REPO_ROOT / "runs"))
st.header("Reports")
folders = list(dict.fromkeys([Path(st.session_state.runs_dir), REPO_ROOT / "runs", REPO_ROOT / "hypotheses" / "runs",
                              REPO_ROOT / "examples"]))
st.caption("Run records (JSON) from " + ", ".join(f"`{repo_relative(str(f))}`" for f in folders if f.is_dir())
           + ". Each holds the hypothesis, the setup (model, SAE, site, seeds, versions) and every number.")


@st.cache_data(show_spinner=False, max_entries=256)
def cached_record(path: str, mtime: float) -> RunRecord | str:
    """The record, or the reason it cannot be read."""
    try:
        return read_record(path)
    except WorkbenchError as error:
        return str(error)


@st.cache_resource(show_spinner=False, max_entries=32)
def cached_document(path: str, mtime: float, _record: RunRecord) -> ReportDocument:
    """The record's report document (built once per file version; documents are immutable)."""
    return build_report(_record)


paths = sorted({p for f in folders if f.is_dir() for p in f.rglob("*.json")}, key=lambda p: p.stat().st_mtime,
               reverse=True)
records = {p: cached_record(str(p), p.stat().st_mtime) for p in paths}
readable = [p for p, r in records.items() if isinstance(r, RunRecord)]
unreadable = {p: r for p, r in records.items() if not isinstance(r, RunRecord)}
if not readable:
    st.info("No run records yet: run a hypothesis on the Hypotheses page (or `python -m workbench run FILE.yaml`).")
else:
    st.dataframe([{"record": str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p),
                   "hypothesis": records[p].hypothesis.get("name", "?"), "verdict": records[p].verdict,
                   "predictions": len(records[p].predictions), "created": records[p].created}
                  for p in readable], hide_index=True)
    path = st.selectbox("Open", readable, format_func=lambda p: record_label(p, records[p], REPO_ROOT))
    record: RunRecord = records[path]
    document = cached_document(str(path), path.stat().st_mtime, record)
    show_document(document)
    st.markdown("**Download**")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Record / report (JSON)", record.model_dump_json(indent=1), file_name=f"{path.stem}.json",
                       mime="application/json")
    c2.download_button("Report (HTML)", lambda: to_html(document), file_name=f"{path.stem}.html", mime="text/html",
                       help="Self-contained: tables, charts and whole conversations in one file, opens offline")
    c3.download_button("Report (Markdown)", lambda: to_markdown(document), file_name=f"{path.stem}.md",
                       mime="text/markdown", help="Tables only; `python -m workbench report --format md` adds PNG figures")
if unreadable:
    with st.expander(f"{len(unreadable)} JSON file(s) skipped: not readable as run records"):
        for p, reason in unreadable.items():
            st.warning(f"{p.name}: {reason}")
