"""How quickly the Streamlit app answers, measured in a real browser.

Run with ``.venv/bin/python bench/app.py`` (needs chromium: ``make chromium``). Prints a table and
adds two entries to ``bench/results.json`` through :func:`bench.run.record`:

* ``app_cold_start``: seconds from launching ``streamlit run Home.py`` (a new process; the
  dequantised model weights already cached on disk) to the Home page rendered in the browser with
  the default model and SAE loaded. Lower is better; target 15 s. The same run measures a bare
  ``streamlit run`` of a one-line script (the floor the machine sets) and where the app's time goes.
* ``feature_explorer_interaction_warm``: seconds from typing a new feature index into the feature
  explorer (fill + Enter) to the page rendered for that feature, with the model, SAE and capture
  already loaded. An entry the rerun drops (the page comes back with the old index) is made again,
  as a user would, and counts in the time. Lower is better; target 0.5 s.

There is no baseline path for either, so ``baseline`` is the target and ``ratio = value / target``
(pass: ratio <= 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The app runs in the environment the user gave this script: copied before bench/run.py sets
# OMP_WAIT_POLICY for its own torch (the app sets it on importing workbench unless this environment does).
APP_ENV = dict(os.environ)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make bench/ and the package importable
    sys.path.insert(0, str(ROOT))

from bench.run import RESULTS_PATH, record_and_show  # noqa: E402
from ui.serve import CHROMIUM_ARGS, chromium_path, free_port, start_streamlit, stop, wait_healthy  # noqa: E402

COLD_TARGET_S = 15.0
INTERACTION_TARGET_S = 0.5
HOME_READY_TEXT = "Residual width"  # the Home page's model summary, shown once model and SAE are loaded
FLOOR_TEXT = "bench floor ready"
WARMUP_FEATURE = 17
#: Features of the default SAE (1152 latents) opened one after another in the explorer; 38 and 877
#: are the ones hypotheses/intent-l15.yaml names.
FEATURES = (38, 877, 100, 700, 1000, 250, 900, 50, 600, 1100)
#: The first open of the explorer may generate responses and capture them (cached on disk after that).
FIRST_CAPTURE_TIMEOUT_MS = 60 * 60 * 1000
#: Entries of one index before giving up.
MAX_ATTEMPTS = 3
SHOWN_OR_DROPPED_JS = """(feature) => {
  const headers = [...document.querySelectorAll('h3')].map((h) => h.innerText);
  if (headers.some((text) => text.startsWith(`Feature ${feature} at`))) return "shown";
  const box = document.querySelector('input[aria-label^="Feature index"]');
  return box && box.value !== String(feature) ? "dropped" : false;
}"""


# ----------------------------------------------------------------------------- CPU time


def _process_table() -> dict[int, tuple[int, float]]:
    """``{pid: (parent pid, CPU seconds so far)}`` from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def cpu_seconds(server_pid: int) -> tuple[float, float] | None:
    """CPU seconds so far of (the streamlit process, the browser: every other process this script
    started, Playwright's driver included); ``None`` without /proc."""
    if not Path("/proc/self/stat").exists():
        return None
    table = _process_table()
    me = os.getpid()

    def under(pid: int, root: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid == root:
                return True
            pid, seen = table.get(pid, (0, 0.0))[0], seen + 1
        return False

    server = sum(cpu for pid, (_, cpu) in table.items() if under(pid, server_pid))
    browser = sum(cpu for pid, (_, cpu) in table.items() if pid != me and under(pid, me) and not under(pid, server_pid))
    return server, browser


def cpu_median(runs: list[dict[str, Any]]) -> dict[str, float] | None:
    deltas = [r["cpu"] for r in runs if r.get("cpu")]
    if not deltas:
        return None
    return {key: round(statistics.median(d[key] for d in deltas), 3) for key in ("server", "browser")}


def cpu_delta(before: tuple[float, float] | None, after: tuple[float, float] | None) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    return {"server": round(after[0] - before[0], 3), "browser": round(after[1] - before[1], 3)}


# ----------------------------------------------------------------------------- script runs seen by the browser


@dataclass
class ScriptRuns:
    """When the browser received the server's "script running" and "script finished" messages.

    Streamlit only shows its status widget after 500 ms of running and fades it out over 200 ms,
    so a short rerun never shows it and its absence says nothing; these messages do.
    """

    started: list[float] = field(default_factory=list)
    finished: list[tuple[float, str]] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("websocket", lambda ws: ws.on("framereceived", self._on_frame))

    def _on_frame(self, payload: Any) -> None:
        now = time.perf_counter()
        if isinstance(payload, str):
            return
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = ForwardMsg()
        try:
            msg.ParseFromString(payload)
        except Exception:  # noqa: BLE001  (not a ForwardMsg: ignore)
            return
        kind = msg.WhichOneof("type")
        if kind == "session_status_changed" and msg.session_status_changed.script_is_running:
            self.started.append(now)
        elif kind == "script_finished":
            self.finished.append((now, ForwardMsg.ScriptFinishedStatus.Name(msg.script_finished)))

    def wait_finished(self, page: Any, after: float, timeout_s: float) -> float:
        """Time the browser got a successful "script finished" sent after ``after``."""
        deadline = time.perf_counter() + timeout_s
        while True:
            for when, status in self.finished:
                if when > after and status in ("FINISHED_SUCCESSFULLY", "FINISHED_FRAGMENT_RUN_SUCCESSFULLY"):
                    return when
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no script finished within {timeout_s} s (seen: {self.finished[-3:]})")
            page.wait_for_timeout(5)  # lets Playwright deliver the websocket events

    def first_start_after(self, after: float) -> float | None:
        return next((t for t in self.started if t > after), None)


def check_page(page: Any) -> None:
    errors = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    if errors.count():
        raise RuntimeError(f"the app shows an error: {errors.first.inner_text()[:500]}")


# ----------------------------------------------------------------------------- cold start


def launch_to_render(browser: Any, script: Path, ready_text: str, log: Path,
                     timeout_s: float = 600) -> dict[str, Any]:
    """Seconds from ``Popen`` of a new streamlit process to ``ready_text`` rendered and the run finished."""
    port = free_port()
    url = f"http://localhost:{port}"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    runs = ScriptRuns()
    runs.attach(page)
    cpu_before = cpu_seconds(-1)  # the browser's so far (no server yet)
    started = time.perf_counter()
    process = start_streamlit(script, port, log=log, env=APP_ENV)
    try:
        wait_healthy(url, process, timeout=timeout_s)
        healthy = time.perf_counter()
        page.goto(url)
        page.get_by_text(ready_text).first.wait_for(timeout=timeout_s * 1000)
        text_seen = time.perf_counter()
        finished = runs.wait_finished(page, started, timeout_s)
        rendered = max(text_seen, finished)
        cpu = cpu_delta(cpu_before, cpu_seconds(process.pid))
        page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_s * 1000)
        widget_gone = time.perf_counter()
        check_page(page)
        script_start = runs.first_start_after(started)
        return {
            "total": rendered - started,
            "server_up": healthy - started,
            "script_start": (script_start or healthy) - started,
            "script_run": finished - (script_start or healthy),
            "status_widget_gone": widget_gone - started,
            "cpu": cpu,
        }
    finally:
        page.close()
        stop(process)


def load_breakdown() -> dict[str, float]:
    """Seconds of each step the Home page's first run takes, in a fresh interpreter outside Streamlit.

    Imports are timed one after another in the order the app needs them, so each line is what that
    import adds; the loads come after all imports. The weight load is split into its parts where the
    workbench's helpers for them exist (else timed as one step).
    """
    code = r"""
import json, sys, time
marks, t = {}, time.perf_counter()
def mark(name):
    global t
    now = time.perf_counter(); marks[name] = round(now - t, 3); t = now
import streamlit; mark("import streamlit")
import torch; mark("import torch")
import transformers; mark("import transformers")
import nnsight; mark("import nnsight")
import ui.state; mark("import ui.state (workbench)")
import peft; mark("import peft (adapter merge)")
import sae_lens; mark("import sae_lens")
from workbench.model import loading as models
from workbench.model.saes import SAESpec, default_model_spec, load_sae
spec = default_model_spec(); mark("default_model_spec")
try:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = models._ensure_default_cached()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, spec.dtype))
    mark("model weights from cache")
    tokenizer = AutoTokenizer.from_pretrained(folder); mark("tokenizer")
    if spec.adapter:
        model = models._merge_adapter(model, spec.adapter); mark("merge LoRA adapter (peft)")
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
except AttributeError as error:  # the helpers moved: time the whole load
    print(f"note: {error}; timing load_hf as one step", file=sys.stderr)
    model, tokenizer = models.load_hf(spec); mark("load_hf (weights, tokenizer, adapter)")
loaded = models.wrap(model, tokenizer, spec); mark("wrap for nnsight + identity")
with torch.no_grad():
    model(input_ids=torch.tensor([[tokenizer.eos_token_id or 0]]))
mark("first forward pass, 1 token (load_sae's width check)")
load_sae(SAESpec(), loaded); mark("load SAE (its forward pass is then the 2nd)")
print("BREAKDOWN " + json.dumps(marks))
"""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=APP_ENV, capture_output=True, text=True,
                         check=True).stdout
    total = time.perf_counter() - started
    marks = json.loads(next(line for line in out.splitlines() if line.startswith("BREAKDOWN "))[len("BREAKDOWN "):])
    marks["whole process"] = round(total, 3)
    return marks


def bench_cold_start(browser: Any, n_runs: int, scratch: Path, log: Path) -> dict[str, Any]:
    floor_script = scratch / "floor.py"
    floor_script.write_text(f"import streamlit as st\n\nst.write({FLOOR_TEXT!r})\n")
    home = ROOT / "Home.py"
    print("app_cold_start: warm-up launch (fills the weight cache if it is missing)", flush=True)
    launch_to_render(browser, home, HOME_READY_TEXT, log, timeout_s=1800)
    launch_to_render(browser, floor_script, FLOOR_TEXT, log)
    app_runs, floor_runs = [], []
    for run in range(n_runs):  # interleaved, so load on the machine hits both
        floor_runs.append(launch_to_render(browser, floor_script, FLOOR_TEXT, log))
        app_runs.append(launch_to_render(browser, home, HOME_READY_TEXT, log))
        a = app_runs[-1]
        print(f"  run {run + 1}/{n_runs}: app {a['total']:.2f} s (server up {a['server_up']:.2f} s, "
              f"script run {a['script_run']:.2f} s; CPU s {a['cpu']}), bare streamlit {floor_runs[-1]['total']:.2f} s",
              flush=True)
    print("  timing the load steps in a fresh interpreter", flush=True)
    breakdown = load_breakdown()
    totals = [r["total"] for r in app_runs]
    floors = [r["total"] for r in floor_runs]
    value, floor = statistics.median(totals), statistics.median(floors)

    def median_of(key: str, runs: list[dict[str, float]]) -> float:
        return round(statistics.median(r[key] for r in runs), 3)

    return {
        "name": "app_cold_start",
        "value": round(value, 3),
        "unit": "s",
        "baseline": COLD_TARGET_S,
        "ratio": round(value / COLD_TARGET_S, 4),
        "target": 1.0,
        "n_runs": n_runs,
        "better": "lower",
        "value_is": "seconds from launching `streamlit run Home.py` (new process, dequantised weights cached on "
                    f"disk) to {HOME_READY_TEXT!r} rendered in the browser and the script run finished "
                    "(default model + SAE loaded)",
        "baseline_is": f"the target ({COLD_TARGET_S:g} s): there is no baseline path",
        "spread": {"value_min_max": [round(min(totals), 3), round(max(totals), 3)],
                   "per_run": [round(t, 3) for t in totals]},
        "bare_streamlit_s": round(floor, 3),
        "bare_streamlit_is": "same measurement for a one-line script (`st.write`): the floor the machine sets",
        "bare_streamlit_per_run": [round(t, 3) for t in floors],
        "overhead_over_bare_s": round(value - floor, 3),
        "phases_median_s": {
            "server_up": median_of("server_up", app_runs),
            "script_start": median_of("script_start", app_runs),
            "script_run": median_of("script_run", app_runs),
            "status_widget_gone": median_of("status_widget_gone", app_runs),
        },
        "phases_are": "server_up: process launch to /_stcore/health answering; script_start: to the browser "
                      "being told the script runs; script_run: from then to the script finished (imports and "
                      "model/SAE load happen here); status_widget_gone: to the 'Running...' widget removed "
                      "(200 ms fade after the run)",
        "cpu_seconds_median": cpu_median(app_runs),
        "cpu_seconds_are": "CPU time (user + system, all threads) from launch to rendered: server = the streamlit "
                           "process, browser = chromium and Playwright's driver; wall time well above their sum "
                           "is time spent waiting for a core",
        "bare_streamlit_cpu_seconds_median": cpu_median(floor_runs),
        "load_breakdown_s": breakdown,
        "load_breakdown_is": "the Home page's first run step by step in a fresh interpreter (outside Streamlit)",
    }


# ----------------------------------------------------------------------------- feature explorer


def bench_explorer(browser: Any, n_interactions: int, log: Path, screenshot: Path | None) -> dict[str, Any]:
    available = [f for f in FEATURES if f != WARMUP_FEATURE]
    if n_interactions > len(available):
        raise ValueError(f"at most {len(available)} interactions")
    features = available[:n_interactions]
    port = free_port()
    url = f"http://localhost:{port}"
    process = start_streamlit(ROOT / "Home.py", port, log=log, env=APP_ENV)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    runs = ScriptRuns()
    runs.attach(page)
    try:
        wait_healthy(url, process)
        page.goto(url)
        page.get_by_text(HOME_READY_TEXT).first.wait_for(timeout=600_000)
        runs.wait_finished(page, 0.0, 600)
        print("feature_explorer_interaction_warm: opening the explorer (the first time builds the capture)", flush=True)
        opened = time.perf_counter()
        page.get_by_role("link", name="Feature explorer").click()
        box = page.get_by_role("spinbutton", name="Feature index")
        box.wait_for(timeout=FIRST_CAPTURE_TIMEOUT_MS)
        runs.wait_finished(page, opened, FIRST_CAPTURE_TIMEOUT_MS / 1000)
        first_open = time.perf_counter() - opened
        check_page(page)

        def interact(feature: int) -> dict[str, float]:
            """Enter ``feature`` until the page shows it (an entry the rerun drops is made again, as a
            user would)."""
            cpu_before = cpu_seconds(process.pid)
            started = time.perf_counter()
            for attempt in range(1, MAX_ATTEMPTS + 1):
                attempt_started = time.perf_counter()
                box.fill(str(feature))
                box.press("Enter")
                finished = runs.wait_finished(page, attempt_started, 600)
                # One round trip: the header shows the feature, or the box went back to another index
                # (the rerun dropped the entry); until then the browser is still applying the run.
                outcome = page.wait_for_function(SHOWN_OR_DROPPED_JS, arg=feature, polling="raf", timeout=60_000)
                rendered = time.perf_counter()
                if outcome.json_value() == "shown":
                    break
            else:
                raise RuntimeError(f"feature {feature} never showed after {MAX_ATTEMPTS} entries")
            cpu = cpu_delta(cpu_before, cpu_seconds(process.pid))
            page.wait_for_function("() => !document.querySelector('[data-stale=true]')", timeout=60_000)
            check_page(page)
            script_start = runs.first_start_after(attempt_started) or attempt_started
            return {"total": rendered - started, "attempts": attempt, "last_attempt": rendered - attempt_started,
                    "to_script_start": script_start - attempt_started, "script_run": finished - script_start,
                    "render_after_finish": rendered - finished, "cpu": cpu}

        interact(WARMUP_FEATURE)
        results = []
        for index, feature in enumerate(features):
            results.append(interact(feature))
            r = results[-1]
            dropped = (f", {r['attempts'] - 1} dropped entry, last entry {r['last_attempt']:.3f} s"
                       if r["attempts"] > 1 else "")
            print(f"  feature {feature} ({index + 1}/{len(features)}): {r['total']:.3f} s{dropped} "
                  f"(to script start {r['to_script_start']:.3f} s, script run {r['script_run']:.3f} s; "
                  f"CPU s {r['cpu']})",
                  flush=True)
        plots = page.locator(".js-plotly-plot").count()
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
        stop(process)
    totals = [r["total"] for r in results]
    value = statistics.median(totals)
    return {
        "name": "feature_explorer_interaction_warm",
        "value": round(value, 4),
        "unit": "s",
        "baseline": INTERACTION_TARGET_S,
        "ratio": round(value / INTERACTION_TARGET_S, 4),
        "target": 1.0,
        "n_runs": len(totals),
        "better": "lower",
        "value_is": "seconds from filling a new index into the explorer's feature box and pressing Enter to the "
                    "browser holding the finished rerun with 'Feature N at' shown (model, SAE and capture loaded; "
                    "page opened once, one warm-up feature)",
        "baseline_is": f"the target ({INTERACTION_TARGET_S:g} s): there is no baseline path",
        "features": features,
        "per_interaction_s": [round(t, 4) for t in totals],
        "entries_per_feature": [r["attempts"] for r in results],
        "dropped_entries": sum(r["attempts"] - 1 for r in results),
        "last_entry_s": [round(r["last_attempt"], 4) for r in results],
        "last_entry_median_s": round(statistics.median(r["last_attempt"] for r in results), 4),
        "last_entry_is": "from the entry that the page finally showed to it rendered: the interaction's time "
                        "once no entry is dropped",
        "spread": {"value_min_max": [round(min(totals), 4), round(max(totals), 4)]},
        "phases_median_s": {
            "to_script_start": round(statistics.median(r["to_script_start"] for r in results), 4),
            "script_run": round(statistics.median(r["script_run"] for r in results), 4),
            "render_after_finish": round(statistics.median(r["render_after_finish"] for r in results), 4),
        },
        "phases_are": "to_script_start: entry to the browser told the rerun started; script_run: from then to "
                      "the run finished; render_after_finish: from the finished message to the page checked to show "
                      "the feature (at least one round trip to the browser)",
        "cpu_seconds_median": cpu_median(results),
        "cpu_seconds_are": "CPU time (user + system, all threads) of each interaction, dropped entries included: "
                           "server = the streamlit process, browser = chromium and Playwright's driver",
        "first_open_s": round(first_open, 3),
        "plotly_charts_on_last_page": plots,
    }


# ----------------------------------------------------------------------------- main

BENCHMARKS = ("app_cold_start", "feature_explorer_interaction_warm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed cold starts of each script (default 3)")
    parser.add_argument("--interactions", type=int, default=5,
                        help=f"timed feature changes in the explorer (default 5, at most {len(FEATURES)})")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only this benchmark (repeatable)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="results file to update")
    parser.add_argument("--screenshot", type=Path, default=None, help="save the last explorer page here (PNG)")
    args = parser.parse_args(argv)
    selected = args.only or list(BENCHMARKS)

    path = chromium_path()
    if path is None:
        print("error: no chromium found (install it with `make chromium`, or set WORKBENCH_CHROMIUM)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]
    if load_before > (os.cpu_count() or 1) - 0.5:
        print(f"warning: the machine is busy (1-min load {load_before:.1f} on {os.cpu_count()} cores): "
              "timings will be inflated", file=sys.stderr)
    entries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="workbench-bench-app-") as scratch_name, sync_playwright() as playwright:
        scratch = Path(scratch_name)
        log = scratch / "streamlit.log"
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            if "app_cold_start" in selected:
                entries.append(bench_cold_start(browser, max(1, args.runs), scratch, log))
            if "feature_explorer_interaction_warm" in selected:
                entries.append(bench_explorer(browser, max(1, args.interactions), log, args.screenshot))
        except Exception:
            if log.exists():
                print("streamlit output (last 3000 characters):\n" + log.read_text(errors="replace")[-3000:],
                      file=sys.stderr)
            raise
        finally:
            browser.close()

    for entry in entries:
        entry["load_average_1min"] = round(os.getloadavg()[0], 2)
        entry["load_average_1min_at_start"] = round(load_before, 2)
        entry["cpu_count"] = os.cpu_count()
        entry["omp_wait_policy"] = APP_ENV.get("OMP_WAIT_POLICY")
    def detail_line(entry: dict[str, Any]) -> str:
        if entry["name"] == "app_cold_start":
            steps = ", ".join(f"{k} {v:.2f} s" for k, v in entry["load_breakdown_s"].items())
            return (f"app_cold_start: per run {entry['spread']['per_run']} s; bare streamlit "
                    f"{entry['bare_streamlit_s']} s; phases {entry['phases_median_s']}; "
                    f"CPU s {entry['cpu_seconds_median']}\n  load steps (fresh interpreter): {steps}")
        return (f"{entry['name']}: per interaction {entry['per_interaction_s']} s "
                f"({entry['dropped_entries']} dropped entries; last entry alone {entry['last_entry_s']} s); "
                f"phases {entry['phases_median_s']}; CPU s {entry['cpu_seconds_median']}")

    record_and_show(entries, args.results, detail_line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
