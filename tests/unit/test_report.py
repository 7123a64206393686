"""Hypothesis reports from run records: formats, sections, escaping, offline HTML, atomic writes,
and the one report document every renderer lays out.

Fast (no model): the records are the frozen version-1 fixture and variations of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench.core.errors import WorkbenchError
from workbench.hypotheses.records import RECORD_VERSION, RunRecord, read_record
from workbench.report import (
    BLOCK_TYPES,
    FORMATS,
    SECTIONS,
    SMALL_N,
    build_report,
    limitations,
    md_escape,
    render_report,
    report_command,
    to_html,
    to_markdown,
    write_report,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run-record-v1.json"
INJECTED = "<script>alert(1)</script>"
BOLD = "<b>bold</b>"


class _Page(HTMLParser):
    """Collects what the tests look at: ids in order, text per id, attributes, script bodies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.section_ids: list[str] = []
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self.headings: list[str] = []
        self._in_script = False
        self._heading: list[str] | None = None
        self._id_stack: list[tuple[str, str | None]] = []
        self.text_by_id: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name) is not None:
                self.urls.append(attributes[name])
        if tag == "section" and attributes.get("id"):
            self.section_ids.append(attributes["id"])
        if tag == "script":
            self._in_script = True
            self.scripts.append("")
        if tag in ("h1", "h2", "h3"):
            self._heading = []
        if tag not in ("br", "wbr", "meta", "img", "input", "link"):
            self._id_stack.append((tag, attributes.get("id")))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None
        for index in range(len(self._id_stack) - 1, -1, -1):
            if self._id_stack[index][0] == tag:
                del self._id_stack[index:]
                break

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
            return
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)
        for _, element_id in self._id_stack:
            if element_id:
                self.text_by_id.setdefault(element_id, []).append(data)

    def text_of(self, element_id: str) -> str:
        return "".join(self.text_by_id.get(element_id, []))

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def _parse(document: str) -> _Page:
    page = _Page()
    page.feed(document)
    page.close()
    return page


def _turn_texts(example) -> list[str]:
    """The example's text split where the speaker changes and where the response starts."""
    pieces: list[str] = []
    for position, (token, role) in enumerate(zip(example.tokens, example.roles)):
        if not pieces or role != example.roles[position - 1] or position == example.prompt_length:
            pieces.append("")
        pieces[-1] += token.replace("\n", "↵")
    return pieces


def _fixture_data() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def record() -> RunRecord:
    return read_record(FIXTURE)


@pytest.fixture(scope="module")
def html_report(record) -> str:
    return render_report(record, "html")


@pytest.fixture(scope="module")
def hostile_record() -> RunRecord:
    """The fixture with markup in every kind of user-supplied text."""
    data = _fixture_data()
    data["hypothesis"]["claim"] = f"Latent 1234 {INJECTED} means {BOLD} intent | with a `tick`"
    data["hypothesis"]["name"] = f"name {INJECTED}"
    data["verdict_reason"] = f"because {INJECTED}"
    data["command"] = f"python -m workbench run {INJECTED}"
    example = data["examples"][0]
    example["tokens"][4] = INJECTED
    example["item_id"] = f"item {BOLD}"
    prediction = next(p for p in data["predictions"] if p["controls"])
    prediction["name"] = f"pred {INJECTED}"
    prediction["description"] = f"desc {BOLD}"
    prediction["controls"][0]["name"] = f"control {INJECTED}"
    prediction["details"]["note"] = INJECTED
    data["responses"][0]["response"] = f"{INJECTED} | {BOLD}"
    data["responses"][0]["scenario_id"] = f"scenario {INJECTED}"
    data["probe"][0]["kind"] = f"probe {BOLD}"
    data["feature_stats"][0]["condition"] = f"cond {INJECTED}"
    return RunRecord.model_validate(data)


# ------------------------------------------------------------------------------------------
# The frozen version-1 fixture


def test_v1_fixture_migrates_and_reports_in_every_format(record, tmp_path):
    raw = _fixture_data()
    assert raw["version"] == 1 and all("held" in p and "outcome" not in p for p in raw["predictions"])
    assert record.version == RECORD_VERSION
    for raw_prediction, prediction in zip(raw["predictions"], record.predictions):
        assert (prediction.outcome == "holds") == raw_prediction["held"]
    for fmt in FORMATS:
        path = write_report(record, fmt, tmp_path / f"report.{fmt}", figures=False)
        text = path.read_text(encoding="utf-8")
        assert record.verdict in text.lower()
        assert all(p.name in text for p in record.predictions)


# ------------------------------------------------------------------------------------------
# Round trips: each format's sections parse back


def test_html_has_every_section_in_order_with_the_verdict_and_every_test(record, html_report):
    page = _parse(html_report)
    assert page.section_ids == [section_id for section_id, _ in SECTIONS]
    assert page.text_of("verdict").lower().count(record.verdict) == 1
    assert record.verdict_reason in page.text_of("verdict")
    assert record.hypothesis["claim"] in page.text_of("claim")
    assert record.command in page.text_of("setup")
    predictions_text = page.text_of("predictions")
    for index, prediction in enumerate(record.predictions, start=1):
        block = page.text_of(f"prediction-{index}")
        assert prediction.name in block and prediction.description in block and prediction.outcome in block
        for control in prediction.controls:
            assert control.name in block
        assert prediction.name in predictions_text
    responses_text = page.text_of("responses")
    assert all(r.scenario_id in responses_text and r.call in responses_text for r in record.responses)
    evidence = page.text_of("evidence")
    for example in record.examples:  # every turn, and the response, in full
        for piece in _turn_texts(example):
            assert piece in evidence
    for probe in record.probe:
        assert all(value in evidence for value in (probe.kind, probe.site, probe.positive, probe.negative))


def test_markdown_has_every_section_with_the_verdict_and_every_test(record):
    text = render_report(record, "md")
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings == [f"{i}. {title}" for i, (_, title) in enumerate(SECTIONS, start=1)]
    sections = dict(zip(headings, re.split(r"^## .+$", text, flags=re.MULTILINE)[1:]))
    claim_section = sections[headings[0]]
    assert f"**Verdict: {record.verdict.upper()}**" in claim_section
    assert md_escape(record.verdict_reason) in claim_section
    tests_section = sections[headings[3]]
    test_headings = re.findall(r"^### (.+)$", tests_section, flags=re.MULTILINE)
    assert len(test_headings) == len(record.predictions)
    for heading, prediction in zip(test_headings, record.predictions):
        assert md_escape(prediction.name) in heading and heading.endswith(prediction.outcome)
        for control in prediction.controls:
            assert f"| {md_escape(control.name)} |" in tests_section
    assert record.command in sections[headings[1]]
    for response in record.responses:
        assert md_escape(response.scenario_id) in sections[headings[4]]


def test_each_sweep_is_shown_with_its_values(record, html_report):
    page = _parse(html_report)
    swept = [(i, p) for i, p in enumerate(record.predictions, start=1)
             if p.causal is not None and len(p.causal.result.target.strengths) > 1]
    assert swept
    for index, prediction in swept:
        block = page.text_of(f"prediction-{index}")
        for curve in prediction.causal.result.curves:  # the target's sweep and every control curve
            for point in curve.effects:
                assert f"{point.value:.3f} [{point.low:.3f}, {point.high:.3f}]" in block


def test_json_report_revalidates_to_an_equal_record_at_the_current_version(record):
    text = render_report(record, "json")
    assert json.loads(text)["version"] == RECORD_VERSION
    assert RunRecord.model_validate_json(text) == record


# ------------------------------------------------------------------------------------------
# Escaping of user-supplied text


def test_html_shows_injected_markup_as_text(hostile_record):
    document = render_report(hostile_record, "html")
    assert INJECTED not in document and BOLD not in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    page = _parse(document)
    # The only scripts are ours (plotly.js and the figures' data). User text reaches figure data
    # only HTML-escaped, so plotly (which renders labels as pseudo-HTML) shows it as text too.
    raw_forms = ("<script>alert", "\\u003cscript\\u003ealert", "\\u003cb\\u003ebold")
    assert page.scripts and not any(form in script for script in page.scripts for form in raw_forms)
    # The reader sees the literal text.
    assert f"Latent 1234 {INJECTED} means {BOLD}" in page.text_of("claim")
    assert INJECTED in page.text_of("evidence")  # the token in the conversation
    assert f"{INJECTED} | {BOLD}" in page.text_of("responses")


def test_markdown_escapes_markup_pipes_and_backticks(hostile_record):
    text = render_report(hostile_record, "md")
    # The rerun command stays exact inside a code fence (literal text in Markdown), fenced so
    # that no backtick run in it can close the fence.
    fences = re.findall(r"^(`{3,})\n(.*?)\n\1$", text, flags=re.MULTILINE | re.DOTALL)
    assert [body for _, body in fences] == [hostile_record.command]
    outside = re.sub(r"^(`{3,})\n.*?\n\1$", "", text, flags=re.MULTILINE | re.DOTALL)
    assert "<script" not in outside and "<b>" not in outside and "`tick`" not in outside
    assert "&lt;script&gt;" in outside
    # A pipe in a response does not add a column to its table row.
    header = next(line for line in text.splitlines() if line.startswith("| scenario |") and "| call |" in line)
    row = next(line for line in text.splitlines() if "alert(1)" in line and "intentional lie" in line)
    unescaped = re.compile(r"(?<!\\)\|")
    assert len(unescaped.findall(row)) == len(unescaped.findall(header))


@given(st.text())
def test_md_escape_leaves_no_markup(text):
    escaped = md_escape(text)
    assert "<" not in escaped.replace("<br>", "") and ">" not in escaped.replace("<br>", "")
    assert "\n" not in escaped
    assert not re.search(r"(?<!\\)(\\\\)*[|`]", escaped)


# ------------------------------------------------------------------------------------------
# Offline and self-contained


def test_html_fetches_nothing_and_inlines_plotly_once(html_report):
    page = _parse(html_report)
    external = [url for url in page.urls if url.strip().lower().startswith(("http://", "https://", "//"))]
    assert external == []
    assert all(url.startswith("#") for url in page.urls)  # only in-page links
    bundles = [script for script in page.scripts if "plotly.js v" in script[:200]]
    assert len(bundles) == 1
    assert "@media print" in html_report


# ------------------------------------------------------------------------------------------
# Limitations come from the numbers


def test_limitations_name_small_n_unclear_outcomes_and_overlapping_controls(record):
    found = limitations(record)
    unclear = [p for p in record.predictions if p.outcome == "unclear"]
    overlapping = [(p, c) for p in record.predictions for c in p.controls
                   if c.target_minus_control.low <= 0 <= c.target_minus_control.high]
    assert unclear and overlapping  # the fixture exercises both
    for prediction in unclear:
        assert any(prediction.name in item and "unclear" in item for item in found)
    for prediction, control in overlapping:
        assert any(prediction.name in item and control.name in item for item in found)
    small = [p for p in record.predictions if p.measured.n < SMALL_N]
    for prediction in small:
        assert any(prediction.name in item and f"n={prediction.measured.n}" in item for item in found)


def test_a_control_stronger_than_the_target_is_a_limitation():
    data = _fixture_data()
    prediction = next(p for p in data["predictions"] if p["controls"] and p["comparison"] == ">=")
    control = prediction["controls"][0]
    control["target_minus_control"].update(value=-0.2, low=-0.3, high=-0.1)
    found = limitations(RunRecord.model_validate(data))
    assert any(prediction["name"] in item and control["name"] in item and "more than the target" in item
               for item in found)


def test_an_edit_that_changes_neutral_text_is_a_limitation():
    data = _fixture_data()
    prediction = next(p for p in data["predictions"] if p["kind"] == "causal")
    prediction["details"]["neutral_kl"] = {"value": 0.4, "low": 0.3, "high": 0.5, "n": 8, "method": "bootstrap"}
    found = limitations(RunRecord.model_validate(data))
    assert any(prediction["name"] in item and "neutral text" in item for item in found)
    prediction["details"]["neutral_kl"].update(value=0.01, low=0.0, high=0.02)
    assert not any("neutral text" in item for item in limitations(RunRecord.model_validate(data)))


def test_a_clean_record_reports_no_limitations():
    data = _fixture_data()
    data["scenario_counts"] = {c: 200 for c in data["scenario_counts"]}
    data["probe"] = [{**data["probe"][0], "kind": "logistic_regression",
                      "auroc": {"value": 0.9, "low": 0.85, "high": 0.95, "n": 400, "method": "bootstrap"}}]
    data["responses"] = [r for r in data["responses"] if r["verdict"] != "inconclusive"]
    for prediction in data["predictions"]:
        prediction["held"] = True
        prediction["measured"].update(value=0.8, low=0.75, high=0.85, n=200)
        for control in prediction["controls"]:
            control["target_minus_control"].update(value=0.3, low=0.2, high=0.4, n=200)
    clean = RunRecord.model_validate(data)
    assert limitations(clean) == []
    page = _parse(render_report(clean, "html"))
    assert "None found by the automatic checks" in page.text_of("limitations")


# ------------------------------------------------------------------------------------------
# Typed parts: what the writer stores, the report shows; nothing is guessed


def test_other_features_conditions_and_sweeps_render():
    data = _fixture_data()
    mean = {"value": 1.0, "low": 0.5, "high": 1.5, "n": 9, "method": "bootstrap"}
    active = {"value": 0.5, "low": 0.2, "high": 0.8, "n": 9, "method": "wilson"}
    data["feature_stats"] = [
        {"feature": 7, "site": "model.layers.3", "condition": condition, "position": "last_prompt_token", "n": 9,
         "mean": mean, "active_fraction": active} for condition in ("lie", "ignorant")]
    steering = data["predictions"][2]["details"]
    steering["curve"]["strengths"] = [0.0, 2.0, 4.0]
    steering["curve"]["target"] = [
        {"value": value, "low": low, "high": high, "n": 20, "method": "bootstrap"}
        for value, low, high in ((0.0, 0.0, 0.0), (0.1, 0.0, 0.3), (0.4, 0.2, 0.6))]
    odd = RunRecord.model_validate(data)
    page = _parse(render_report(odd, "html"))
    evidence = page.text_of("evidence")
    assert "feature 7 at model.layers.3" in evidence and "ignorant" in evidence
    assert "0.400 [0.200, 0.600] n=20" in page.text_of("prediction-3")
    markdown = render_report(odd, "md")
    assert "ignorant" in markdown and "0.400 \\[0.200, 0.600\\] n=20" in markdown


def test_keys_the_writer_never_wrote_are_an_error_not_a_guess():
    data = _fixture_data()
    data["predictions"][1]["details"]["odd_key"] = {"nested": [1, 2, 3]}
    with pytest.raises(WorkbenchError, match="odd_key"):
        RunRecord.model_validate(data)
    current = read_record(FIXTURE).model_dump(mode="json")
    current["setup"]["model_hash"] = "abc"
    with pytest.raises(ValueError, match="model_hash"):
        RunRecord.model_validate(current)


# ------------------------------------------------------------------------------------------
# One document, every renderer


def _one_of_each_block():
    """A document holding every block type once, each with text a renderer must show."""
    from workbench.report import document as d

    example = read_record(FIXTURE).examples[0]
    table = d.Table(columns=("column-t",), rows=(("cell-t",),), numeric=(False,))
    blocks = {
        d.Heading: d.Heading("heading-h", 4),
        d.Paragraph: d.Paragraph("paragraph-p"),
        d.VerdictBanner: d.VerdictBanner("Verdict", d.Chip("verdict-v", "#000000"), "reason-r"),
        d.KeyValues: d.KeyValues((("key-k", "value-k"),)),
        d.Table: table,
        d.Figure: d.Figure("figure-f", "figure-title", lambda: __import__("plotly.graph_objects").graph_objects.Figure(),
                           fallback=(d.Paragraph("fallback-f"),)),
        d.Conversation: d.Conversation(example),
        d.Code: d.Code("code-c"),
        d.Limitations: d.Limitations(("limitation-l",), none_found="none-found"),
        d.Group: d.Group("group-anchor", "group-g", "tag-g", d.Chip("chip-g", "#000000"), (d.Paragraph("inside-g"),)),
    }
    document = d.ReportDocument(title="title-t", subtitle="subtitle-s",
                                sections=(d.Section("claim", "1. section-s", tuple(blocks.values())),), footer="footer-f")
    return document, blocks


EXPECTED_TEXT = ["heading-h", "paragraph-p", "verdict-v", "reason-r", "key-k", "value-k", "column-t", "cell-t", "code-c",
                 "limitation-l", "group-g", "chip-g", "inside-g"]


def test_every_renderer_handles_every_block_type():
    from rich.console import Console

    from workbench.report import html, markdown, terminal

    document, blocks = _one_of_each_block()
    assert set(blocks) == set(BLOCK_TYPES)  # the document above holds every type
    for renderer in (html.RENDERERS, markdown.RENDERED_TYPES, terminal.RENDERERS):
        assert set(renderer) == set(BLOCK_TYPES)
    example = blocks[next(t for t in BLOCK_TYPES if t.__name__ == "Conversation")].example
    as_html, as_markdown = to_html(document), to_markdown(document)
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    terminal.to_terminal(document, console)
    as_terminal = console.export_text()
    for text in (as_html, as_markdown, as_terminal):
        assert all(word in text.lower() for word in EXPECTED_TEXT), [w for w in EXPECTED_TEXT if w not in text.lower()]
    assert "js-plotly-plot" in as_html or "plotly-graph-div" in as_html  # the figure drawn
    assert "fallback-f" in as_markdown and "fallback-f" in as_terminal  # where it cannot be
    assert "fallback-f" not in as_html
    assert "capital" in as_terminal and example.tokens[-1].strip() in as_terminal


def test_the_document_is_what_every_format_shows(record):
    document = build_report(record)
    assert [s.anchor for s in document.sections] == [anchor for anchor, _ in SECTIONS]
    markdown = to_markdown(document)
    assert re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE) == [s.title for s in document.sections]
    page = _parse(to_html(document))
    assert [h for h in page.headings if re.match(r"\d+\. ", h) and h in {s.title for s in document.sections}] == \
        [s.title for s in document.sections]
    names = [figure.name for figure in document.figures()]
    assert len(names) == len(set(names)) and all(re.fullmatch(r"[a-z0-9-]+", n) for n in names)


def test_calls_are_shown_only_when_the_run_made_them():
    data = _fixture_data()
    data["responses"] = []
    record = RunRecord.model_validate(data)
    document = build_report(record)
    assert "responses" not in [s.anchor for s in document.sections]
    titles = [s.title for s in document.sections]
    assert titles == [f"{i}. {title}" for i, (_, title) in enumerate(
        [(a, t) for a, t in SECTIONS if a != "responses"], start=1)]
    assert "Per-response calls" not in render_report(record, "md")


def test_expected_calls_and_colours_come_from_the_condition_table(record):
    from workbench.core.conditions import condition_colour, expected_call

    document = build_report(record)
    responses = document.section("responses")
    table = next(b for b in responses.blocks if type(b).__name__ == "Table")
    column = table.columns.index("expected call")
    assert [row[column] for row in table.rows] == [expected_call(r.condition) for r in record.responses]
    figure = next(f for f in document.figures() if f.name == "feature-1").figure()
    conditions = [s.condition for s in record.feature_stats if s.feature == record.feature_stats[0].feature]
    assert list(figure.data[0].marker.color) == [condition_colour(c, i) for i, c in enumerate(conditions)]


def test_terminal_report_shows_the_verdict_and_user_text_literally(hostile_record):
    from rich.console import Console

    from workbench.report import to_terminal

    data = hostile_record.model_dump(mode="json")
    data["verdict_reason"] = "because [bold red]markup[/]"
    console = Console(record=True, width=160, file=open(os.devnull, "w"))
    to_terminal(build_report(RunRecord.model_validate(data)), console, sections=("claim", "predictions"))
    text = console.export_text()
    assert "INCONCLUSIVE" in text and "because [bold red]markup[/]" in text
    assert f"pred {INJECTED}" in text and f"control {INJECTED}" in text
    assert "Setup" not in text


# ------------------------------------------------------------------------------------------
# Atomic writes


def _boom(*args, **kwargs):
    raise KeyboardInterrupt("interrupted")


@pytest.mark.parametrize("fmt", FORMATS)
def test_interrupted_write_keeps_the_previous_report(record, tmp_path, monkeypatch, fmt):
    path = tmp_path / f"report.{fmt}"
    path.write_text("previous", encoding="utf-8")
    monkeypatch.setattr(os, "replace", _boom)  # dies between writing the temporary file and the rename
    with pytest.raises(KeyboardInterrupt):
        write_report(record, fmt, path, figures=False)
    assert path.read_text(encoding="utf-8") == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_interrupted_first_write_leaves_nothing(record, tmp_path, monkeypatch):
    path = tmp_path / "out" / "report.html"
    monkeypatch.setattr(os, "fsync", _boom)  # dies while the bytes are being flushed
    with pytest.raises(KeyboardInterrupt):
        write_report(record, "html", path)
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Markdown figures


def test_markdown_without_png_export_says_so_and_keeps_tables(record, tmp_path, monkeypatch):
    from workbench import report

    def no_browser(figures):
        raise RuntimeError("no Chrome or Chromium found")

    monkeypatch.setattr(report.figures, "render_pngs", no_browser)
    path = write_report(record, "md", tmp_path / "run.md")
    text = path.read_text(encoding="utf-8")
    assert "could not be exported" in text and "no Chrome or Chromium found" in text
    assert "![" not in text
    assert not (tmp_path / "run_files").exists()
    for prediction in record.predictions:
        for control in prediction.controls:
            assert md_escape(control.name) in text


def _chromium() -> str | None:
    return os.environ.get("WORKBENCH_CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome", "chrome")
         if (found := shutil.which(name))), None)


@pytest.mark.browser
def test_markdown_links_png_figures_in_a_sibling_folder(record, tmp_path):
    pytest.importorskip("kaleido")
    if _chromium() is None:
        pytest.skip("no Chrome/Chromium on this machine")
    path = write_report(record, "md", tmp_path / "run.md")
    text = path.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all(link.startswith("run_files/") and link.endswith(".png") for link in links)
    for link in links:
        assert (tmp_path / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "could not be exported" not in text


# ------------------------------------------------------------------------------------------
# report_command (what the CLI calls)


def test_report_command_writes_each_format(tmp_path):
    for fmt in FORMATS:
        written = report_command(FIXTURE, fmt, tmp_path / f"out.{fmt}")
        assert written == tmp_path / f"out.{fmt}" and written.stat().st_size > 0
    folder = tmp_path / "reports"
    folder.mkdir()
    written = report_command(FIXTURE, "json", folder)
    assert written.parent == folder and written.suffix == ".json"
    assert RunRecord.model_validate_json(written.read_text(encoding="utf-8")) == read_record(FIXTURE)


def test_report_command_explains_bad_input(tmp_path):
    with pytest.raises(WorkbenchError, match="html, md, json"):
        report_command(FIXTURE, "pdf", tmp_path / "out.pdf")
    with pytest.raises(WorkbenchError, match="no run record"):
        report_command(tmp_path / "missing.json", "html", tmp_path / "out.html")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(WorkbenchError, match="not valid JSON"):
        report_command(broken, "md", tmp_path / "out.md")
    assert not (tmp_path / "out.html").exists() and not (tmp_path / "out.md").exists()


# ------------------------------------------------------------------------------------------
# The HTML report in a real browser


@pytest.mark.browser
def test_html_report_renders_in_chromium_without_errors(record, html_report, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chrome/Chromium on this machine")
    page_file = tmp_path / "report.html"
    page_file.write_text(html_report, encoding="utf-8")
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
            page.on("console", lambda message: errors.append(f"console: {message.text}")
                    if message.type == "error" else None)
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
            verdict = page.locator("#verdict")
            assert verdict.is_visible()
            assert record.verdict in verdict.inner_text().lower()
            assert page.locator(".js-plotly-plot").count() >= len(record.predictions)
            screenshot = tmp_path / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert [url for url in requests if not url.startswith(("file:", "data:", "blob:"))] == []
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("WORKBENCH_UPDATE_SCREENSHOTS") == "1":
        target = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "report.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)
