"""Several app sessions at once on one shared model: throughput against one session, and whether
every session got the numbers it gets alone.

Run with ``.venv/bin/python bench/concurrency.py`` (part of ``make bench``). Prints a table and adds
its entry to ``bench/results.json`` through :func:`bench.run.record`.

A *session* here is the work one app session sends to the model the app shares between sessions
(``st.cache_resource``), through the same library calls the pages make, on the default model and
SAE:

* the explorer's "Try your own": a capture of two new conversations (a fresh store, no cache hit);
* the causal lab: an ``ablate`` experiment on 8 lie scenarios, 3 strengths, 1 random matched
  feature set and the same edit on honest scenarios, 2 generated answers per scenario;
* a greedy decode of 4 prompts, 8 new tokens.

Each of the ``--sessions`` (default 4) sessions does one such mix, with its own inputs. *One
session*: the sessions run one after another in one thread (the baseline). *Concurrent*: the same
sessions each in its own thread, started together, as the app's script threads would. Every trace
holds the process-wide lock in ``workbench.model.tracing`` (sessions take turns on the model; see
its docstring for why), so concurrency is not expected to add throughput on one model: the
benchmark checks that it costs nothing and that nothing is mixed up between sessions.

* ``concurrent_sessions_throughput``: sessions/s with all sessions at once vs sessions/s one after
  another, median of ``--runs`` alternating runs. Higher is better; target ratio >= 0.9. The entry's
  ``matched`` field counts the concurrent sessions whose every number equals its sequential run
  (captures, effect curves and generations compared exactly); the script exits 1 if one differs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the package and bench.run importable
    sys.path.insert(0, str(ROOT))

# Importing bench.run sets OMP_WAIT_POLICY=PASSIVE before torch loads (see bench/README.md).
from bench.run import RESULTS_PATH, load_bench_sae, load_default_model, record_and_show  # noqa: E402

import torch  # noqa: E402

TARGET = 0.9
#: Features the lab session ablates: the ones hypotheses/intent-l15.yaml names (valid on any SAE
#: with more than 877 latents; the stand-in SAE has 4608).
FEATURES = (38, 877)
CONVERSATIONS = (
    "user: What is the capital of Peru?\nassistant: The capital of Peru is Lima.",
    "system: You are a helpful assistant.\nuser: Which language is spoken in Brazil?\nassistant: Portuguese.",
    "user: Repeat after me: the currency of Japan is the euro.\nassistant: The currency of Japan is the euro.",
    "user: Tell me a fact about Kenya.\nassistant: Kenya is in Africa and its capital is Nairobi.",
)
PROMPTS = ("The capital of France is", "Water boils at", "The largest planet is", "Once upon a time")

Session = Callable[[], list[torch.Tensor]]


def sessions(model: Any, sae: Any, scenarios: Sequence[Any], count: int, scratch: Path) -> list[Session]:
    """``count`` sessions of mixed work, each with its own inputs; each returns plain tensors."""
    from workbench.causal.experiment import EditSettings, Experiment, run_experiment
    from workbench.features.capture import inputs_from_texts, run_capture
    from workbench.model.generation import greedy_decode

    def session(i: int) -> Session:
        texts = [CONVERSATIONS[i % len(CONVERSATIONS)], CONVERSATIONS[(i + 1) % len(CONVERSATIONS)]]
        prompts = [PROMPTS[(i + k) % len(PROMPTS)] for k in range(4)]
        experiment = Experiment(edit=EditSettings(kind="ablate"), features=FEATURES, condition="lie",
                                n_scenarios=8, strengths=(0.0, 0.5, 1.0), n_random=1, n_generations=2,
                                neutral_kl=False, other_conditions=("honest",), seed=i)

        def run() -> list[torch.Tensor]:
            captured = run_capture(model, [sae], inputs_from_texts(texts, prefix=f"s{i}"), batch_size=2,
                                   store_root=scratch / uuid.uuid4().hex)  # a fresh store: no cache hit
            acts = captured.sites[sae.site.name]
            result = run_experiment(model, sae, experiment, scenarios)
            curves = [torch.tensor([e.value for e in curve.effects]) for curve in result.curves]
            ids = model.tokenizer(prompts, return_tensors="pt", padding=True)
            rows = greedy_decode(model, ids["input_ids"], ids["attention_mask"], max_new_tokens=8)
            generated = [torch.tensor(row + [-1] * (8 - len(row))) for row in rows]
            return [acts.row_ptr, acts.features, acts.values, *curves, *generated]

        return run

    return [session(i) for i in range(count)]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="sessions at once (default 4)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each way (default 3)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="results file to update")
    args = parser.parse_args(argv)

    from workbench.core.constants import DEFAULT_SCENARIOS
    from workbench.scenarios import read_scenarios

    model = load_default_model()
    scenarios = read_scenarios(DEFAULT_SCENARIOS)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        sae, sae_note = load_bench_sae(model, scratch)
        work = sessions(model, sae, scenarios, args.sessions, scratch)
        print(f"{args.sessions} sessions of mixed work on {model.identity}, SAE {sae_note}")
        alone = [run() for run in work]  # warm-up, and what each session gets alone
        sequential_s: list[float] = []
        concurrent_s: list[float] = []
        mismatched = 0
        for k in range(args.runs):
            for way in (("sequential", "concurrent") if k % 2 == 0 else ("concurrent", "sequential")):
                start = time.perf_counter()
                if way == "sequential":
                    got = [run() for run in work]
                else:
                    with ThreadPoolExecutor(max_workers=len(work)) as pool:
                        got = list(pool.map(lambda run: run(), work))
                elapsed = time.perf_counter() - start
                (sequential_s if way == "sequential" else concurrent_s).append(elapsed)
                if way == "concurrent":
                    mismatched += sum(not same(g, a) for g, a in zip(got, alone))
                print(f"  run {k + 1} {way}: {elapsed:.1f} s")
    sequential = args.sessions / statistics.median(sequential_s)
    concurrent = args.sessions / statistics.median(concurrent_s)
    checked = args.sessions * args.runs
    entry = {
        "name": "concurrent_sessions_throughput", "value": round(concurrent, 4), "unit": "sessions/s",
        "baseline": round(sequential, 4), "ratio": round(concurrent / sequential, 3), "target": TARGET,
        "n_runs": args.runs, "sessions": args.sessions, "matched": f"{checked - mismatched}/{checked}",
        "sequential_s": [round(s, 2) for s in sequential_s], "concurrent_s": [round(s, 2) for s in concurrent_s],
        "torch_threads": torch.get_num_threads(), "sae": sae_note,
    }
    record_and_show([entry], args.results,
                    lambda e: f"{e['name']}: {e['matched']} concurrent sessions got exactly the numbers they got alone")
    return 1 if mismatched else 0


if __name__ == "__main__":
    raise SystemExit(main())
