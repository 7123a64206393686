"""The app lays out the same report document as the files: every block type, and a whole record."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def test_the_app_has_a_renderer_for_every_block_type():
    from ui.records import RENDERERS
    from workbench.report import BLOCK_TYPES

    assert set(RENDERERS) == set(BLOCK_TYPES)


def _show_every_block_type() -> None:
    from tests.unit.test_report import _one_of_each_block
    from ui.records import show_document

    document, _ = _one_of_each_block()
    show_document(document, collapsed=())


def _show_the_v1_fixture() -> None:
    from pathlib import Path

    from ui.records import show_record
    from workbench.hypotheses.records import read_record

    show_record(read_record(Path("tests") / "fixtures" / "run-record-v1.json"))


def test_every_block_type_renders_in_the_app():
    app = AppTest.from_function(_show_every_block_type, default_timeout=60).run()
    assert not app.exception
    shown = " ".join(m.value for m in app.markdown) + " ".join(c.value for c in app.caption)
    for word in ("heading-h", "paragraph-p", "verdict-v", "reason-r", "key-k", "value-k", "limitation-l",
                 "group-g", "chip-g", "inside-g"):
        assert word in shown
    assert app.table[0].value.columns.tolist() == ["column-t"]
    assert [c.value for c in app.code] == ["code-c"]
    assert app.get("plotly_chart")


def test_a_record_renders_in_the_app_with_its_verdict_and_numbers():
    app = AppTest.from_function(_show_the_v1_fixture, default_timeout=60)
    app.run()
    assert not app.exception
    assert any("inconclusive" in m.value for m in app.markdown)
    summary = app.table[0].value
    assert {"measured", "95% CI", "n", "outcome"} <= set(summary.columns) and len(summary) == 3
    assert [e.label for e in app.expander][:2] == ["2. Setup", "3. Evidence"]
