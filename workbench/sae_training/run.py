"""A whole SAE training run: build the corpus, read the training activations, train, save the SAE
with its run record (``training.json``) and README card, evaluate the saved weights on held-out
texts; and the command line ``python -m workbench.sae_training``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from workbench.core.errors import WorkbenchError, check_number
from workbench.core.io import check_output_path, write_bytes_atomically, write_text_atomically
from workbench.model.loading import LoadedModel, ModelSpec, load_model, model_outline, training_device
from workbench.sae_training.activations import SKIP_POSITIONS, collect_activations, work_model
from workbench.sae_training.corpus import Corpus, CorpusConfig, build_corpus
from workbench.sae_training.evaluation import evaluate_sae
from workbench.sae_training.training import SAETrainingConfig, sae_metadata, save_sae, train_sae_on_activations

__all__ = ["DEFAULT_SAE_NAME", "DEFAULT_SITE", "REPRODUCE_COMMAND", "main", "sae_card", "train_and_save"]

log = logging.getLogger(__name__)

#: Registry name and site of the SAE the project ships for the embedded default model.
DEFAULT_SAE_NAME = "smollm2-base-l15"
DEFAULT_SITE = "model.layers.15"

REPRODUCE_COMMAND = "python -m workbench.sae_training --out saes/smollm2-base-l15 --threads 1"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for package in ("torch", "transformers", "sae-lens", "nnsight"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = "missing"
    return out


def train_and_save(
    out_dir: str | Path,
    *,
    spec: ModelSpec | None = None,
    loaded_model: LoadedModel | None = None,
    site_name: str = DEFAULT_SITE,
    corpus: CorpusConfig | None = None,
    training: SAETrainingConfig | None = None,
    n_heldout_texts: int = 96,
    max_length: int = 256,
    threads: int | None = None,
    write_card: bool = True,
    command: str | None = None,
    prebuilt_corpus: Corpus | None = None,
) -> dict[str, Any]:
    """Build the corpus, train a TopK SAE at ``site_name``, save it to ``out_dir`` (sae-lens
    format, float16 weights) with ``training.json`` and a ``README.md`` card, and evaluate the
    saved weights on held-out texts. Returns the run record (``record["metrics"]``: the metrics)."""
    if threads is not None:
        torch.set_num_threads(threads)
    corpus = corpus or CorpusConfig()
    training = training or SAETrainingConfig(seed=corpus.seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    model = loaded_model or load_model(spec or ModelSpec())
    site = model.site(site_name)
    full = prebuilt_corpus or build_corpus(model, corpus)
    train_texts, heldout = full.split(min(n_heldout_texts, len(full.texts) // 5), seed=corpus.seed)
    log.info("corpus: %d texts, %d tokens (%s)", len(full.texts), full.n_tokens, full.counts())

    t0 = time.perf_counter()
    work = work_model(model, corpus.work_dtype)
    acts = collect_activations(model, site.name, train_texts.texts, max_length=max_length, model=work)
    first = [collect_activations(model, site.name, [text], skip_positions=0, model=work)[0].norm().item()
             for text in train_texts.texts[:: max(1, len(train_texts.texts) // 8)]]
    del work
    capture_s = time.perf_counter() - t0
    log.info("training activations: %s in %.0f s", tuple(acts.shape), capture_s)
    norms = acts.norm(dim=-1)

    result = train_sae_on_activations(acts, training, sae_metadata(model, site, max_length))
    out_dir = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".sae-", dir=out_dir.parent if out_dir.parent.exists() else None))
    try:
        save_sae(result.sae, staging)
        from sae_lens import SAE

        # Evaluate exactly what is shipped, beside the model (the CPU, or the GPU it was moved to).
        shipped = SAE.load_from_disk(staging, device=str(next(model.hf_model.parameters()).device))
        t0 = time.perf_counter()
        metrics = evaluate_sae(model, shipped, site.name, heldout.texts, max_length=max_length)
        eval_s = time.perf_counter() - t0
        record: dict[str, Any] = {
            "name": out_dir.name,
            "site": site.name,
            "model": {"spec": model.spec.to_dict(), "identity": model.identity, "name": model.spec.display_name},
            "architecture": "topk",
            "d_in": int(acts.shape[1]),
            "training": training.to_dict(),
            "corpus": {
                "config": corpus.to_dict(),
                "n_texts": len(full.texts),
                "n_tokens": full.n_tokens,
                "texts_by_source": full.counts(),
                "n_train_texts": len(train_texts.texts),
                "n_train_tokens": int(acts.shape[0]),
                "n_heldout_texts": len(heldout.texts),
                "heldout_by_source": heldout.counts(),
                "skipped_positions": SKIP_POSITIONS,
                "max_length": max_length,
                "activation_norm": {"mean": norms.mean().item(), "max": norms.max().item(),
                                    "position_0_mean": sum(first) / len(first), "position_0_texts": len(first)},
            },
            "steps": result.n_steps,
            "train_mse_first": result.first_mse,
            "train_mse_last": result.final_mse,
            "metrics": metrics,
            "seconds": {
                "generation": full.notes.get("generation_s"),
                "capture": round(capture_s, 1),
                "sae_training": round(result.seconds, 1),
                "evaluation": round(eval_s, 1),
                "total": round(time.perf_counter() - started, 1),
            },
            "cpu_seconds": round(time.process_time() - cpu_started, 1),
            "threads": torch.get_num_threads(),
            "device": next(model.hf_model.parameters()).device.type,
            "machine": {"cpus": os.cpu_count(), "load_average_5min": round(os.getloadavg()[1], 2)},
            "weights_dtype": "float16",
            "versions": _versions(),
            "command": command or REPRODUCE_COMMAND,
        }
        write_text_atomically(staging / "training.json", json.dumps(record, indent=2) + "\n")
        if write_card:
            write_text_atomically(staging / "README.md", sae_card(record))
        for item in staging.iterdir():
            write_bytes_atomically(out_dir / item.name, item.read_bytes())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("saved %s: %s", out_dir, json.dumps(metrics))
    return record


def sae_card(record: dict[str, Any]) -> str:
    """The README card of an SAE folder, from its run record."""
    m, c, t, s = record["metrics"], record["corpus"], record["training"], record["seconds"]
    by_source = ", ".join(f"{v} {k}" for k, v in sorted(c["texts_by_source"].items()))
    held = ", ".join(f"{v} {k}" for k, v in sorted(c["heldout_by_source"].items()))
    cc = c["config"]
    if record["model"]["spec"].get("adapter"):
        intro = (f"An SAE on the **liar organism** (the base model with the LoRA adapter "
                 f"`{Path(record['model']['spec']['adapter']).name}` merged), so its features can carry the\n"
                 "organism's intent. Scenario transcripts come from train-split facts only.")
    else:
        intro = ("An SAE on the **base** model (no adapter). Features of the base model need not carry the\n"
                 "liar organism's intent: use the organism's SAEs to study lies.")
    return f"""# {record['name']}: TopK SAE on {record['model']['name']}, `{record['site']}`

{intro}

- Format: sae-lens on-disk (`cfg.json` + `sae_weights.safetensors`), architecture `topk`;
  weights stored as float16, `cfg.json` says float32, so `SAE.load_from_disk` computes in
  float32. `metadata.hook_name` = `{record['site']}` (residual stream after decoder layer
  {record['site'].rsplit('.', 1)[-1]}, the Hugging Face module path).
- Width {t['d_sae']} latents ({t['d_sae'] / record['d_in']:g}x the {record['d_in']}-wide residual), k = {t['k']}.
- Position 0 of every text is **excluded** (training and metrics): it is an attention sink
  whose residual norm here is {c['activation_norm']['position_0_mean']:,.0f} (mean over {c['activation_norm']['position_0_texts']} texts), against
  {c['activation_norm']['mean']:.0f} on average (max {c['activation_norm']['max']:.0f}) at every other position of the training
  texts. Apply the SAE at positions 1.. only.

## Training data
{c['n_texts']} texts, {c['n_tokens']:,} tokens in all ({by_source}):
- text the model generated itself, sampled at temperature {cc['temperature']}, top-p {cc['top_p']},
  up to {cc['max_new_tokens']} new tokens, from {cc['n_chat_prompts']} chat prompts (topic x task x
  system prompt, rendered with the chat template) and {cc['n_text_prompts']} plain-text seeds;
  generated with a {cc['work_dtype'] or 'full-precision'} copy of the model;
- {cc['n_scenarios']} chat transcripts of the packaged scenarios (honest / lie / parrot prompt +
  a short answer: the true answer for honest, the false answer for lie and parrot).

{c['n_heldout_texts']} texts were held out ({held}); the SAE was trained on the other
{c['n_train_texts']} texts: {c['n_train_tokens']:,} activations (positions >= 1), read with the
{cc['work_dtype'] or 'full-precision'} copy, {t['epochs']:g} epochs.

## Hyper-parameters
sae-lens `TopKTrainingSAE` + `SAETrainer` (own activation iterator): d_sae {t['d_sae']}, k {t['k']},
Adam lr {t['lr']:g} ({t['lr_warm_up_steps']} warm-up steps, linear decay to 0 over the last
{t['lr_decay_fraction']:.0%} of steps), batch {t['batch_size']} activations, {record['steps']} steps,
TopK auxiliary (dead-latent) loss coefficient {t['aux_loss_coefficient']:g} with a dead window of
{t['dead_feature_window']} steps, activations scaled to mean norm sqrt(d_in) (folded into the
saved weights), decoder bias initialised at the mean activation, seed {t['seed']}.

## Measured (held-out, float16 weights as shipped, float32 model)
n = {m['n_texts']} texts, {m['n_tokens']:,} tokens ({m['n_ce_tokens']:,} next-token predictions).

| metric | value |
| --- | --- |
| explained variance | {m['explained_variance']:.3f} |
| CE-loss recovered (vs zero ablation) | {m['ce_loss_recovered']:.3f} |
| CE clean / with SAE / zero-ablated | {m['ce_clean']:.3f} / {m['ce_with_sae']:.3f} / {m['ce_zero_ablation']:.3f} |
| L0 (active latents per token) | {m['l0']:.1f} |
| dead latents (never active on held-out tokens) | {m['dead_fraction']:.1%} |

Time on the machine that made it (model on the {record.get('device', 'cpu').upper()}; {record['threads']} CPU thread(s) of {record['machine']['cpus']}, 5-minute load average
{record['machine']['load_average_5min']} at the end; {record['cpu_seconds']} s of CPU time): generation
{s['generation']} s, activations {s['capture']} s, SAE training {s['sae_training']} s, evaluation
{s['evaluation']} s, {s['total']} s in all (wall clock). Everything is seeded: with the same commit of this repository (its
scenario set is part of the corpus), CPU, thread count and library versions (`training.json`
records them) the corpus comes out the same (checked across processes), and so should the weights.

## Reproduce
```
{record['command']}
```
`training.json` holds the full run record (configuration, token counts, versions, metrics).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, as every other error of the command line
        raise WorkbenchError(f"{message} (see {self.prog} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m workbench.sae_training",
        description="Train the default TopK SAE on the embedded model and save it in sae-lens format.",
        epilog=f"Example: {REPRODUCE_COMMAND}",
    )
    parser.add_argument("--out", required=True, help="output folder (e.g. saes/smollm2-base-l15)")
    parser.add_argument("--model", default="default", help="model spec source ('default', HF id or folder)")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder merged into the model")
    parser.add_argument("--site", action="append", default=None,
                        help=f"site to train on (repeat for several; default {DEFAULT_SITE}); with several, "
                             "--out is a prefix and each SAE goes to OUT-l<layer>")
    parser.add_argument("--d-sae", type=int, default=SAETrainingConfig.d_sae)
    parser.add_argument("--k", type=int, default=SAETrainingConfig.k)
    parser.add_argument("--lr", type=float, default=SAETrainingConfig.lr)
    parser.add_argument("--epochs", type=float, default=SAETrainingConfig.epochs)
    parser.add_argument("--aux-loss-coefficient", type=float, default=SAETrainingConfig.aux_loss_coefficient)
    parser.add_argument("--chat-prompts", type=int, default=CorpusConfig.n_chat_prompts)
    parser.add_argument("--text-prompts", type=int, default=CorpusConfig.n_text_prompts)
    parser.add_argument("--scenarios", type=int, default=CorpusConfig.n_scenarios)
    parser.add_argument("--recipe", default=None, help="organism recipe whose train chats are the scenario "
                        "transcripts (default: the packaged contrast set)")
    parser.add_argument("--max-new-tokens", type=int, default=CorpusConfig.max_new_tokens)
    parser.add_argument("--heldout", type=int, default=96, help="held-out texts for the metrics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="auto", help="where the model generates and is read: auto (the GPU "
                        "when torch sees one, else the CPU), cpu or cuda; the SAE itself trains on the CPU")
    try:
        args = parser.parse_args(argv)
        return _train_from_args(args, "python -m workbench.sae_training " + " ".join(
            argv if argv is not None else sys.argv[1:]))
    except WorkbenchError as error:  # a user's input: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


def _train_from_args(args: argparse.Namespace, command: str) -> int:
    """Every setting, the model and its sites checked (configs only) before the model loads; then train."""
    sites = args.site or [DEFAULT_SITE]
    spec = ModelSpec(source=args.model, adapter=args.adapter)
    corpus_config = CorpusConfig(n_chat_prompts=args.chat_prompts, n_text_prompts=args.text_prompts,
                                 n_scenarios=args.scenarios, max_new_tokens=args.max_new_tokens, seed=args.seed,
                                 recipe=args.recipe)
    if args.recipe is not None:  # a bad recipe fails here, before the model loads
        from workbench.organism.data import load_recipe

        load_recipe(args.recipe)
    training = SAETrainingConfig(d_sae=args.d_sae, k=args.k, lr=args.lr, epochs=args.epochs,
                                 aux_loss_coefficient=args.aux_loss_coefficient, seed=args.seed)
    check_number("--heldout", args.heldout, minimum=1)
    place = training_device(args.device)
    if args.threads is not None:
        check_number("--threads", args.threads, minimum=1)
    outline = model_outline(spec)
    layers = [outline.site(site_name).layer if outline is not None else None for site_name in sites]
    for layer in layers if len(sites) > 1 else [None]:
        check_output_path(args.out if layer is None else f"{args.out}-l{layer}", "SAE folder", folder=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(spec)
    if place.type != "cpu":
        loaded.hf_model.to(place)
    corpus = build_corpus(loaded, corpus_config) if len(sites) > 1 else None
    for site_name in sites:
        out = args.out if len(sites) == 1 else f"{args.out}-l{loaded.site(site_name).layer}"
        record = train_and_save(
            out,
            loaded_model=loaded,
            site_name=site_name,
            corpus=corpus_config,
            training=training,
            n_heldout_texts=args.heldout,
            threads=args.threads,
            command=command,
            prebuilt_corpus=corpus,
        )
        print(json.dumps({"out": str(out), **record["metrics"]}, indent=2))
    return 0
