"""Benchmarks of the workbench against the physical limit measured in the same run.

Run with ``make bench`` (= ``.venv/bin/python bench/run.py``). Prints a table and writes
``bench/results.json``: a list of ``{name, value, unit, baseline, ratio, target, n_runs}``
entries (plus informative extra fields), one per benchmark. Other scripts append their own
entries through :func:`record`, which replaces entries of the same name and keeps the rest.

Benchmarks:

* ``capture_throughput``: tokens/s of ``run_capture`` vs a bare transformers forward pass
  over the same batches, stopped at the SAE's site, plus one ``sae.encode`` of the real
  tokens. Higher ratio is better; target 0.85.
* ``sparse_store_bytes_per_token``: bytes per token of the sparse (CSR) feature store vs a
  dense float32 ``[n_tokens, d_sae]`` matrix. Lower ratio is better; target 0.05.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Idle OpenMP threads sleep instead of spinning. Spinning threads on a shared machine take
# turns with other processes and made every run 2-4x slower and its timing erratic. The
# setting applies to both paths. It must be set before torch loads; an explicit
# OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the package importable
    sys.path.insert(0, str(ROOT))

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"
REQUIRED_KEYS = ("name", "value", "unit", "baseline", "ratio", "target", "n_runs")

#: Stand-in SAE used while the registry has no default (same shape as the planned one).
STANDIN_SAE = {"d_sae": 4608, "k": 32, "hook_name": "model.layers.15"}


# ----------------------------------------------------------------------------- results


def record(entries: Sequence[dict[str, Any]], path: Path = RESULTS_PATH) -> list[dict[str, Any]]:
    """Merge ``entries`` into the results file: same name replaces, others are kept in order."""
    for entry in entries:
        missing = [key for key in REQUIRED_KEYS if key not in entry]
        if missing:
            raise ValueError(f"benchmark entry {entry.get('name')!r} lacks {', '.join(missing)}")
    existing: list[dict[str, Any]] = []
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            existing = [e for e in loaded if isinstance(e, dict) and "name" in e] if isinstance(loaded, list) else []
        except json.JSONDecodeError:
            print(f"warning: {path.name} was not valid JSON; rewriting it", file=sys.stderr)
    new = {entry["name"]: dict(entry) for entry in entries}
    merged = [new.pop(e["name"]) if e["name"] in new else e for e in existing]
    merged += list(new.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2) + "\n")
    return merged


def record_and_show(entries: Sequence[dict[str, Any]], path: Path,
                    detail: Callable[[dict[str, Any]], str | None] | None = None) -> None:
    """Record the entries, print the table, a detail line per entry, and where they went."""
    record(entries, path)
    print()
    print_table(entries)
    for entry in entries:
        line = detail(entry) if detail else None
        if line:
            print(f"\n{line}")
    try:
        shown = path.resolve().relative_to(ROOT)
    except ValueError:
        shown = path
    print(f"\nwrote {shown}")


def passes(entry: dict[str, Any]) -> bool | None:
    """Whether an entry meets its target (direction from ``better``, default higher)."""
    if entry.get("ratio") is None or entry.get("target") is None:
        return None
    if entry.get("better", "higher") == "lower":
        return entry["ratio"] <= entry["target"]
    return entry["ratio"] >= entry["target"]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def print_table(entries: Sequence[dict[str, Any]]) -> None:
    header = ("benchmark", "value", "unit", "baseline", "ratio", "target", "pass")
    rows = []
    for e in entries:
        ok = passes(e)
        direction = ">=" if e.get("better", "higher") == "higher" else "<="
        rows.append((
            e["name"], _fmt(e["value"]), e["unit"], _fmt(e["baseline"]), _fmt(e["ratio"]),
            f"{direction} {_fmt(e['target'])}", "-" if ok is None else ("PASS" if ok else "FAIL"),
        ))
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


# ----------------------------------------------------------------------------- setup


def load_default_model() -> Any:
    """The model the registry's default SAE belongs to (the liar organism by default)."""
    from workbench.model.loading import load_model
    from workbench.model.saes import default_model_spec

    return load_model(default_model_spec())


def load_bench_sae(model: Any, scratch: Path) -> tuple[Any, str]:
    """The registry default SAE, or a random TopK stand-in while none is registered."""
    from workbench.core.errors import SAELoadError
    from workbench.model.saes import SAESpec, load_sae, read_registry

    registry = read_registry()
    if registry.default and registry.default in registry.entries:
        try:
            sae = load_sae(SAESpec(), model)
            return sae, f"registry default {registry.default!r} ({type(sae.sae).__name__}, d_sae={sae.d_sae}, {sae.site.name})"
        except SAELoadError as error:
            print(f"warning: registry default SAE did not load ({error}); using a random stand-in", file=sys.stderr)
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    config = TopKSAEConfig(d_in=model.d_model, d_sae=STANDIN_SAE["d_sae"], k=STANDIN_SAE["k"])
    config.metadata.hook_name = STANDIN_SAE["hook_name"]
    standin = TopKSAE(config)
    with torch.no_grad():
        standin.W_dec.copy_(torch.nn.functional.normalize(torch.randn(config.d_sae, config.d_in), dim=1))
        standin.W_enc.copy_(standin.W_dec.T)
        standin.b_enc.zero_()
        standin.b_dec.zero_()
    folder = scratch / "standin-sae"
    standin.save_model(folder)
    sae = load_sae(SAESpec(path=str(folder)), model)
    return sae, (f"random TopK stand-in (registry default missing or not loadable; d_sae={sae.d_sae}, "
                 f"k={STANDIN_SAE['k']}, {sae.site.name})")


def bench_scenarios(n: int) -> tuple[list[Any], str]:
    """``n`` scenarios spread evenly over the default set (built in memory if the file is missing)."""
    from workbench.core.constants import DEFAULT_SCENARIOS
    from workbench.scenarios import build_contrast_set, load_facts, read_scenarios

    if DEFAULT_SCENARIOS.exists():
        scenarios, source = read_scenarios(DEFAULT_SCENARIOS), DEFAULT_SCENARIOS.relative_to(ROOT).as_posix()
    else:
        scenarios, source = build_contrast_set(load_facts(), seed=0), "build_contrast_set(load_facts(), seed=0)"
    step = max(len(scenarios) / n, 1.0)
    chosen = [scenarios[int(i * step)] for i in range(min(n, len(scenarios)))]
    return chosen, f"{len(chosen)} of {len(scenarios)} scenarios from {source}"


# ----------------------------------------------------------------------------- capture throughput


class _StopForward(Exception):
    """Raised from the site's hook: nothing after the site runs."""


Batch = tuple[torch.Tensor, torch.Tensor, list[int]]
"""(input_ids, attention_mask, index into the inputs of every row)."""


def bare_batches(model: Any, inputs: Sequence[Any], batch_size: int) -> list[Batch]:
    """The batches ``run_capture`` builds: rendered, sorted by length, right-padded."""
    from workbench.model.rendering import render_conversation, render_text

    tokenizer = model.tokenizer
    rendered = [
        render_conversation(tokenizer, item.messages or [], item.response) if item.kind == "scenario"
        else render_text(tokenizer, item.text or "")
        for item in inputs
    ]
    order = sorted(range(len(rendered)), key=lambda i: rendered[i].n_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(rendered[i].n_tokens for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, index in enumerate(rows):
            ids = rendered[index].input_ids
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        batches.append((input_ids, attention_mask, rows))
    return batches


def bare_pass(model: Any, sae: Any, batches: Sequence[Batch], keep: bool = False) -> dict[int, torch.Tensor]:
    """Forward to the site (hook raises there) + ``sae.encode`` of the real tokens.

    With ``keep``, returns the features of every input (``{input index: [tokens, d_sae]}``) to
    compare with a capture; timed runs leave it off and return nothing.
    """
    module = model.hf_model.get_submodule(sae.site.module_path)
    captured: list[torch.Tensor] = []

    def stop_after(_module: Any, _args: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    def stop_before(_module: Any, args: Any) -> None:
        captured.append(args[0])
        raise _StopForward

    handle = (module.register_forward_pre_hook(stop_before) if sae.site.reads_input
              else module.register_forward_hook(stop_after))
    kept: dict[int, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for input_ids, attention_mask, rows in batches:
                captured.clear()
                try:
                    model.hf_model(input_ids=input_ids, attention_mask=attention_mask)
                except _StopForward:
                    pass
                features = sae.encode(captured[0][attention_mask.bool()])
                if keep:
                    lengths = attention_mask.sum(dim=1).tolist()
                    kept.update(zip(rows, features.split(lengths)))
    finally:
        handle.remove()
    return kept


def compare_paths(capture: Any, sae: Any, bare_features: dict[int, torch.Tensor]) -> int:
    """Check the capture stored what the bare path computed; return tokens it left empty.

    A token the capture stores must match the bare features (a few may differ, since batched
    float32 kernels can flip a TopK tie); a token it stores nothing for (e.g. position 0,
    which capture skips as an attention sink) is counted, not failed, unless most are empty.
    """
    acts = capture.site(sae.site.name)
    stored_counts = acts.row_ptr[1:] - acts.row_ptr[:-1]
    mismatched, empty, total = 0, 0, 0
    for index, item in enumerate(capture.items):
        expected = bare_features[index]
        span = torch.arange(item.token_start, item.token_start + item.n_tokens)
        got = acts.dense_rows(span)
        stored = stored_counts[span] > 0
        empty += int((~stored & (expected != 0).any(dim=1)).sum())
        close = torch.isclose(got, expected, rtol=1e-4, atol=1e-4).all(dim=1)
        mismatched += int((stored & ~close).sum())
        total += item.n_tokens
    if mismatched > max(1, 0.002 * total) or empty > 0.1 * total:
        raise RuntimeError(
            f"workbench and bare paths disagree: {mismatched} of {total} stored tokens differ, "
            f"{empty} tokens with features were left empty"
        )
    return empty


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result)."""
    cpu, started = time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - started, time.process_time() - cpu, result


def bench_capture(model: Any, sae: Any, inputs: Sequence[Any], n_tokens: int, *, batch_size: int,
                  n_runs: int, store_root: Path, sae_label: str) -> tuple[dict[str, Any], Any]:
    from workbench.features.capture import run_capture

    batches = bare_batches(model, inputs, batch_size)
    assert sum(int(mask.sum()) for _, mask, _ in batches) == n_tokens

    def workbench() -> Any:
        return run_capture(model, [sae], inputs, batch_size=batch_size, generate_responses=False,
                           use_cache=False, store_root=store_root)

    def bare() -> None:
        bare_pass(model, sae, batches)

    # Warm-up, and a check that both paths did the same work.
    capture = workbench()
    if capture.n_tokens != n_tokens:
        raise RuntimeError(f"the capture holds {capture.n_tokens} tokens, the bare batches {n_tokens}")
    tokens_not_stored = compare_paths(capture, sae, bare_pass(model, sae, batches, keep=True))

    bare_rates, workbench_rates, bare_cpu, workbench_cpu = [], [], [], []
    for run in range(n_runs):  # interleaved, order alternating, so shared-CPU noise hits both
        order = (("bare", bare), ("workbench", workbench)) if run % 2 == 0 else (("workbench", workbench), ("bare", bare))
        for label, fn in order:
            seconds, cpu_seconds, result = _timed(fn)
            if label == "bare":
                bare_rates.append(n_tokens / seconds)
                bare_cpu.append(cpu_seconds)
            else:
                workbench_rates.append(n_tokens / seconds)
                workbench_cpu.append(cpu_seconds)
                capture = result
        print(f"  run {run + 1}/{n_runs}: workbench {workbench_rates[-1]:,.0f} tok/s, "
              f"bare {bare_rates[-1]:,.0f} tok/s", flush=True)
    value, baseline = statistics.median(workbench_rates), statistics.median(bare_rates)
    entry = {
        "name": "capture_throughput",
        "value": round(value, 1),
        "unit": "tokens/s",
        "baseline": round(baseline, 1),
        "ratio": round(value / baseline, 4),
        "target": 0.85,
        "n_runs": n_runs,
        "better": "higher",
        "baseline_is": f"bare transformers forward stopped at {sae.site.name} + sae.encode of the real tokens",
        "spread": {
            "value_min_max": [round(min(workbench_rates), 1), round(max(workbench_rates), 1)],
            "baseline_min_max": [round(min(bare_rates), 1), round(max(bare_rates), 1)],
            "ratio_per_run": [round(w / b, 4) for w, b in zip(workbench_rates, bare_rates)],
        },
        # CPU time is steadier than wall time on a shared machine: a cross-check of the ratio.
        "cpu_seconds_median": {"value": round(statistics.median(workbench_cpu), 3),
                               "baseline": round(statistics.median(bare_cpu), 3)},
        "ratio_cpu_time": round(statistics.median(bare_cpu) / statistics.median(workbench_cpu), 4),
        "n_tokens": n_tokens,
        "tokens_not_stored": tokens_not_stored,
        "n_items": len(inputs),
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "sae": sae_label,
    }
    return entry, capture


# ----------------------------------------------------------------------------- sparse store


def bench_store(capture: Any, sae: Any, sae_label: str) -> dict[str, Any]:
    acts = capture.site(sae.site.name)
    n_tokens = capture.n_tokens
    sparse = acts.stored_bytes() / n_tokens
    dense = acts.d_sae * 4.0
    token_meta = sum(t.numel() * t.element_size()
                     for t in (capture.token_ids, capture.item_index, capture.positions, capture.roles))
    on_disk = None
    if capture.path is not None and capture.path.exists():
        on_disk = sum(f.stat().st_size for f in capture.path.iterdir() if f.is_file())
    return {
        "name": "sparse_store_bytes_per_token",
        "value": round(sparse, 2),
        "unit": "bytes/token",
        "baseline": dense,
        "ratio": round(sparse / dense, 5),
        "target": 0.05,
        "n_runs": 1,
        "better": "lower",
        "value_is": "SiteActivations.stored_bytes() / n_tokens (CSR row_ptr + features + values); "
                    "token metadata excluded, as a dense store would need it too",
        "baseline_is": "dense float32 [n_tokens, d_sae] = d_sae * 4 bytes/token",
        "mean_active_features": round(acts.values.numel() / n_tokens, 2),
        "token_metadata_bytes_per_token": round(token_meta / n_tokens, 2),
        "on_disk_bytes_per_token": None if on_disk is None else round(on_disk / n_tokens, 2),
        "n_tokens": n_tokens,
        "sae": sae_label,
    }


# ----------------------------------------------------------------------------- main

BENCHMARKS = ("capture_throughput", "sparse_store_bytes_per_token")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 scenarios, 3 timed runs")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only this benchmark (repeatable)")
    parser.add_argument("--scenarios", type=int, default=None, help="number of scenarios (default 64, quick 16)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per path (default 5, quick 3; min 3)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both paths (default: torch's)")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="results file to update")
    args = parser.parse_args(argv)

    selected = args.only or list(BENCHMARKS)
    n_scenarios = args.scenarios or (16 if args.quick else 64)
    n_runs = max(3, args.runs or (3 if args.quick else 5))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from workbench.features.capture import inputs_from_scenarios

    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as scratch_name:
        scratch = Path(scratch_name)
        model = load_default_model()
        sae, sae_label = load_bench_sae(model, scratch)
        scenarios, scenario_label = bench_scenarios(n_scenarios)
        inputs = inputs_from_scenarios(scenarios)
        from workbench.model.rendering import render_conversation

        n_tokens = sum(render_conversation(model.tokenizer, i.messages or [], i.response).n_tokens for i in inputs)
        print(f"model: {model.spec.display_name}   SAE: {sae_label}")
        print(f"data: {scenario_label}, {n_tokens} tokens, batch size {args.batch_size}, "
              f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1) - 0.5:
            hint = "" if torch.get_num_threads() == 1 else ", or use --threads 1"
            print(f"warning: the machine is busy (1-min load {load:.1f} on {os.cpu_count()} cores): wall-clock "
                  f"ratios will be noisy; compare ratio_cpu_time{hint}", file=sys.stderr)

        entries: list[dict[str, Any]] = []
        capture = None
        if "capture_throughput" in selected:
            print(f"capture_throughput: 1 warm-up + {n_runs} interleaved runs per path", flush=True)
            entry, capture = bench_capture(model, sae, inputs, n_tokens, batch_size=args.batch_size,
                                           n_runs=n_runs, store_root=scratch / "captures", sae_label=sae_label)
            entries.append(entry)
        if "sparse_store_bytes_per_token" in selected:
            if capture is None:
                from workbench.features.capture import run_capture

                capture = run_capture(model, [sae], inputs, batch_size=args.batch_size, generate_responses=False,
                                      use_cache=False, store_root=scratch / "captures")
            entries.append(bench_store(capture, sae, sae_label))

    for entry in entries:
        entry["quick"] = bool(args.quick)
        entry["load_average_1min"] = round(os.getloadavg()[0], 2)

    def spread_line(entry: dict[str, Any]) -> str | None:
        if "spread" not in entry:
            return None
        spread = entry["spread"]
        return (f"{entry['name']}: workbench {spread['value_min_max'][0]:,.0f}..{spread['value_min_max'][1]:,.0f} "
                f"tok/s, bare {spread['baseline_min_max'][0]:,.0f}..{spread['baseline_min_max'][1]:,.0f} tok/s, "
                f"ratio per run {spread['ratio_per_run']}; CPU-time ratio {entry['ratio_cpu_time']}")

    record_and_show(entries, args.results, spread_line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
