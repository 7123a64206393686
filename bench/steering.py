"""Benchmarks of a steering sweep: the workbench's batched sweep against a naive loop of single
calls and against a bare batched forward pass over the same sequences.

Run with ``.venv/bin/python bench/steering.py``. Prints a table and adds its entries to
``bench/results.json`` through :func:`bench.run.record` (same name replaces, the rest is kept).

The sweep: 8 strengths x 64 scenarios on the default model, steering along one SAE feature's
decoder direction at all positions, at the SAE's site (a ``Steering`` edit from ``causal.edits``
along ``feature_direction(sae, [feature])``), metric = the next-token logits at each scenario's
last prompt token, as ``causal.sweeps.edited_logits`` returns them (``[n_scenarios, n_strengths,
vocab]``). The sweep runs the layers up to the site once per scenario and the layers after it once
per (scenario, strength) row (prefix reuse). Both benchmarks count (scenario, strength) rows per
second, and share the timed runs of the batched sweep.

Benchmarks:

* ``steering_sweep_vs_naive``: rows/s of one ``edited_logits`` call with all strengths and
  scenarios vs a loop of single-scenario, single-strength ``edited_logits`` calls. Higher
  ratio (= speed-up) is better; target 5.
* ``steering_sweep_vs_bare_forward``: rows/s of the same batched call vs a bare transformers
  forward pass (no intervention, ``torch.no_grad()``) over the same padded batches. Higher
  ratio is better; target 1.0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the package and bench.run importable
    sys.path.insert(0, str(ROOT))

# Importing bench.run sets OMP_WAIT_POLICY=PASSIVE before torch loads (see bench/README.md).
from bench.run import (  # noqa: E402
    RESULTS_PATH,
    bench_scenarios,
    load_bench_sae,
    load_default_model,
    record_and_show,
)

import torch  # noqa: E402

from workbench.causal.sweeps import sweep_rows  # noqa: E402  (the order the workbench batches rows)

#: Strengths of the sweep, in raw residual units (``Steering.scale`` 1). 0 is the unedited model.
STRENGTHS = (-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0, 16.0)
QUICK_STRENGTHS = (-4.0, 0.0, 4.0, 8.0)
#: Rows per forward pass: ``edited_logits``'s default, used by the bare path too.
BATCH_ROWS = 64
#: Logits of the same row computed in batches of different shapes differ by float32 rounding.
LOGITS_ATOL = 1e-3
LOGITS_RTOL = 1e-4

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(input_ids, attention_mask, last prompt position of every row)."""


# ----------------------------------------------------------------------------- the three paths


def bare_sweep_batches(model: Any, items: Sequence[Any], n_strengths: int, batch_rows: int) -> list[Batch]:
    """The batches ``edited_logits`` runs for the sweep: same rows, order, chunks and right padding."""
    from workbench.model.rendering import pad_batch

    pad_id = model.tokenizer.pad_token_id
    rows = sweep_rows(items, n_strengths)
    batches = []
    for start in range(0, len(rows), batch_rows):
        chunk = [items[item] for item, _ in rows[start : start + batch_rows]]
        input_ids, attention_mask = pad_batch(chunk, pad_id)
        last_positions = torch.tensor([item.prompt_length - 1 for item in chunk])
        batches.append((input_ids, attention_mask, last_positions))
    return batches


def bare_sweep_forward(model: Any, batches: Sequence[Batch]) -> torch.Tensor:
    """Plain transformers forward of every batch, no intervention: last-prompt logits ``[rows, vocab]``."""
    out = torch.zeros(sum(len(ids) for ids, _, _ in batches), model.vocab_size)
    start = 0
    with torch.no_grad():
        for input_ids, attention_mask, last_positions in batches:
            logits = model.hf_model(input_ids=input_ids, attention_mask=attention_mask).logits
            out[start : start + len(input_ids)] = logits[torch.arange(len(input_ids)), last_positions].float()
            start += len(input_ids)
    return out


def naive_sweep(model: Any, sae: Any, items: Sequence[Any], steering: Any, strengths: Sequence[float]) -> torch.Tensor:
    """One ``edited_logits`` call per (scenario, strength): ``[n_items, n_strengths, vocab]``."""
    from workbench.causal.sweeps import edited_logits

    out = torch.zeros(len(items), len(strengths), model.vocab_size)
    for item, strength in sweep_rows(items, len(strengths)):
        out[item, strength] = edited_logits(model, [items[item]], steering, site=sae.site,
                                            strengths=[strengths[strength]])[0, 0]
    return out


def sweep_batch_shapes(items: Sequence[Any], n_strengths: int, batch_rows: int) -> list[tuple[str, tuple[int, int]]]:
    """The forward passes a prefix-reusing sweep runs, as (pass, input shape): per chunk of rows, the
    chunk's new scenarios up to the site (``prefix``), then the rows from the site on (``rows``, the
    bare path's batch shape)."""
    rows = sweep_rows(items, n_strengths)
    shapes, seen = [], set()
    for start in range(0, len(rows), batch_rows):
        chunk = rows[start : start + batch_rows]
        width = max(items[item].n_tokens for item, _ in chunk)
        new = {item for item, _ in chunk} - seen
        seen |= new
        if new:
            shapes.append(("prefix", (len(new), max(items[item].n_tokens for item in new))))
        shapes.append(("rows", (len(chunk), width)))
    return shapes


def forward_batch_shapes(model: Any, fn: Callable[[], Any]) -> tuple[list[tuple[int, ...]], Any]:
    """The ``input_ids`` shape of every forward pass of the transformers model while ``fn`` runs."""
    shapes: list[tuple[int, ...]] = []

    def note_shape(_module: Any, args: Any, kwargs: Any) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is not None:
            shapes.append(tuple(input_ids.shape))

    handle = model.hf_model.register_forward_pre_hook(note_shape, with_kwargs=True)
    try:
        result = fn()
    finally:
        handle.remove()
    return shapes, result


# ----------------------------------------------------------------------------- checks


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def check_paths(batched: torch.Tensor, naive: torch.Tensor, bare: torch.Tensor, strengths: Sequence[float],
                rows: Sequence[tuple[int, int]]) -> dict[str, float]:
    """Fail unless the three paths compute the same logits; return the largest differences.

    ``batched`` and ``naive`` are ``[n_items, n_strengths, vocab]``, ``bare`` is the bare
    forward's ``[n_items * n_strengths, vocab]`` in the order of ``rows``.
    """
    n_items, n_strengths, vocab = batched.shape
    unedited = strengths.index(0.0)
    bare_rows = bare
    bare = torch.zeros_like(batched)
    for row, (item, strength) in enumerate(rows):
        bare[item, strength] = bare_rows[row]
    if not torch.allclose(bare, bare[:, :1].expand_as(bare), rtol=LOGITS_RTOL, atol=LOGITS_ATOL):
        raise RuntimeError("the bare forward gave different logits for copies of the same scenario")
    diffs = {
        "naive_vs_batched": max_abs_diff(naive, batched),
        "strength0_vs_bare_forward": max_abs_diff(batched[:, unedited], bare[:, unedited]),
    }
    if not torch.allclose(naive, batched, rtol=LOGITS_RTOL, atol=LOGITS_ATOL):
        raise RuntimeError(f"naive and batched sweeps disagree: max |diff| {diffs['naive_vs_batched']:.3g}")
    if not torch.allclose(batched[:, unedited], bare[:, unedited], rtol=LOGITS_RTOL, atol=LOGITS_ATOL):
        raise RuntimeError("strength 0 differs from the bare forward: "
                           f"max |diff| {diffs['strength0_vs_bare_forward']:.3g}")
    # The edit must do something, or the comparison with the bare forward says nothing.
    edited = [s for s, value in enumerate(strengths) if value != 0.0]
    smallest_change = min(max_abs_diff(batched[:, s], batched[:, unedited]) for s in edited)
    if smallest_change <= 10 * LOGITS_ATOL:
        raise RuntimeError(f"steering barely changes the logits (max |diff| {smallest_change:.3g} "
                           "at the weakest strength)")
    diffs["smallest_steering_effect"] = smallest_change
    return diffs


# ----------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    cpu, started = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - started, time.process_time() - cpu


def comparison_entry(name: str, target: float, value_rates: list[float], baseline_rates: list[float],
                     value_cpu: list[float], baseline_cpu: list[float], tokens_per_row: float) -> dict[str, Any]:
    """An entry in the format of bench/run.py: medians, spread per run and the CPU-time ratio."""
    value, baseline = statistics.median(value_rates), statistics.median(baseline_rates)
    return {
        "name": name,
        "value": round(value, 2),
        "unit": "rows/s",
        "baseline": round(baseline, 2),
        "ratio": round(value / baseline, 4),
        "target": target,
        "n_runs": len(value_rates),
        "better": "higher",
        "spread": {
            "value_min_max": [round(min(value_rates), 2), round(max(value_rates), 2)],
            "baseline_min_max": [round(min(baseline_rates), 2), round(max(baseline_rates), 2)],
            "ratio_per_run": [round(v / b, 4) for v, b in zip(value_rates, baseline_rates)],
        },
        # CPU time is steadier than wall time on a shared machine: a cross-check of the ratio.
        "cpu_seconds_median": {"value": round(statistics.median(value_cpu), 3),
                               "baseline": round(statistics.median(baseline_cpu), 3)},
        "ratio_cpu_time": round(statistics.median(baseline_cpu) / statistics.median(value_cpu), 4),
        "value_tokens_per_s": round(value * tokens_per_row, 1),
        "baseline_tokens_per_s": round(baseline * tokens_per_row, 1),
    }


def bench_sweep(model: Any, sae: Any, items: Sequence[Any], strengths: Sequence[float], feature: int,
                n_runs: int) -> list[dict[str, Any]]:
    from workbench.causal.edits import Steering, feature_direction
    from workbench.causal.sweeps import edited_logits

    steering = Steering(positions="all", direction=feature_direction(sae, [feature]), scale=1.0)
    n_rows = len(items) * len(strengths)
    batches = bare_sweep_batches(model, items, len(strengths), BATCH_ROWS)
    real_tokens = len(strengths) * sum(item.n_tokens for item in items)
    padded_tokens = sum(input_ids.numel() for input_ids, _, _ in batches)

    paths: dict[str, Callable[[], Any]] = {
        "batched": lambda: edited_logits(model, items, steering, site=sae.site, strengths=strengths,
                                         batch_rows=BATCH_ROWS),
        "naive": lambda: naive_sweep(model, sae, items, steering, strengths),
        "bare": lambda: bare_sweep_forward(model, batches),
    }

    # Warm-up, and checks that the paths compute the same thing on the same batches.
    print("  warm-up and checks", flush=True)
    batched_shapes, batched = forward_batch_shapes(model, paths["batched"])
    bare_shapes = [tuple(input_ids.shape) for input_ids, _, _ in batches]
    expected = sweep_batch_shapes(items, len(strengths), BATCH_ROWS)
    if batched_shapes != [shape for _, shape in expected]:
        raise RuntimeError(f"the batched sweep ran batches {batched_shapes}, expected {expected}")
    if [shape for kind, shape in expected if kind == "rows"] != bare_shapes:
        raise RuntimeError(f"the batched sweep's row passes {expected} differ from the bare path's {bare_shapes}")
    naive = paths["naive"]()
    bare = paths["bare"]()
    diffs = check_paths(batched, naive, bare, list(strengths), sweep_rows(items, len(strengths)))
    print("  checks passed: " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()), flush=True)

    rates: dict[str, list[float]] = {name: [] for name in paths}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for run in range(n_runs):  # interleaved, order rotating, so shared-CPU noise hits every path
        for name in names[run % len(names):] + names[: run % len(names)]:
            seconds, cpu = timed(paths[name])
            rates[name].append(n_rows / seconds)
            cpu_seconds[name].append(cpu)
        print(f"  run {run + 1}/{n_runs}: " + ", ".join(f"{name} {rates[name][-1]:.2f} rows/s" for name in names),
              flush=True)

    print("\n  path                         rows/s (median)   CPU s (median)")
    for name, label in (("naive", "naive loop (1 row per call)"), ("bare", "bare batched forward"),
                        ("batched", "sweep (edited_logits)")):
        print(f"  {label:<28} {statistics.median(rates[name]):>15.2f}   {statistics.median(cpu_seconds[name]):>14.2f}")

    tokens_per_row = real_tokens / n_rows
    common = {
        "n_scenarios": len(items),
        "n_strengths": len(strengths),
        "strengths": list(strengths),
        "n_rows": n_rows,
        "batch_rows": BATCH_ROWS,
        "real_tokens": real_tokens,
        "padded_tokens": padded_tokens,
        "steering": {"feature": feature, "direction": "feature_direction (unit decoder row)",
                     "scale": steering.scale, "positions": steering.positions},
        "check_max_abs_diff": {k: round(v, 6) for k, v in diffs.items()},
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    versus_naive = comparison_entry("steering_sweep_vs_naive", 5.0, rates["batched"], rates["naive"],
                                    cpu_seconds["batched"], cpu_seconds["naive"], tokens_per_row)
    versus_naive.update(
        value_is=f"(scenario, strength) rows/s of one edited_logits call over {len(items)} scenarios x "
                 f"{len(strengths)} strengths, {BATCH_ROWS} rows per forward pass",
        baseline_is=f"rows/s of {n_rows} edited_logits calls of one scenario and one strength each",
        **common,
    )
    versus_bare = comparison_entry("steering_sweep_vs_bare_forward", 1.0, rates["batched"], rates["bare"],
                                   cpu_seconds["batched"], cpu_seconds["bare"], tokens_per_row)
    versus_bare.update(
        value_is=versus_naive["value_is"],
        baseline_is="rows/s of a bare transformers forward (torch.no_grad, no intervention) over the same "
                    "right-padded batches, logits at the last prompt token",
        **common,
    )
    return [versus_naive, versus_bare]


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: 16 scenarios x {len(QUICK_STRENGTHS)} strengths, 3 timed runs")
    parser.add_argument("--scenarios", type=int, default=None, help="number of scenarios (default 64, quick 16)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per path (default 3; min 3)")
    parser.add_argument("--feature", type=int, default=0, help="SAE feature whose decoder direction is steered along")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every path (default: torch's)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="results file to update")
    args = parser.parse_args(argv)

    n_scenarios = args.scenarios or (16 if args.quick else 64)
    strengths = QUICK_STRENGTHS if args.quick else STRENGTHS
    n_runs = max(3, args.runs or 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from workbench.model.rendering import render_conversation

    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as scratch_name:
        model = load_default_model()
        sae, sae_label = load_bench_sae(model, Path(scratch_name))
    scenarios, scenario_label = bench_scenarios(n_scenarios)
    items = [render_conversation(model.tokenizer, [m.model_dump() for m in s.messages]) for s in scenarios]

    print(f"model: {model.spec.display_name}   SAE: {sae_label}")
    print(f"data: {scenario_label} (prompts only), {sum(i.n_tokens for i in items)} tokens; "
          f"{len(strengths)} strengths {list(strengths)} along feature {args.feature}'s decoder direction at all "
          f"positions; torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1) - 0.5:
        hint = "" if torch.get_num_threads() == 1 else ", or use --threads 1"
        print(f"warning: the machine is busy (1-min load {load:.1f} on {os.cpu_count()} cores): wall-clock "
              f"ratios will be noisy; compare ratio_cpu_time{hint}", file=sys.stderr)

    print(f"steering sweep: 1 warm-up + {n_runs} interleaved runs per path (batched, naive, bare)", flush=True)
    entries = bench_sweep(model, sae, items, strengths, args.feature, n_runs)
    for entry in entries:
        entry["sae"] = sae_label
        entry["quick"] = bool(args.quick)
        entry["load_average_1min"] = round(os.getloadavg()[0], 2)
    def spread_line(entry: dict[str, Any]) -> str:
        spread = entry["spread"]
        return (f"{entry['name']}: batched {spread['value_min_max'][0]:.2f}..{spread['value_min_max'][1]:.2f} rows/s, "
                f"baseline {spread['baseline_min_max'][0]:.2f}..{spread['baseline_min_max'][1]:.2f} rows/s, "
                f"ratio per run {spread['ratio_per_run']}; CPU-time ratio {entry['ratio_cpu_time']}")

    record_and_show(entries, args.results, spread_line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
