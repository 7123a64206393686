"""Benchmarks of the scale study: what one model's study costs against a bare forward pass over the same
prompts, on tiny random Llama-style models of three sizes, and how its time grows with the number of scenarios.

Run with ``.venv/bin/python bench/scale.py`` (``--quick`` for a smoke run). Prints a table and adds its
entries to ``bench/results.json`` through :func:`bench.run.record`.

The models have the default model's tokenizer (SmolLM2, 49k tokens, its chat template) and random weights:
(4 layers, width 64), (8, 128), (12, 256). The study is ``scale.study.study_model`` with three depths and
4 new tokens per answer; its time excludes loading. The baseline is one bare transformers forward pass
(``torch.no_grad()``) over every scenario's prompt in right-padded batches of 16, timed in the same run.

Benchmarks:

* ``scale_study_vs_forward_<size>``: seconds of the study per model against the bare forward. The ratio is
  how many bare passes over the prompts the study costs; the study generates (each new token is a pass),
  reads nine sites, runs steering with four random controls, patching, the copy test and the logit lens, so
  the ratio is large by design. What matters is that it stays about the same across sizes (the study's cost
  grows as a forward pass does): ``scale_study_cost_growth`` is the largest model's ratio over the smallest's
  (target <= 1.5, lower is better).
* ``scale_study_peak_memory_<size>``: the peak resident memory the study adds (sampled every 5 ms) against the
  peak the bare forward adds.
* ``scale_study_time_linearity``: seconds with 4n scenarios over 4 x seconds with n, on the middle model
  (1.0 = linear; target <= 1.25).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
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


def _rss() -> int:
    """Resident memory of this process in bytes (Linux ``/proc``)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def _peak_during(fn: Callable[[], Any]) -> tuple[float, int, Any]:
    """(seconds, peak resident bytes above the start, result) of ``fn``, memory sampled every 5 ms."""
    gc.collect()
    start_rss = _rss()
    peak = [start_rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        thread.join()
    return seconds, max(peak[0], _rss()) - start_rss, result


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
            model.hf_model(input_ids=input_ids, attention_mask=attention)


def study(model: Any, scenarios: Sequence[Any]) -> Any:
    from workbench.scale.study import prepare_scenarios, study_model

    prepared = prepare_scenarios(scenarios, seed=0)
    return study_model(model, prepared, label="bench", spec={}, depths=DEPTHS, max_new_tokens=MAX_NEW_TOKENS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer facts and one timed run")
    parser.add_argument("--facts", type=int, default=None, help="facts per study (default 40; quick 12)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per path (default 3; quick 1)")
    args = parser.parse_args(argv)
    n_facts = args.facts or (12 if args.quick else 40)
    runs = args.runs or (1 if args.quick else 3)

    from workbench.model.loading import ModelSpec, load_model

    entries: list[dict[str, Any]] = []
    ratios: list[float] = []
    scenarios = scenarios_of(n_facts)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        paths = tiny_models(Path(tmp))
        middle = None
        for (n_layers, width), path in zip(SIZES, paths):
            model = load_model(ModelSpec(source=str(path)))
            n_params = sum(p.numel() for p in model.hf_model.parameters())
            study(model, scenarios[:9])  # warm-up
            bare_forward(model, scenarios)
            study_runs, bare_runs = [], []
            for _ in range(runs):
                study_runs.append(_peak_during(lambda: study(model, scenarios))[:2])
                bare_runs.append(_peak_during(lambda: bare_forward(model, scenarios))[:2])
            study_s = statistics.median(s for s, _ in study_runs)
            bare_s = statistics.median(s for s, _ in bare_runs)
            study_mem = max(m for _, m in study_runs)
            bare_mem = max(m for _, m in bare_runs)
            size = f"{n_layers}x{width}"
            ratios.append(study_s / bare_s)
            entries.append({"name": f"scale_study_vs_forward_{size}", "value": round(study_s, 3), "unit": "s",
                            "baseline": round(bare_s, 4), "ratio": round(study_s / bare_s, 1), "target": None,
                            "n_runs": runs, "better": "lower", "params": n_params, "scenarios": len(scenarios)})
            entries.append({"name": f"scale_study_peak_memory_{size}", "value": round(study_mem / 2**20, 1),
                            "unit": "MiB", "baseline": round(bare_mem / 2**20, 1),
                            "ratio": round(study_mem / max(bare_mem, 1), 2), "target": None, "n_runs": runs,
                            "better": "lower", "params": n_params})
            if (n_layers, width) == SIZES[1]:
                middle = model
            else:
                del model
                gc.collect()
        entries.append({"name": "scale_study_cost_growth", "value": round(ratios[-1], 1), "unit": "x forward",
                        "baseline": round(ratios[0], 1), "ratio": round(ratios[-1] / ratios[0], 2), "target": 1.5,
                        "n_runs": runs, "better": "lower"})
        small = scenarios_of(max(n_facts // 4, 3))
        large = scenarios_of(4 * max(n_facts // 4, 3))
        t_small = statistics.median(_peak_during(lambda: study(middle, small))[0] for _ in range(runs))
        t_large = statistics.median(_peak_during(lambda: study(middle, large))[0] for _ in range(runs))
        scale = len(large) / len(small)
        entries.append({"name": "scale_study_time_linearity", "value": round(t_large, 2), "unit": "s",
                        "baseline": round(t_small * scale, 2), "ratio": round(t_large / (t_small * scale), 2),
                        "target": 1.25, "n_runs": runs, "better": "lower",
                        "scenarios": [len(small), len(large)]})
    record_and_show(entries, RESULTS_PATH, detail=lambda e: None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
