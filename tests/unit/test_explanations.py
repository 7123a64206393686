"""Explanations: how examples are shown (whole conversations vs windows), the scores against known answers,
the store, and the endpoint explainer's request (a local stub server, no network)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from workbench.core.errors import WorkbenchError
from workbench.core.stats import balanced_accuracy_estimate
from workbench.features.capture import inputs_from_scenarios, run_capture
from workbench.features.evidence import FeatureExample
from workbench.features.explanations import (
    MARK_OPEN,
    EndpointExplainer,
    ExplainerInfo,
    ExplainSettings,
    LocalExplainer,
    activating_positions,
    add_explanations,
    explain_feature,
    format_example,
    read_store,
)

TOKENS = ["<|im_start|>", "system", "\n", "Be", " nice", "<|im_end|>", "\n",
          "<|im_start|>", "user", "\n", "Capital", " of", " France", "?", "<|im_end|>", "\n",
          "<|im_start|>", "assistant", "\n", "The", " capital", " is", " Paris"]
ROLE_RUNS = ["system"] * 7 + ["user"] * 9 + ["assistant"] * 7


def conversation_example() -> FeatureExample:
    values = [0.0] * len(TOKENS)
    values[TOKENS.index(" Paris")] = 2.0
    values[TOKENS.index(" capital")] = 1.0
    values[TOKENS.index("Be")] = 0.1  # below the marking fraction of the maximum
    return FeatureExample(item_id="s1", kind="scenario", condition="lie", tokens=TOKENS, roles=ROLE_RUNS,
                          values=values, prompt_length=19, max_position=len(TOKENS) - 1, max_value=2.0)


def test_conversation_mode_shows_every_turn_marked_and_activating_tokens():
    example = conversation_example()
    text = format_example(example, "conversation", marked=activating_positions(example, 0.2))
    assert text == "[system] Be nice\n[user] Capital of France?\n[assistant] The <<capital>> is <<Paris>>"


def test_window_mode_shows_tokens_around_the_maximum_without_turns():
    example = conversation_example()
    text = format_example(example, "window", window=3, marked=activating_positions(example, 0.2))
    assert text == "... The <<capital>> is <<Paris>> ..."
    assert "[user]" not in text and "France" not in text


class FakeExplainer:
    """Records every prompt; writes a fixed explanation; answers P(yes) from a list, in order."""

    def __init__(self, answers=None, text="capital cities in lies"):
        self.info = ExplainerInfo(kind="fake", model="fake-1")
        self.answers, self.text = list(answers or []), text
        self.written: list[str] = []
        self.asked: list[str] = []

    def write(self, prompt, max_new_tokens):
        self.written.append(prompt)
        return f"Explanation: {self.text}\nmore words"

    def p_yes(self, prompts):
        self.asked += list(prompts)
        return [self.answers.pop(0) if self.answers else 0.5 for _ in prompts]


@pytest.fixture(scope="module")
def capture(tiny_model, tiny_sae, tiny_scenarios):
    return run_capture(tiny_model, [tiny_sae], inputs_from_scenarios(tiny_scenarios[:40]), batch_size=8, generate_responses=False,
                       max_new_tokens=3)


def busy_feature(capture, site) -> int:
    """A feature active on some but not all items."""
    acts = capture.site(site)
    n_items = len(capture.items)
    for feature in torch.argsort(acts.features.long().bincount(minlength=acts.d_sae), descending=True).tolist():
        values = acts.feature_values(feature)
        hit = {int(capture.item_index[t]) for t in torch.nonzero(values > 0).flatten().tolist()}
        if 12 <= len(hit) <= n_items - 8:
            return feature
    raise AssertionError("no feature active on part of the items")


def test_prompts_show_whole_conversations_in_conversation_mode_only(capture, tiny_sae):
    site = tiny_sae.site.name
    feature = busy_feature(capture, site)
    whole, window = FakeExplainer(), FakeExplainer()
    a = explain_feature(capture, site, feature, whole, whole, ExplainSettings(mode="conversation", n_score=10))
    b = explain_feature(capture, site, feature, window, window, ExplainSettings(mode="window", window=2, n_score=10))
    assert a.text == "capital cities in lies" and a.prompt == whole.written[0]
    assert "[system]" in a.prompt and "[user]" in a.prompt and "[assistant]" in a.prompt and MARK_OPEN in a.prompt
    shown = capture.item(a.example_ids[0])
    assert shown.messages[-1]["content"].split()[0] in a.prompt  # the user's whole question is there
    assert "[user]" not in b.prompt and "[system]" not in b.prompt and MARK_OPEN in b.prompt
    assert "<|im_start|>" not in a.prompt + b.prompt
    assert len(b.prompt) < len(a.prompt)
    # held-out items were never shown to the explainer
    scored = {e.item_id for e in a.detection.examples} | {e.item_id for e in a.fuzzing.examples}
    assert not scored & set(a.example_ids)
    # detection prompts carry no marks; fuzzing prompts do
    assert all(MARK_OPEN not in p for p in whole.asked[: a.detection.n_positive + a.detection.n_negative])
    assert all(MARK_OPEN in p for p in whole.asked[a.detection.n_positive + a.detection.n_negative:])


def test_scores_match_known_answers(capture, tiny_sae):
    site = tiny_sae.site.name
    feature = busy_feature(capture, site)
    answers = [0.9, 0.2, 0.7, 0.6, 0.1, 0.4, 0.8, 0.3, 0.55, 0.45] * 4
    scorer = FakeExplainer(answers=answers)
    e = explain_feature(capture, site, feature, FakeExplainer(), scorer, ExplainSettings(n_score=10))
    for score in (e.detection, e.fuzzing):
        pos = [x.p_yes for x in score.examples if x.label]
        neg = [x.p_yes for x in score.examples if not x.label]
        expected = (sum(p > 0.5 for p in pos) / len(pos) + sum(p <= 0.5 for p in neg) / len(neg)) / 2
        assert score.balanced_accuracy.value == pytest.approx(expected)
        assert score.balanced_accuracy.n == len(pos) + len(neg) == score.n_positive + score.n_negative
        assert score.balanced_accuracy.low <= expected <= score.balanced_accuracy.high
    assert e.detection.n_positive == e.detection.n_negative == 5
    # the detection positives are the activating items
    acts = capture.site(site).feature_values(feature)
    for scored in e.detection.examples:
        item = capture.item(scored.item_id)
        assert (acts[item.token_start: item.token_start + item.n_tokens].max() > 0) == scored.label


def test_perfect_and_constant_scorers():
    perfect = balanced_accuracy_estimate(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2, 0.3]))
    always_yes = balanced_accuracy_estimate(torch.tensor([0.9, 0.8]), torch.tensor([0.9, 0.7]))
    assert (perfect.value, perfect.n) == (1.0, 5) and always_yes.value == 0.5


def test_local_explainer_runs_on_the_tiny_model(capture, tiny_model, tiny_sae):
    local = LocalExplainer(tiny_model)
    p = local.p_yes(["Is Paris in France? Answer Yes or No.", "x"])
    assert len(p) == 2 and all(0 <= v <= 1 for v in p)
    e = explain_feature(capture, tiny_sae.site.name, busy_feature(capture, tiny_sae.site.name), local, local,
                        ExplainSettings(n_score=6, n_explain=2, max_new_tokens=4))
    assert e.explainer.kind == "local" and e.explainer.model == tiny_model.identity
    assert e.detection.balanced_accuracy.n == 6


def test_store_round_trip_and_replacement(capture, tiny_sae, tmp_path):
    site = tiny_sae.site.name
    feature = busy_feature(capture, site)
    path = tmp_path / "store.json"
    first = explain_feature(capture, site, feature, FakeExplainer(), FakeExplainer(), ExplainSettings(n_score=6))
    window = explain_feature(capture, site, feature, FakeExplainer(), FakeExplainer(),
                             ExplainSettings(mode="window", n_score=6))
    add_explanations(path, [first, window])
    again = read_store(path)
    assert again.explanations == [first, window]
    newer = first.model_copy(update={"text": "newer"})
    add_explanations(path, [newer])
    found = read_store(path).find(site=site, feature=feature, model_identity=capture.meta.model_identity)
    assert sorted(e.text for e in found) == ["capital cities in lies", "newer"]
    assert read_store(tmp_path / "none.json").explanations == []
    (tmp_path / "bad.json").write_text('{"explanations": 3}')
    with pytest.raises(WorkbenchError, match="not an explanation store"):
        read_store(tmp_path / "bad.json")


class _Stub(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - the stdlib's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        reply = "Yes." if "Answer Yes or No" in body["messages"][0]["content"] else "Mentions of capitals."
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_endpoint_explainer_sends_an_openai_chat_request(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("WORKBENCH_EXPLAINER_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1/")
        monkeypatch.setenv("WORKBENCH_EXPLAINER_MODEL", "stub-model")
        monkeypatch.setenv("WORKBENCH_EXPLAINER_API_KEY", "sk-test")
        endpoint = EndpointExplainer.from_environment()
        assert endpoint.write("Explain this.", 50) == "Mentions of capitals."
        assert endpoint.p_yes(["Is it? Answer Yes or No."]) == [1.0]
    finally:
        server.shutdown()
    first = _Stub.seen[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["body"] == {"model": "stub-model", "messages": [{"role": "user", "content": "Explain this."}],
                             "max_tokens": 50, "temperature": 0}
    assert "sk-test" not in json.dumps(endpoint.info.model_dump())


def test_endpoint_explainer_needs_its_settings_and_says_which(monkeypatch):
    monkeypatch.delenv("WORKBENCH_EXPLAINER_BASE_URL", raising=False)
    with pytest.raises(WorkbenchError, match="WORKBENCH_EXPLAINER_BASE_URL"):
        EndpointExplainer.from_environment()
    monkeypatch.setenv("WORKBENCH_EXPLAINER_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("WORKBENCH_EXPLAINER_MODEL", "m")
    with pytest.raises(WorkbenchError, match="cannot reach the explainer endpoint"):
        EndpointExplainer.from_environment().write("x", 1)


def test_hypothesis_report_shows_the_features_explanations(capture, tiny_sae):
    from workbench.core.constants import REPO_ROOT
    from workbench.features.explanations import ExplanationStore
    from workbench.hypotheses.records import read_record
    from workbench.report import build_report, to_html, to_markdown
    from workbench.report.document import Table, explanations_for

    record = read_record(REPO_ROOT / "hypotheses" / "runs" / "intent-l15.json")
    made = explain_feature(capture, tiny_sae.site.name, busy_feature(capture, tiny_sae.site.name), FakeExplainer(),
                           FakeExplainer(answers=[0.9] * 40), ExplainSettings(n_score=6))
    own = made.model_copy(update={"model_identity": record.setup.model_identity, "sae_identity": record.setup.sae_identity,
                                  "site": record.setup.site, "feature": 38})
    other = own.model_copy(update={"feature": 5})  # not a feature of the hypothesis
    found = explanations_for(record, ExplanationStore(explanations=[own, other]))
    assert found == [own]
    document = build_report(record, found)
    tables = [b for b in document.section("evidence").blocks if isinstance(b, Table) and "explanation" in b.columns]
    assert len(tables) == 1 and tables[0].rows[0][2] == "capital cities in lies"
    assert "n=6" in tables[0].rows[0][3]
    assert "capital cities in lies" in to_markdown(document) and "capital cities in lies" in to_html(document)
    assert "No stored explanation" in to_markdown(build_report(record))
