"""Benchmarks of the scale study: what one model's study costs against a bare forward pass over the same
prompts, on tiny random Llama-style models of three sizes, and how its time grows with the number of scenarios.

Run with ``.venv/bin/python bench/scale.py`` (``--quick`` for a smoke run). Prints a table and adds its
entries to ``bench/results.json`` through :func:`bench.run.record`.

The models have the default model's tokenizer (SmolLM2, 49k tokens, its chat template) and random weights:
(4 layers, width 64), (8, 128), (12, 256). The study is ``scale.study.study_model`` with three depths and
4 new tokens per answer; its time excludes loading. The baseline is one bare transformers forward pass
(``torch.no_grad()``, logits at the last position only) over every scenario's prompt in right-padded batches of
16, timed in the same run. Each path runs in its own process (after one warm-up run), so its peak resident memory
(``ru_maxrss``: Python, torch and the model included, the same for both) is its own.

Benchmarks:

* ``scale_study_vs_forward_<size>``: seconds of the study per model against the bare forward. The ratio is
  how many bare passes over the prompts the study costs; the study generates (each new token is a pass),
  reads nine sites, runs steering with four random controls, patching, the copy test and the logit lens, so
  the ratio is large by design. What matters is that it stays about the same across sizes (the study's cost
  grows as a forward pass does): ``scale_study_cost_growth`` is the largest model's ratio over the smallest's
  (target <= 1.5, lower is better).
* ``scale_study_peak_memory_<size>``: the study process's peak resident memory against the bare forward's
  (``added_by_work_mib``: what each adds above the loaded model, study then forward).
* ``scale_study_time_linearity``: seconds with 4n scenarios over 4 x seconds with n, on the middle model
  (1.0 = linear; target <= 1.25).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import RESULTS_PATH, record_and_show  # noqa: E402  (sets OMP_WAIT_POLICY before torch)

import torch  # noqa: E402

SIZES = ((4, 64), (8, 128), (12, 256))
DEPTHS = (0.0, 0.5, 1.0)
MAX_NEW_TOKENS = 4


def tiny_models(folder: Path) -> list[Path]:
    """The three random models, saved with the default model's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from workbench.model.loading import _ensure_default_cached

    tokenizer = AutoTokenizer.from_pretrained(_ensure_default_cached())
    paths = []
    for n_layers, width in SIZES:
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width,
                             num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                             tie_word_embeddings=True)
        path = folder / f"random-{n_layers}x{width}"
        LlamaForCausalLM(config).eval().save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(path)
    return paths


def scenarios_of(n_facts: int) -> list[Any]:
    """Honest, lie and parrot scenarios of ``n_facts`` facts of the default set."""
    from workbench.core.constants import DEFAULT_SCENARIOS
    from workbench.scale.study import prepare_scenarios
    from workbench.scenarios import read_scenarios

    return prepare_scenarios(read_scenarios(DEFAULT_SCENARIOS), max_facts=n_facts, seed=0).scenarios


def bare_forward(model: Any, scenarios: Sequence[Any]) -> None:
    """One transformers forward over every prompt, right-padded batches of 16, no gradients."""
    from workbench.model.rendering import pad_batch, render_conversation

    items = sorted((render_conversation(model.tokenizer, s.messages) for s in scenarios), key=lambda i: i.n_tokens)
    with torch.no_grad():
        for start in range(0, len(items), 16):
            input_ids, attention = pad_batch(items[start : start + 16], model.tokenizer.pad_token_id or 0)
            model.hf_model(input_ids=input_ids, attention_mask=attention, logits_to_keep=1)


def study(model: Any, scenarios: Sequence[Any]) -> Any:
    from workbench.scale.study import prepare_scenarios, study_model

    prepared = prepare_scenarios(scenarios, seed=0)
    return study_model(model, prepared, label="bench", spec={}, depths=DEPTHS, max_new_tokens=MAX_NEW_TOKENS)


def child(kind: str, path: str, n_facts: int, runs: int) -> dict[str, Any]:
    """One path in this process, for its peak memory: load the model, warm up, time ``runs`` runs."""
    import resource

    from workbench.model.loading import ModelSpec, load_model

    model = load_model(ModelSpec(source=path))
    scenarios = scenarios_of(n_facts)
    with open("/proc/self/statm") as handle:  # resident memory with the model loaded, before any work
        loaded = int(handle.read().split()[1]) * resource.getpagesize()
    work = (lambda: study(model, scenarios)) if kind == "study" else (lambda: bare_forward(model, scenarios))
    work()  # warm-up
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": statistics.median(seconds), "peak_rss": peak, "added_rss": max(peak - loaded, 0),
            "params": sum(p.numel() for p in model.hf_model.parameters()), "scenarios": len(scenarios)}


def run_child(kind: str, path: Path, n_facts: int, runs: int) -> dict[str, Any]:
    import json
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--child", kind, "--model", str(path), "--facts", str(n_facts),
                          "--runs", str(runs)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer facts and one timed run")
    parser.add_argument("--facts", type=int, default=None, help="facts per study (default 40; quick 12)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per path (default 3; quick 1)")
    parser.add_argument("--child", choices=("study", "forward"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n_facts = args.facts or (12 if args.quick else 40)
    runs = args.runs or (1 if args.quick else 3)
    if args.child:
        import json

        print(json.dumps(child(args.child, args.model, n_facts, runs)))
        return 0

    entries: list[dict[str, Any]] = []
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        paths = tiny_models(Path(tmp))
        for (n_layers, width), path in zip(SIZES, paths):
            studied = run_child("study", path, n_facts, runs)
            bare = run_child("forward", path, n_facts, runs)
            size = f"{n_layers}x{width}"
            ratios.append(studied["seconds"] / bare["seconds"])
            entries.append({"name": f"scale_study_vs_forward_{size}", "value": round(studied["seconds"], 3),
                            "unit": "s", "baseline": round(bare["seconds"], 4), "ratio": round(ratios[-1], 1),
                            "target": None, "n_runs": runs, "better": "lower", "params": studied["params"],
                            "scenarios": studied["scenarios"]})
            entries.append({"name": f"scale_study_peak_memory_{size}", "value": round(studied["peak_rss"] / 2**20, 1),
                            "unit": "MiB", "baseline": round(bare["peak_rss"] / 2**20, 1),
                            "ratio": round(studied["peak_rss"] / bare["peak_rss"], 2), "target": None,
                            "n_runs": runs, "better": "lower", "params": studied["params"],
                            "added_by_work_mib": [round(studied["added_rss"] / 2**20, 1),
                                                  round(bare["added_rss"] / 2**20, 1)]})
        entries.append({"name": "scale_study_cost_growth", "value": round(ratios[-1], 1), "unit": "x forward",
                        "baseline": round(ratios[0], 1), "ratio": round(ratios[-1] / ratios[0], 2), "target": 1.5,
                        "n_runs": runs, "better": "lower"})
        quarter = max(n_facts // 4, 3)
        small = run_child("study", paths[1], quarter, runs)
        large = run_child("study", paths[1], 4 * quarter, runs)
        scale = large["scenarios"] / small["scenarios"]
        entries.append({"name": "scale_study_time_linearity", "value": round(large["seconds"], 2), "unit": "s",
                        "baseline": round(small["seconds"] * scale, 2),
                        "ratio": round(large["seconds"] / (small["seconds"] * scale), 2), "target": 1.25,
                        "n_runs": runs, "better": "lower", "scenarios": [small["scenarios"], large["scenarios"]]})
    record_and_show(entries, RESULTS_PATH, detail=lambda e: None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
