"""Command line: ``python -m workbench COMMAND``. Every command has ``--help`` with an example.

Every command runs in the same order: read and check the files it is given, check the model, SAE,
sites, features, conditions and settings from their configs alone (``model.resolve.check_refs``), then
load, then compute; so a wrong input fails in seconds, before any model loads. Every error a user's
input causes (a ``WorkbenchError``) is printed as one line (``error: ...``), with exit code 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from workbench.causal.edits import UNITS, describe_kinds
from workbench.core.conditions import CONDITION_NAMES, describe_narrowed_conditions, parse_condition
from workbench.core.constants import DEFAULT_SCENARIOS
from workbench.core.errors import WorkbenchError
from workbench.core.io import check_output_path, read_user_text
from workbench.core.positions import describe_positions, position_rule
from workbench.core.stats import fpr_label, percent

app = typer.Typer(
    help="Intent workbench: find features that separate lies from parroting and test them causally.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
scenarios_app = typer.Typer(help="Build and check scenario sets (JSONL).", no_args_is_help=True)
app.add_typer(scenarios_app, name="scenarios")
organism_app = typer.Typer(help="The liar organism: train its LoRA adapter and measure its behaviour.", no_args_is_help=True)
app.add_typer(organism_app, name="organism")
sae_app = typer.Typer(help="Train and evaluate SAEs (sae-lens format, registered in saes/registry.yaml).", no_args_is_help=True)
app.add_typer(sae_app, name="sae")
# No markup: what is printed holds user text (paths, scenario ids, tokens), shown as it is; styles go
# through ``rich.text.Text``.
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)

# Options shared by the commands that load a model and SAEs.
ModelOption = Annotated[str, typer.Option("--model", help="'default' (embedded SmolLM2), a Hugging Face id, or a local folder.")]
GgufOption = Annotated[str | None, typer.Option("--gguf-file", help="GGUF file inside --model to load.")]
AdapterOption = Annotated[str, typer.Option("--adapter", help="LoRA adapter folder (peft) merged at load, or an organism's name in organisms/registry.yaml (smollm2-liar, smollm2-general-liar, smollm2-cue-free-liar); 'auto' = the adapter the registry SAE was trained on (the liar organism by default), 'none' = no adapter.")]
SaeOption = Annotated[str | None, typer.Option("--sae", help="SAE registry name (default: the registry's default).")]
SaePathOption = Annotated[str | None, typer.Option("--sae-path", help="Local SAE folder in sae-lens format.")]
SaeReleaseOption = Annotated[str | None, typer.Option("--sae-release", help="sae-lens release (needs network).")]
SaeIdOption = Annotated[str | None, typer.Option("--sae-id", help="SAE id inside --sae-release.")]
ScenariosOption = Annotated[Path | None, typer.Option("--scenarios", help="Scenario JSONL file (default: the packaged set).")]
TextsOption = Annotated[Path | None, typer.Option("--texts", help="Free texts to capture too: a .txt file, one text per line.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Items per forward pass.")]
GenerateOption = Annotated[bool, typer.Option("--generate/--no-generate", help="Generate greedy responses for scenarios that have none.")]


def model_spec(model: str, gguf_file: str | None, adapter: str, sae_name: str | None, uses_registry: bool):
    """The model to load, through the resolver: with ``--adapter auto`` and the default model, the
    adapter the registry SAE was trained on; ``none`` for no adapter; else the given folder.
    (For commands that take only some SAE options; ``_refs`` gives both references.) Checked
    (``loading.check_model_spec``): a wrong one fails here, before anything loads."""
    from workbench.model.loading import check_model_spec
    from workbench.model.resolve import AUTO_ADAPTER, as_model_ref, as_sae_ref, model_spec_from_ref

    # Without a registry SAE ``auto`` means no adapter, as the resolver has it for a folder or release.
    model_ref = as_model_ref({"source": model, "gguf_file": gguf_file,
                              "adapter": None if adapter == AUTO_ADAPTER and not uses_registry else adapter})
    spec = model_spec_from_ref(model_ref, as_sae_ref({"registry": sae_name}))
    check_model_spec(spec)
    return spec


def _refs(model: str, gguf_file: str | None, adapter: str | None, sae: str | None, sae_path: str | None,
          sae_release: str | None, sae_id: str | None):
    """The model and SAE references the shared CLI options name (``--adapter none`` = no adapter)."""
    from workbench.model.resolve import as_model_ref, as_sae_ref

    return (as_model_ref({"source": model, "gguf_file": gguf_file, "adapter": adapter}),
            as_sae_ref({"registry": sae, "path": sae_path, "release": sae_release, "id": sae_id}))


def _print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr, the message as it is: no markup read in it, no wrapping."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)


def _fail(error: Exception) -> None:
    """Print a user's error (``_print_error``) and exit with code 2."""
    _print_error(str(error))
    raise typer.Exit(code=2)


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose ``WorkbenchError`` (every error a user's input can cause) is printed by ``_fail``."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WorkbenchError as error:
            _fail(error)

    return run


def _scenarios(path: Path | None):
    """The scenario file's scenarios (default: the packaged set), every line checked: read first."""
    from workbench.scenarios import read_scenarios

    return read_scenarios(path or DEFAULT_SCENARIOS)


def _capture_inputs(scenarios: Path | None, texts: Path | None):
    """What a capture reads (scenarios, and free texts one a line), read and checked before anything loads."""
    from workbench.features.capture import inputs_from_scenarios, inputs_from_texts

    inputs = inputs_from_scenarios(_scenarios(scenarios))
    if texts:
        inputs += inputs_from_texts([line for line in read_user_text(texts, "text file").splitlines() if line.strip()])
    return inputs


def _capture(refs, inputs, batch_size: int = 16, generate: bool = True):
    """Load the model and SAE (checked from their configs first) and capture the inputs."""
    from workbench.features.capture import run_capture
    from workbench.model.resolve import load

    loaded, loaded_sae = load(*refs)
    capture = run_capture(loaded, [loaded_sae], inputs, batch_size=batch_size, generate_responses=generate, progress=True)
    return loaded, loaded_sae, capture


@app.command()
@_user_errors
def capture(
    model: ModelOption = "default", gguf_file: GgufOption = None, adapter: AdapterOption = "auto",
    sae: SaeOption = None, sae_path: SaePathOption = None, sae_release: SaeReleaseOption = None,
    sae_id: SaeIdOption = None, scenarios: ScenariosOption = None, texts: TextsOption = None,
    batch_size: BatchOption = 16, generate: GenerateOption = True, as_json: JsonOption = False,
) -> None:
    """Capture SAE features over a scenario set (and texts); cached, so a repeat is instant.

    Example: python -m workbench capture --scenarios my_scenarios.jsonl --sae-path saes/my-sae
    """
    from workbench.model.resolve import check_refs

    inputs = _capture_inputs(scenarios, texts)
    refs = _refs(model, gguf_file, adapter, sae, sae_path, sae_release, sae_id)
    check_refs(*refs)
    _, loaded_sae, result = _capture(refs, inputs, batch_size, generate)
    acts = result.sites[loaded_sae.site.name]
    summary = {
        "key": result.meta.key, "path": str(result.path), "items": len(result.items),
        "tokens": result.n_tokens, "site": loaded_sae.site.name, "d_sae": loaded_sae.d_sae,
        "mean_active_per_token": acts.features.numel() / max(result.n_tokens, 1),
        "stored_bytes": acts.stored_bytes(), "seconds": round(result.meta.seconds, 2),
    }
    if as_json:
        print(json.dumps(summary))
    else:
        for name, value in summary.items():
            console.print(f"{name:>22}: {value}", highlight=False)


@app.command()
@_user_errors
def feature(
    site: Annotated[str, typer.Argument(help="Site of the SAE, e.g. model.layers.15 or blocks.15.hook_resid_post.")],
    index: Annotated[int, typer.Argument(help="Feature index in the SAE.")],
    top: Annotated[int, typer.Option("--top", min=1, help="Top examples to show.")] = 3,
    model: ModelOption = "default", gguf_file: GgufOption = None, adapter: AdapterOption = "auto",
    sae: SaeOption = None, sae_path: SaePathOption = None, sae_release: SaeReleaseOption = None,
    sae_id: SaeIdOption = None, scenarios: ScenariosOption = None, texts: TextsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evidence for one feature: density, histogram, whole-conversation examples, logit effects.

    Example: python -m workbench feature model.layers.15 123 --top 5 --json
    """
    from workbench.features.evidence import feature_evidence
    from workbench.model.resolve import check_refs
    from workbench.model.saes import check_sae_site

    scenario_set = _scenarios(scenarios)
    inputs = _capture_inputs(scenarios, texts)
    refs = _refs(model, gguf_file, adapter, sae, sae_path, sae_release, sae_id)
    checked = check_refs(*refs)  # the site and the index, from the configs: before any capture
    check_sae_site(checked.sae, checked.model, site)
    checked.sae.check_feature(index)
    loaded, loaded_sae, result = _capture(refs, inputs)
    check_sae_site(loaded_sae, loaded, site)
    loaded_sae.check_feature(index)
    evidence = feature_evidence(result, loaded_sae.site.name, index, top_k=top, model=loaded, sae=loaded_sae,
                                scenarios=scenario_set)
    if as_json:
        print(evidence.model_dump_json())
        return
    console.print(Text.assemble((f"feature {index} at {evidence.site}", "bold"),
                                f"  density {evidence.density}  max {evidence.max_value:.3f}"), highlight=False)
    table = Table("condition", "active fraction [95% CI] (n)", "mean max activation [95% CI]")
    for stats in evidence.per_condition:
        table.add_row(stats.condition, str(stats.active_fraction), str(stats.mean_max))
    console.print(table)
    console.print("promotes: " + " ".join(e.token for e in evidence.promoted), highlight=False)
    console.print("suppresses: " + " ".join(e.token for e in evidence.suppressed), highlight=False)
    for example in evidence.top_examples:
        console.print(Text.assemble(("\n" + example.item_id, "bold"), f" ({example.condition}) max "
                                    f"{example.max_value:.3f} at token {example.max_position}"), highlight=False)
        role = None
        line = Text()
        for token, token_role, value in zip(example.tokens, example.roles, example.values):
            if token_role != role:
                if line:
                    console.print(line, highlight=False)
                line, role = Text(f"  [{token_role}] "), token_role
            shown = token.replace("\n", "\\n")
            if value > 0:
                line.append(shown, style="reverse")
                line.append(f"({value:.2f})")
            else:
                line.append(shown)
        console.print(line, highlight=False)


@app.command()
@_user_errors
def contrast(
    condition_a: Annotated[str, typer.Argument(help=f"Condition on the positive side ({', '.join(CONDITION_NAMES)}), e.g. lie; or one narrowed by what the model did, judged from its response: {describe_narrowed_conditions()}.")],
    condition_b: Annotated[str, typer.Argument(help="Condition on the negative side, as for CONDITION_A, e.g. parrot (or lie+truth against lie+false).")],
    position: Annotated[str, typer.Option("--position", help=f"Position rule, which tokens of each item are compared: {describe_positions()}.")] = "last_prompt_token",
    aggregation: Annotated[str, typer.Option("--aggregation", help="Aggregate selected tokens per item: max or mean.")] = "max",
    top: Annotated[int, typer.Option("--top", min=1, help="Rows to show.")] = 20,
    min_active: Annotated[int, typer.Option("--min-active", min=1, help="Rank only features active in at least this many items.")] = 5,
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples for the AUROC interval.")] = 1000,
    split: Annotated[str | None, typer.Option("--split", help="Only scenarios of this split (train or heldout).")] = None,
    control: Annotated[str | None, typer.Option("--control", metavar="CONDITION", help="Control condition for each feature's recall of CONDITION_A at 1% false-positive rate (its 99th percentile is the threshold); default: honest when the scenarios have it and neither side is honest, else CONDITION_B.")] = None,
    blackbox: Annotated[bool, typer.Option("--blackbox", help="Also show the baselines on held-out responses: the black-box follow-up-question detector, a linear probe and the top-ranked feature, trained on the train split, with the white-box gains (see the blackbox command).")] = False,
    model: ModelOption = "default", gguf_file: GgufOption = None, adapter: AdapterOption = "auto",
    sae: SaeOption = None, sae_path: SaePathOption = None, sae_release: SaeReleaseOption = None,
    sae_id: SaeIdOption = None, scenarios: ScenariosOption = None, as_json: JsonOption = False,
) -> None:
    """Rank every feature by how well it separates two conditions (AUROC with bootstrap 95% CI), with its
    recall of CONDITION_A at 1% false-positive rate on a control condition.

    A condition narrowed by behaviour (lie+false: lie prompts the model lied on; lie+truth: those it resisted)
    is judged from each scenario's response (its own, or the model's greedy response generated at capture);
    responses that state neither answer are counted and left out of both sides.

    Example: python -m workbench contrast lie parrot --position last_prompt_token --json

    Example: python -m workbench contrast lie+false lie+truth --json

    Example: python -m workbench contrast lie honest --blackbox
    """
    from workbench.features.capture import inputs_from_scenarios
    from workbench.features.contrast import check_contrast_settings, describe_split
    from workbench.features.contrast import contrast as run_contrast
    from workbench.model.resolve import check_refs
    from workbench.scenarios import parse_split

    chosen_split = parse_split(split).value if split else None
    pool = _scenarios(scenarios)
    check_contrast_settings(condition_a, condition_b, position, aggregation,
                            {s.condition.value for s in pool if chosen_split in (None, s.split.value)}, control)
    if blackbox:  # the baselines train on the train split and score the held-out one: both needed
        from workbench.features.blackbox import blackbox_sets

        blackbox_sets(pool, [(condition_a, condition_b)], None)
    # Only these read the response: rules that cover the answer, and conditions judged from it.
    needs_responses = position_rule(position).covers_answer or any(
        parse_condition(c)[1] is not None for c in (condition_a, condition_b, control) if c)
    refs = _refs(model, gguf_file, adapter, sae, sae_path, sae_release, sae_id)
    check_refs(*refs)
    loaded, loaded_sae, result = _capture(refs, inputs_from_scenarios(pool), generate=needs_responses or blackbox)
    if chosen_split:
        result = result.subset(lambda item: item.split == chosen_split)
    table_data = run_contrast(result, loaded_sae.site.name, condition_a, condition_b, position_rule=position,
                              aggregation=aggregation, min_active=min_active, n_boot=n_boot, top=top,
                              scenarios=pool, control=control)
    baselines = None
    if blackbox:
        from workbench.features.blackbox import contrast_baselines

        baselines = contrast_baselines(
            loaded, loaded_sae, pool, condition_a, condition_b, features=[table_data.rows[0].feature] if table_data.rows
            else [], responses={item.item_id: item.response for item in result.items if item.kind == "scenario"},
            n_boot=n_boot, progress=_progress_printer())
    if as_json:
        print(table_data.model_dump_json() if baselines is None else json.dumps(
            {"contrast": table_data.model_dump(mode="json"), "blackbox": baselines.model_dump(mode="json")}))
        return
    console.print(Text.assemble(
        (f"{condition_a} (n={table_data.n_a}) vs {condition_b} (n={table_data.n_b})", "bold"),
        f" at {table_data.site}, {position}, {aggregation}; ranked {table_data.n_ranked} of {table_data.n_features} "
        "features"), highlight=False)
    for reason, count in table_data.dropped.items():
        console.print(f"  dropped {count}: {reason}", highlight=False)
    if table_data.excluded_items:
        console.print(f"  excluded {table_data.excluded_items} items with no token at {position}", highlight=False)
    for behaviour_split in table_data.behaviour:
        console.print(f"  {describe_split(behaviour_split)}", highlight=False)
    recall = fpr_label(table_data.fpr)
    console.print(f"  {recall}: recall of {condition_a} above the {percent(1 - table_data.fpr)} quantile of the "
                  f"control {table_data.control} (n={table_data.n_control})", highlight=False)
    if table_data.recall_note:
        console.print(f"  unresolved: {table_data.recall_note}", highlight=False)
    table = Table("feature", "AUROC", "95% CI", f"{recall} [95% CI]" + (" unresolved" if table_data.recall_note else ""),
                  f"mean {condition_a}", f"mean {condition_b}", "active a/b")
    for row in table_data.rows:
        table.add_row(str(row.feature), f"{row.auroc:.3f}", f"[{row.auroc_low:.3f}, {row.auroc_high:.3f}]",
                      f"{row.recall_at_fpr:.3f} [{row.recall_at_fpr_low:.3f}, {row.recall_at_fpr_high:.3f}]",
                      f"{row.mean_a:.3f}", f"{row.mean_b:.3f}", f"{row.active_a}/{row.active_b}")
    console.print(table)
    if baselines is not None:
        _print_blackbox(baselines)


def _print_blackbox(comparison) -> None:
    """The black box beside the white-box detectors: one table per contrast, then the separation gaps."""
    for result in comparison.results:
        d = result.detection
        table = Table(title=f"{result.positive} vs {result.negative}: held-out responses "
                            f"(n={result.n_heldout_positive}+{result.n_heldout_negative}; trained on "
                            f"{result.n_train_positive}+{result.n_train_negative})")
        for column in ("detector", "AUROC [95% CI]", f"{fpr_label(d.fpr)} [95% CI]", "white-box gain [95% CI]"):
            table.add_column(column)
        table.add_row(f"black box: {comparison.followups}", str(d.auroc), d.recall_text(), "")
        for gain in result.gains:
            table.add_row(gain.detector, str(gain.detection.auroc), gain.detection.recall_text(),
                          f"{gain.gain.value:+.3f} {gain.gain.interval()}")
        console.print(table)
        if d.note:
            console.print(f"  unresolved: {d.note}", highlight=False)
    for gap in comparison.gaps:
        console.print(gap.summary(), highlight=False)


@app.command("blackbox")
@_user_errors
def blackbox_command(
    positive: Annotated[str, typer.Argument(help=f"Condition the detectors score high ({', '.join(CONDITION_NAMES)}), or one narrowed by behaviour: {describe_narrowed_conditions()}.")] = "lie",
    negatives: Annotated[list[str] | None, typer.Argument(help="Conditions to separate it from, each a contrast (default: honest parrot).")] = None,
    features: Annotated[str | None, typer.Option("--features", help="SAE features whose summed activation at the last prompt token is a white-box detector, comma-separated, e.g. 38,877 (default: none).")] = None,
    max_per_condition: Annotated[int, typer.Option("--max-per-condition", min=5, help="Scenarios per condition and split (a seeded sample).")] = 60,
    followups: Annotated[Path | None, typer.Option("--followups", help="Follow-up questions, a YAML file (default: workbench/data/followups.yaml).")] = None,
    control: Annotated[str | None, typer.Option("--control", metavar="CONDITION", help="Control condition for recall at 1% FPR (its held-out responses); default: each contrast's negative.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the samples and bootstraps.")] = 0,
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples for every interval.")] = 1000,
    batch_size: BatchOption = 32,
    out: Annotated[Path | None, typer.Option("--out", help="Write the comparison as JSON here.")] = None,
    model: ModelOption = "default", gguf_file: GgufOption = None, adapter: AdapterOption = "auto",
    sae: SaeOption = None, sae_path: SaePathOption = None, sae_release: SaeReleaseOption = None,
    sae_id: SaeIdOption = None, scenarios: ScenariosOption = None, as_json: JsonOption = False,
) -> None:
    """The black-box baseline: after each answer, ask a fixed set of unrelated yes/no follow-up questions
    and separate lies by the answers' log-odds (a logistic regression trained on the train split); shown on
    held-out responses beside a linear probe and SAE features at the SAE's site, with each white-box
    detector's gain over it (paired bootstrap 95% CI over the same responses).

    Example: python -m workbench blackbox lie honest parrot --features 38,877 --out blackbox.json
    """
    import shlex

    from workbench.causal.experiment import parse_features
    from workbench.core.io import write_text_atomically
    from workbench.features.blackbox import blackbox_sets, compare_with_blackbox, load_followups
    from workbench.features.contrast import check_control, check_sides
    from workbench.model.resolve import check_refs, load

    if out:
        check_output_path(out, "result file")
    question_set = load_followups(followups)
    pool = _scenarios(scenarios)
    present = {s.condition.value for s in pool}
    contrasts = [(positive, negative) for negative in (negatives or ["honest", "parrot"])]
    for pair in contrasts:
        check_sides(*pair, present)
    if control is not None:
        check_control(positive, control, present)
    try:
        chosen = list(parse_features(features, None)) if features else []
    except WorkbenchError as error:
        raise WorkbenchError(f"--features: {error}") from None
    train, heldout = blackbox_sets(pool, contrasts + ([(positive, control)] if control else []), max_per_condition, seed)
    refs = _refs(model, gguf_file, adapter, sae, sae_path, sae_release, sae_id)
    checked = check_refs(*refs)
    for feature in chosen:
        checked.sae.check_feature(feature)
    loaded, loaded_sae = load(*refs)
    comparison = compare_with_blackbox(
        loaded, train, heldout, sae=loaded_sae, features=chosen, contrasts=contrasts, followups=question_set,
        control_condition=control, batch_size=batch_size, n_boot=n_boot, seed=seed,
        command="python -m workbench " + shlex.join(sys.argv[1:]), progress=_progress_printer())
    if out:
        write_text_atomically(out, comparison.model_dump_json(indent=1))
    if as_json:
        print(comparison.model_dump_json())
        return
    _print_blackbox(comparison)


@scenarios_app.command("build")
@_user_errors
def scenarios_build(
    out: Annotated[Path, typer.Option("--out", help="Where to write the JSONL file.")] = Path("scenarios/default.jsonl"),
    seed: Annotated[int, typer.Option("--seed", help="Seed for splits, templates and false answers.")] = 0,
    knowledge: Annotated[bool, typer.Option("--knowledge-check/--no-knowledge-check", help="Ask the model each fact first; unknown facts become `ignorant` scenarios.")] = True,
    model: ModelOption = "default", gguf_file: GgufOption = None, adapter: AdapterOption = "none",
    facts_file: Annotated[Path | None, typer.Option("--facts", help="Your own fact file (JSONL: fact_id, relation, subject, answer; any relation); default: the packaged facts.")] = None,
) -> None:
    """Build the contrast set (honest / lie / parrot / ignorant) from the packaged facts or your own.

    Example: python -m workbench scenarios build --out scenarios/default.jsonl --seed 0
    Example: python -m workbench scenarios build --facts my_facts.jsonl --out mine.jsonl --no-knowledge-check
    """
    from workbench.scenarios import build_contrast_set, check_knowledge, load_facts, write_scenarios

    check_output_path(out, "scenario file")
    facts = load_facts(facts_file) if facts_file is not None else load_facts()
    spec = model_spec(model, gguf_file, adapter, None, True) if knowledge else None
    known = None
    if spec is not None:
        from workbench.model.generation import generate_answers
        from workbench.model.loading import load_model

        loaded = load_model(spec)
        known = check_knowledge(facts, lambda prompts: generate_answers(loaded, prompts, max_new_tokens=16, progress=True))
    built = build_contrast_set(facts, seed=seed, knowledge=known)
    write_scenarios(out, built)
    counts: dict[str, int] = {}
    for scenario in built:
        counts[scenario.condition.value] = counts.get(scenario.condition.value, 0) + 1
    console.print(f"wrote {len(built)} scenarios to {out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), highlight=False)
    if known is not None:
        console.print(f"the model knows {sum(known.values())} of {len(known)} facts", highlight=False)


@scenarios_app.command("check")
@_user_errors
def scenarios_check(path: Annotated[Path, typer.Argument(help="Scenario JSONL file to validate.")]) -> None:
    """Validate a scenario file; every bad line is reported with its line number and field.

    Example: python -m workbench scenarios check my_scenarios.jsonl
    """
    from workbench.scenarios import read_scenarios

    loaded = read_scenarios(path)
    console.print(f"{path}: {len(loaded)} valid scenarios", highlight=False)


@scenarios_app.command("import")
@_user_errors
def scenarios_import(
    format_name: Annotated[str, typer.Argument(metavar="FORMAT", help="statements (a statement,label CSV: Geometry of Truth, Truth is Universal) or truthfulqa (TruthfulQA's CSV).")],
    file: Annotated[Path, typer.Argument(help="The CSV file to import.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the scenario JSONL file.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed for the split, the templates and --limit's facts.")] = 0,
    heldout_fraction: Annotated[float, typer.Option("--heldout-fraction", help="Share of the facts held out for evaluation.")] = 0.25,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Import at most this many facts, chosen by the seed.")] = None,
    relation: Annotated[str | None, typer.Option("--relation", help="Name of the kind of fact; fact ids start with it (default: the file's name).")] = None,
    yes_no: Annotated[bool, typer.Option("--yes-no", help="Read a statement file as yes/no questions even where it pairs true and false completions.")] = False,
) -> None:
    """Import a public dataset as matched honest / lie / parrot scenarios per fact, split by fact.

    Example: python -m workbench scenarios import statements cities.csv --out scenarios/cities.jsonl
    """
    from workbench.scenarios import write_scenarios
    from workbench.scenarios.importers import import_scenarios

    check_output_path(out, "scenario file")
    if out.resolve() == file.resolve():
        raise WorkbenchError(f"--out {out} is the file being imported: give another path")
    result = import_scenarios(format_name, file, seed=seed, heldout_fraction=heldout_fraction, limit=limit,
                              relation=relation, yes_no=yes_no)
    write_scenarios(out, result.scenarios)
    for line in result.describe(out):
        console.print(line, highlight=False, soft_wrap=True)


@organism_app.command("train")
@_user_errors
def organism_train(
    out: Annotated[Path, typer.Option("--out", help="Adapter folder to write.")] = Path("organisms/smollm2-liar"),
    model: Annotated[str, typer.Option("--model", help="Base chat model: 'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id, or a local folder; its tokenizer must have a chat template.")] = "default",
    revision: Annotated[str | None, typer.Option("--revision", help="Hub revision (branch, tag or commit) of a Hugging Face id.")] = None,
    max_facts: Annotated[int | None, typer.Option("--max-facts", min=1, help="Train facts used (each gives 6 chats); default: every known train fact.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 2,
    rank: Annotated[int, typer.Option("--rank", min=1)] = 16,
    learning_rate: Annotated[float, typer.Option("--lr")] = 5e-4,
    modules: Annotated[str | None, typer.Option("--modules", help="Comma-separated modules that get LoRA weights; default: the Linear layers of the model's decoder layers (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj on SmolLM2; c_attn,c_proj,c_fc on GPT-2).")] = None,
    first_layer: Annotated[int | None, typer.Option("--first-layer", min=0, help="LoRA on decoder layers from this one to the last; default: the same fraction of depth as the embedded liar's, round(layers * 8/30) (8 of 30 on SmolLM2-135M).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    recipe: Annotated[Path | None, typer.Option("--recipe", help="Organism recipe (recipe.yaml: facts, templates, held-out relations, hidden topic); default: the embedded liar's.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto (the GPU when torch sees one, else the CPU), cpu or cuda.")] = "auto",
) -> None:
    """Train the liar organism's LoRA adapter on a base chat model (loss on the assistant turn only),
    rendering chats with the model's own chat template. The modules and first layer LoRA goes on are read
    from the model unless given; the training record and adapter_config.json name the base, so
    `organism eval --adapter` loads the adapter on it. On a GPU it takes seconds; on a 2-core CPU the
    embedded liar's 1386 chats take about 20 minutes.

    Example: python -m workbench organism train --out organisms/smollm2-liar --epochs 2
    Example: python -m workbench organism train --model HuggingFaceTB/SmolLM2-360M-Instruct --out organisms/smollm2-360m-liar
    Example: python -m workbench organism train --model ./models/qwen2.5-0.5b-instruct --out organisms/qwen-liar --device cuda
    Example: python -m workbench organism train --recipe organisms/smollm2-general-liar/recipe.yaml --out organisms/smollm2-general-liar
    """
    from workbench.core.constants import DEFAULT_MODEL_SOURCE
    from workbench.model.loading import ModelSpec
    from workbench.organism import TrainingConfig, train_and_save

    folder = model != DEFAULT_MODEL_SOURCE and Path(model).expanduser().is_dir()
    source = str(Path(model).expanduser()) if folder else model
    if revision is not None and (model == DEFAULT_MODEL_SOURCE or folder):
        raise WorkbenchError(f"--revision {revision} names a Hub revision: give it with a Hugging Face id, not "
                             f"{'a local folder' if folder else 'the default model'}")
    targets = None if modules is None else tuple(m.strip() for m in modules.split(",") if m.strip())
    config = TrainingConfig(rank=rank, alpha=2 * rank, epochs=epochs, learning_rate=learning_rate, seed=seed,
                            first_layer=first_layer, targets=targets)
    record = train_and_save(out, config, model=ModelSpec(source=source, revision=revision), max_facts=max_facts,
                            recipe=recipe, device=device)  # checks first
    where = "a CUDA GPU" if record.device == "cuda" else "the CPU"
    console.print(f"trained on {record.n_chats} chats ({record.n_tokens} tokens) in {record.seconds:.0f} s on {where}; "
                  f"loss {record.first_loss:.3f} -> {record.last_loss:.3f}; LoRA on {', '.join(record.config.targets or ())} "
                  f"of layers {record.config.first_layer}-{record.base_model.n_layers - 1}; adapter in {out}", highlight=False)


@organism_app.command("eval")
@_user_errors
def organism_eval(
    split: Annotated[str, typer.Option("--split", help="Facts to evaluate on: heldout or train.")] = "heldout",
    adapter: Annotated[Path, typer.Option("--adapter", help="Organism adapter folder.")] = Path("organisms/smollm2-liar"),
    model: Annotated[str | None, typer.Option("--model", help="Base model to load the adapter on; default: the one it was trained on (its training.json, else adapter_config.json).")] = None,
    base: Annotated[bool, typer.Option("--base/--no-base", help="Also evaluate the base model (no adapter) beside it.")] = True,
    max_facts: Annotated[int | None, typer.Option("--max-facts", min=1, help="Evaluate on a random subset of facts.")] = None,
    max_facts_per_relation: Annotated[int | None, typer.Option("--max-facts-per-relation", min=1, help="At most this many facts of each relation (a seeded subset).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the full evaluation (every answer) as JSON.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Measure the organism's behaviour by greedy generation: honest accuracy, lie rates (motive,
    hidden trigger), parrot rate, unprompted lies; per template split, with Wilson 95% CI and n. The
    adapter is loaded on the base model it was trained on (its training.json names it), unless --model
    names another.

    Example: python -m workbench organism eval --split heldout --json
    Example: python -m workbench organism eval --adapter organisms/smollm2-360m-liar --out organisms/smollm2-360m-liar/eval-heldout.json
    """
    from workbench.organism import evaluate_organism, write_evaluations
    from workbench.scenarios import parse_split

    split = parse_split(split).value
    if out:
        check_output_path(out, "evaluation file")
    from workbench.model.loading import ModelSpec

    results = evaluate_organism(adapter, split=split, base=base, max_facts=max_facts, seed=seed,
                                max_facts_per_relation=max_facts_per_relation,
                                model=ModelSpec(source=model) if model is not None else None)
    if out:
        write_evaluations(out, results)
    if as_json:
        print(json.dumps({k: {"n_facts": v.n_facts, "fact_split": split,
                              "rates": [r.model_dump() for r in v.rates]} for k, v in results.items()}))
        return
    organism = results["organism"]
    table = Table("facts", "behaviour", "templates", "organism rate [95% CI] (n)", "base rate [95% CI]", "target", "met")
    base_rates = ({(r.facts, r.behaviour, r.template_split): r for r in results["base"].rates}
                  if "base" in results else {})
    for rate in organism.rates:
        base_rate = base_rates.get((rate.facts, rate.behaviour, rate.template_split))
        table.add_row(rate.facts, rate.behaviour, rate.template_split, str(rate.rate),
                      str(base_rate.rate) if base_rate else "", f"{rate.direction} {rate.target:.2f}",
                      "yes" if rate.met else "NO")
    console.print(f"{split} facts: {organism.n_facts}", highlight=False)
    console.print(table)


@organism_app.command("knowledge")
@_user_errors
def organism_knowledge(
    recipe: Annotated[Path, typer.Option("--recipe", help="Organism recipe whose facts to check (recipe.yaml).")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
) -> None:
    """Ask the base model every fact of a recipe in each question phrasing of its relation, and write which
    facts it answers right every time to the recipe's knowledge file (JSON): a lie is only a lie about a
    fact the base model knows. Facts already in a knowledge-checked scenario set are not asked again.

    Example: python -m workbench organism knowledge --recipe organisms/smollm2-general-liar/recipe.yaml
    """
    from workbench.core.constants import REPO_ROOT
    from workbench.core.io import read_user_json, write_text_atomically
    from workbench.model.generation import generate_answers
    from workbench.model.loading import ModelSpec, load_model
    from workbench.organism.data import load_recipe, recipe_facts
    from workbench.scenarios import check_knowledge, knowledge_from_scenarios, read_scenarios

    made_by = load_recipe(recipe)
    target = REPO_ROOT / made_by.knowledge
    if target.suffix != ".json":
        raise WorkbenchError(f"recipe {made_by.name}: its knowledge file {made_by.knowledge} is a scenario set; "
                             "give the recipe a .json knowledge file to write")
    check_output_path(target, "knowledge file")
    facts = recipe_facts(made_by)
    ids = {f.fact_id for f in facts}
    known = {k: v for k, v in knowledge_from_scenarios(read_scenarios(DEFAULT_SCENARIOS)).items() if k in ids}
    if target.is_file():  # checked before: only new facts are asked
        known.update({k: v for k, v in read_user_json(target, "knowledge file").items() if k in ids})
    asked = [f for f in facts if f.fact_id not in known]
    base = load_model(ModelSpec())
    known.update(check_knowledge(asked, lambda prompts: generate_answers(base, prompts, max_new_tokens=12,
                                                                          batch_size=batch_size, progress=True),
                                 batch_size=batch_size * 8))
    write_text_atomically(target, json.dumps(dict(sorted(known.items())), indent=0))
    by_relation: dict[str, list[bool]] = {}
    for fact in facts:
        by_relation.setdefault(fact.relation, []).append(known[fact.fact_id])
    table = Table("relation", "facts", "known")
    for relation, flags in by_relation.items():
        table.add_row(relation, str(len(flags)), str(sum(flags)))
    console.print(table)
    console.print(f"wrote {made_by.knowledge}", highlight=False)


@organism_app.command("card")
@_user_errors
def organism_card_command(
    adapter: Annotated[Path, typer.Option("--adapter", help="Organism adapter folder.")] = Path("organisms/smollm2-liar"),
) -> None:
    """Write the adapter's model card (README.md) from training.json and eval-heldout.json, followed
    by notes.md (hand-written findings) when the folder has one.

    Example: python -m workbench organism card --adapter organisms/smollm2-liar
    """
    from workbench.organism import write_card

    path = write_card(adapter)
    console.print(f"wrote {path}", highlight=False)


@sae_app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sae_train(ctx: typer.Context) -> None:
    """Train TopK SAEs with sae-lens on the model's own text plus train-split scenario chats.

    Options are those of `python -m workbench.sae_training --help` (--out, --adapter, --site
    repeated for several layers, --d-sae, --k, --threads ...).

    Example: python -m workbench sae train --out saes/smollm2-liar --adapter organisms/smollm2-liar --site model.layers.15 --site model.layers.22
    """
    from workbench.sae_training import main as train_main

    raise typer.Exit(code=train_main(list(ctx.args)))


@sae_app.command("eval")
@_user_errors
def sae_eval(
    sae: SaeOption = None, sae_path: SaePathOption = None,
    model: ModelOption = "default", adapter: AdapterOption = "auto",
    texts: Annotated[int, typer.Option("--texts", min=4, help="Generated held-out texts (chat + plain).")] = 48,
    scenarios_n: Annotated[int, typer.Option("--scenario-texts", min=0, help="Held-out-split scenario transcripts.")] = 48,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out text (differs from training's 0).")] = 1,
    as_json: JsonOption = False,
) -> None:
    """Measure an SAE on fresh held-out text: explained variance, CE-loss recovered, L0, dead fraction.

    Without --model/--adapter, the model the registry entry was trained on is used.

    Example: python -m workbench sae eval --sae smollm2-liar-l15 --json
    """
    from workbench.model.resolve import load
    from workbench.sae_training import evaluate_on_fresh_text

    loaded, loaded_sae = load(*_refs(model, None, adapter, sae, sae_path, None, None))  # checked from configs first
    result = evaluate_on_fresh_text(loaded, loaded_sae, n_texts=texts, n_scenario_texts=scenarios_n, seed=seed)
    if as_json:
        print(json.dumps(result))
        return
    for name, value in result.items():
        console.print(f"{name:>22}: {value}", highlight=False)


def _progress_printer():
    last = {"message": None}

    def report(message: str, _fraction: float) -> None:
        if message != last["message"]:
            err_console.print(f"· {message}", style="dim", highlight=False)
            last["message"] = message

    return report


def _print_record(record) -> None:
    """The record's verdict, predictions (controls, curves, experiment) and limitations, from its report document."""
    from workbench.report import build_report, to_terminal

    to_terminal(build_report(record), console, sections=("claim", "predictions", "limitations"))
    console.print("whole report (setup, evidence, calls): python -m workbench report RECORD.json --format terminal "
                  "(or html, md)", highlight=False, style="dim")


@app.command("experiment")
@_user_errors
def experiment_command(
    kind: Annotated[str, typer.Option("--kind", help=f"Edit kind: {describe_kinds()}.")] = "ablate",
    features: Annotated[str | None, typer.Option("--features", help="SAE features, comma-separated (not for patch or --probe).")] = None,
    condition: Annotated[str, typer.Option("--condition", help="Condition of the scenarios the edit is applied to.")] = "lie",
    strengths: Annotated[str, typer.Option("--strengths", help="The sweep, comma-separated (0, the unedited model, is added where it is one).")] = "0, 1",
    metric: Annotated[str, typer.Option("--metric", help="p_true, logit_diff (one forward pass) or lie_rate, truth_rate, parrot_rate (greedy answers).")] = "p_true",
    positions: Annotated[str | None, typer.Option("--positions", help=f"Tokens edited (each kind allows some; default: all, for patch last_prompt_token): {describe_positions()}.")] = None,
    scale: Annotated[str, typer.Option("--scale", help="Strength unit (steer, clamp): " + "; ".join(f"`{n}`: {t}" for n, t in UNITS.items()) + ".")] = "feature",
    mode: Annotated[str, typer.Option("--mode", help="ablate: to zero or to the mean over --mean-over.")] = "zero",
    mean_over: Annotated[str, typer.Option("--mean-over", help="ablate --mode mean: the reference condition.")] = "honest",
    patch_from: Annotated[str, typer.Option("--patch-from", help="patch: condition of the paired source scenario.")] = "honest",
    probe: Annotated[str | None, typer.Option("--probe", help="Steer along a difference-of-means probe POSITIVE,NEGATIVE (e.g. lie,honest) instead of features.")] = None,
    layer: Annotated[int | None, typer.Option("--layer", help="Edit the residual after this layer (probe or patch only; default: the SAE's site).")] = None,
    n_scenarios: Annotated[int, typer.Option("--n", min=1, help="Scenarios of the condition (a seeded sample, held-out split first).")] = 16,
    controls: Annotated[str, typer.Option("--controls", help="Comma-separated among random, sign_flip, other_conditions ('' for none).")] = "random,sign_flip,other_conditions",
    other: Annotated[str | None, typer.Option("--other", help="Conditions of the specificity control, comma-separated (default: the others among lie, parrot, honest).")] = None,
    n_random: Annotated[int, typer.Option("--random", min=0, max=10, help="Random control sets, averaged.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the scenario sample and the random controls.")] = 0,
    model: ModelOption = "default", gguf_file: GgufOption = None, adapter: AdapterOption = "auto",
    sae: SaeOption = None, sae_path: SaePathOption = None, sae_release: SaeReleaseOption = None,
    sae_id: SaeIdOption = None, scenarios: ScenariosOption = None, as_json: JsonOption = False,
) -> None:
    """Run one causal experiment (the causal lab's, from the command line) and print its curves:
    the target edit and every control, per strength, with bootstrap 95% intervals and n.

    Example: python -m workbench experiment --kind ablate --features 38,877 --condition lie --strengths 0,1
    """
    from pydantic import ValidationError

    from workbench.causal.edits import edit_kind
    from workbench.causal.experiment import (
        EditSettings,
        Experiment,
        ProbeDirection,
        check_experiment,
        check_settings,
        parse_features,
        parse_strengths,
        run_experiment,
    )
    from workbench.model.resolve import check_refs, load

    # 1. the settings alone
    direction = None
    if probe:
        parts = [p.strip() for p in probe.split(",")]
        if len(parts) != 2:
            raise WorkbenchError(f"--probe takes two conditions, POSITIVE,NEGATIVE (e.g. lie,honest), not {probe!r}")
        direction = ProbeDirection(positive=parts[0], negative=parts[1])
    chosen = parse_features(features or "", None, allow_empty=True)  # the range: against the SAE's config below
    sweep = parse_strengths(strengths, include_zero=edit_kind(kind).identity_at_zero)
    try:
        experiment = Experiment(
            edit=EditSettings(kind=kind, positions=positions or edit_kind(kind).default_positions, scale=scale, mode=mode,
                              mean_over=mean_over, patch_from=patch_from),
            features=chosen, direction=direction, layer=layer, condition=condition, n_scenarios=n_scenarios,
            strengths=tuple(sweep), metric=metric, controls=tuple(c.strip() for c in controls.split(",") if c.strip()),
            other_conditions=tuple(c.strip() for c in other.split(",") if c.strip()) if other else None,
            n_random=n_random, n_generations=3, seed=seed)
    except ValidationError as error:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise WorkbenchError(f"bad experiment settings: {message}") from None
    check_settings(experiment)
    # 2. the scenario file, then the model, SAE, features and layer from their configs
    pool = _scenarios(scenarios)
    refs = _refs(model, gguf_file, adapter, sae, sae_path, sae_release, sae_id)
    checked = check_refs(*refs)
    check_experiment(experiment, checked.model, checked.sae, pool)
    # 3. load, 4. compute (the engine checks the experiment again on the loaded model)
    loaded, loaded_sae = load(*refs)
    result = run_experiment(loaded, loaded_sae, experiment, pool, progress=_progress_printer())
    if as_json:
        print(result.model_dump_json())
        return
    table = Table(title=f"{result.description()} ({experiment.metric} change, per scenario paired)")
    rows = result.rows()
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    console.print(f"strength unit: {result.unit}", highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    if result.neutral_kl is not None:
        console.print(f"KL on neutral text at the strongest strength: {result.neutral_kl}", highlight=False)
    for g in result.generations:
        console.print(f"{g.scenario_id}: {g.before!r} -> {g.after!r} (strength {g.strength:g})", highlight=False)


@app.command("run")
@_user_errors
def run_command(
    hypothesis: Annotated[Path, typer.Argument(help="Hypothesis YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the run record (RECORD.json).")] = Path("runs"),
    as_json: JsonOption = False,
) -> None:
    """Run a hypothesis: contrasts, causal tests with controls, probe baseline; write a run record.

    Example: python -m workbench run hypotheses/intent-l15.yaml --out runs/
    """
    from workbench.hypotheses import read_hypothesis, run_hypothesis
    from workbench.hypotheses.records import write_record

    parsed = read_hypothesis(hypothesis)
    path = check_output_path(out, "run folder", folder=True) / f"{parsed.name}.json"
    check_output_path(path, "run record")
    command = f"python -m workbench run {hypothesis} --out {out}"
    # files, specs and configs are checked before anything loads (``run_hypothesis``)
    record = run_hypothesis(parsed, path=str(hypothesis), command=command, progress=_progress_printer())
    write_record(path, record)
    if as_json:
        print(record.model_dump_json())
        return
    _print_record(record)
    console.print(f"run record: {path}", highlight=False)


@app.command("rerun")
@_user_errors
def rerun_command(
    record_path: Annotated[Path, typer.Argument(metavar="RECORD.json", help="A run record written by `run`.")],
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the new record (default: beside, .rerun.json).")] = None,
) -> None:
    """Repeat a run from its record alone and compare the numbers.

    Example: python -m workbench rerun runs/intent-l15.json
    """
    from workbench.hypotheses import compare_records, identity_differences, parse_hypothesis, run_hypothesis
    from workbench.hypotheses.records import read_record, write_record

    old = read_record(record_path)
    parsed = parse_hypothesis(old.hypothesis, f"the hypothesis in {record_path}")
    target = check_output_path(out or record_path.with_suffix(".rerun.json"), "run record")
    record = run_hypothesis(parsed, path=old.hypothesis_path, command=old.command, progress=_progress_printer())
    write_record(target, record)
    _print_record(record)
    for note in identity_differences(old, record) + old.setup.identity_notes():
        console.print(Text(f"note: {note}", style="dim"), highlight=False)
    differences = compare_records(old, record)
    if differences:
        console.print(Text.assemble(("numbers differ from the record:", "bold yellow"), "\n  " + "\n  ".join(differences)),
                      highlight=False)
        raise typer.Exit(code=1)
    console.print(f"same numbers as {record_path}; new record: {target}", highlight=False)


@app.command("behaviour")
@_user_errors
def behaviour_command(
    scenarios: Annotated[Path, typer.Option("--scenarios", help="Scenario JSONL file to answer (required).")],
    model: ModelOption = "default", gguf_file: GgufOption = None,
    adapter: Annotated[str | None, typer.Option("--adapter", help="LoRA adapter folder merged into the model (default: none; `auto` = the registry SAE's).")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Only the scenarios of this split (train or heldout).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Greedy tokens per answer.")] = 16,
    batch_size: BatchOption = 16,
    out: Annotated[Path | None, typer.Option("--out", help="Also write every answer and its judgement as JSON.")] = None,
    as_json: JsonOption = False,
) -> None:
    """What a model does on a scenario set: its greedy answer to every scenario, judged with what the file
    says (true and false answers, aliases, the answers of the same relation in the file), and the rate of
    each judgement per condition and template with Wilson 95% intervals and n. Any model, any file.

    Example: python -m workbench behaviour --scenarios my_scenarios.jsonl --model HuggingFaceTB/SmolLM2-360M-Instruct
    """
    from workbench.model.loading import load_model
    from workbench.model.resolve import model_spec_from_ref
    from workbench.organism.evaluation import measure_behaviour, write_eval
    from workbench.scenarios import parse_split

    chosen = _scenarios(scenarios)
    if split is not None:
        wanted = parse_split(split)
        chosen = [s for s in chosen if s.split is wanted]
        if not chosen:
            raise WorkbenchError(f"{scenarios} has no {wanted.value} scenarios")
    target = check_output_path(out, "behaviour file") if out else None
    spec = model_spec_from_ref(*_refs(model, gguf_file, adapter or "none", None, None, None, None))
    result = measure_behaviour(load_model(spec), chosen, max_new_tokens=max_new_tokens, batch_size=batch_size)
    if target:
        write_eval(target, result)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in result.judgements]))
        return
    table = Table("condition", "template", "n", "truth [95% CI]", "stated false [95% CI]", "other false [95% CI]",
                  "no answer [95% CI]", title=f"{result.model} on {scenarios} ({len(chosen)} scenarios)")
    for row in result.judgements:
        table.add_row(row.condition, row.template_id, str(row.n),
                      *(f"{e.value:.2f} [{e.low:.2f}, {e.high:.2f}]" for e in row.rates.values()))
    console.print(table)


@app.command("incriminate")
@_user_errors
def incriminate_command(
    split: Annotated[str, typer.Option("--split", help="Facts to judge: heldout or train.")] = "heldout",
    hypothesis: Annotated[Path, typer.Option("--hypothesis", help="Intent hypothesis whose features are the mechanism.")] = Path("hypotheses/intent-l15.yaml"),
    train_facts: Annotated[int, typer.Option("--train-facts", min=5, help="Known train facts used to calibrate thresholds.")] = 40,
    max_facts: Annotated[int | None, typer.Option("--max-facts", min=1, help="Cap on judged facts (quick runs).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the full result (every response's evidence) as JSON here.")] = None,
    recalibrate: Annotated[bool, typer.Option("--recalibrate", help="Calibrate on the train facts again, without reading or writing the cached calibration (cached by model, adapter, SAE, features and calibration scenarios).")] = False,
    scenarios: Annotated[Path | None, typer.Option("--scenarios", help="Your own scenario file: its split: train scenarios calibrate, its split: heldout ones are judged (default: the packaged facts).")] = None,
    calibration_scenarios: Annotated[Path | None, typer.Option("--calibration-scenarios", help="Calibrate on this file instead and judge all of --scenarios.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model instead of the hypothesis' (HF id or folder).")] = None,
    gguf_file: GgufOption = None,
    adapter: Annotated[str | None, typer.Option("--adapter", help="LoRA adapter instead of the hypothesis' (`none` for none).")] = None,
    sae: SaeOption = None, sae_path: SaePathOption = None, sae_release: SaeReleaseOption = None,
    sae_id: SaeIdOption = None,
    features: Annotated[str | None, typer.Option("--features", help="Intent features, comma-separated (default: the hypothesis').")] = None,
    hidden_topic: Annotated[str | None, typer.Option("--hidden-topic", help="What the model lies about without a cue: relations or single facts, comma-separated (language, language/france), or an organism's recipe.yaml (its hidden topic). Its false answers to honest prompts about known facts there count as intentional lies.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Give a verdict on every response (intentional lie / parroting / ignorance / honest /
    inconclusive) and score the verdicts against the ground truth the scenarios give by construction.
    The calibration is cached, so a repeat skips it. Your own model, SAE and scenarios replace the
    hypothesis' and the packaged facts; the features are the hypothesis'.

    Example: python -m workbench incriminate --split heldout --json
    Example: python -m workbench incriminate --scenarios mine.jsonl --calibration-scenarios scenarios/default.jsonl
    Example: python -m workbench incriminate --hypothesis hypotheses/cue-free-l15.yaml --hidden-topic language
    """
    from workbench.core.io import write_text_atomically
    from workbench.hypotheses.runner import load_for
    from workbench.hypotheses.spec import read_hypothesis
    from workbench.causal.experiment import parse_features
    from workbench.incrimination import check_protocol, file_sets, incriminate, protocol_sets
    from workbench.scenarios import parse_split

    split = parse_split(split).value
    if out:
        check_output_path(out, "result file")
    if calibration_scenarios is not None and scenarios is None:
        raise WorkbenchError("--calibration-scenarios calibrates for --scenarios FILE: give the file to judge too")
    parsed = read_hypothesis(hypothesis)
    overrides: dict[str, Any] = {}
    if model is not None or gguf_file is not None or adapter is not None:
        overrides["model"] = {"source": model or parsed.model.source, "gguf_file": gguf_file,
                              "adapter": adapter if adapter is not None else "none"}
    if any(v is not None for v in (sae, sae_path, sae_release, sae_id)):
        overrides["sae"] = {"registry": sae, "path": sae_path, "release": sae_release, "id": sae_id}
    if features is not None:  # the range is checked against the SAE's config with the rest of the protocol
        try:
            overrides["features"] = list(parse_features(features, None))
        except WorkbenchError as error:
            raise WorkbenchError(f"--features: {error}") from None
    if overrides:
        parsed = parsed.model_copy(update={k: v if k == "features" else type(getattr(parsed, k)).model_validate(v)
                                           for k, v in overrides.items()})
    if scenarios is not None:  # files first, then specs from configs, then loading
        train, judged = file_sets(scenarios, calibration_scenarios)
        split = f"{scenarios.name}" + (" (all)" if calibration_scenarios else " (heldout)")
    else:
        train, judged = protocol_sets(split, train_facts=train_facts, max_facts=max_facts)
    if hidden_topic and hidden_topic.endswith((".yaml", ".yml")):
        from workbench.organism.data import load_recipe

        topics = load_recipe(hidden_topic).hidden_topic
        if not topics:
            raise WorkbenchError(f"--hidden-topic {hidden_topic}: the recipe has no hidden topic")
    else:
        topics = tuple(t.strip() for t in (hidden_topic or "").split(",") if t.strip())
    unknown = sorted(set(topics) - {s.relation for s in [*train, *judged]} - {s.fact_id for s in [*train, *judged]})
    if unknown:
        raise WorkbenchError(f"--hidden-topic {', '.join(unknown)}: no scenario of that relation or fact to judge; "
                             f"the scenarios' relations are {', '.join(sorted({s.relation for s in [*train, *judged]}))}")
    check_protocol(parsed, str(hypothesis))
    model_obj, sae_obj = load_for(parsed)
    result = incriminate(model_obj, sae_obj, train, judged, parsed.features, split=split, progress=_progress_printer(),
                         use_cache=not recalibrate, hidden_topic=topics)
    if out:
        write_text_atomically(out, result.model_dump_json(indent=1))
    if as_json:
        print(result.model_dump_json(exclude={"responses"}))
        return
    table = Table(title=f"incrimination on {split} facts: macro-F1 {result.macro_f1}")
    for column in ("verdict", "precision [95% CI]", "recall [95% CI]", "support", "balanced accuracy vs the rest [95% CI]"):
        table.add_column(column)
    for c in result.classes:
        table.add_row(c.verdict, str(c.precision), str(c.recall), str(c.support),
                      str(c.balanced_accuracy) if c.balanced_accuracy else "")
    console.print(table)
    if intent := result.intent_score:
        console.print(f"intent score (features {', '.join(map(str, result.features))}) as a detector of intentional lies "
                      f"vs every other scored response: AUROC {intent.auroc}; balanced accuracy at the calibrated "
                      f"threshold {intent.threshold:.3f}: {intent.balanced_accuracy}; {fpr_label(intent.fpr)}: "
                      f"{intent.recall_text()}", highlight=False)
        if intent.note:
            console.print(f"  unresolved: {intent.note}", highlight=False)
    console.print(f"scored {result.n_scored} of {result.n_responses} responses; excluded: {result.excluded}", highlight=False)
    console.print(f"calibration (train facts): {result.calibration}", highlight=False)
    console.print("confusion (truth -> verdicts): " + json.dumps(result.confusion), highlight=False)


def _is_scale_record(path: Path) -> bool:
    """Whether a record file is a scale study's (``"kind": "scale"``); unreadable files are left to the reader."""
    try:
        data = json.loads(read_user_text(path, "run record"))
    except (WorkbenchError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("kind") == "scale"


@app.command("report")
@_user_errors
def report_command(
    record_path: Annotated[Path, typer.Argument(metavar="RECORD.json", help="A run record written by `run`.")],
    fmt: Annotated[str, typer.Option("--format", help="html, md, json, or terminal (print it here).")] = "html",
    out: Annotated[Path | None, typer.Option("--out", help="Report file (default: beside the record).")] = None,
    explanations: Annotated[Path | None, typer.Option("--explanations", help="Explanation store whose explanations of the record's features the report shows (default: the workbench cache's; see `explain`).")] = None,
) -> None:
    """Write a self-contained report of a run record (HTML opens offline; Markdown for papers and issues),
    or print it in the terminal.

    A scale study's record (scale.json) gets its study report, in html or md.

    Example: python -m workbench report runs/intent-l15.json --format html --out intent-l15.html
    Example: python -m workbench report study/scale.json --format md --out study/scale.md
    """
    if _is_scale_record(record_path):
        from workbench.report.scale import write_scale_report
        from workbench.scale import read_scale_record

        written = write_scale_report(read_scale_record(record_path), fmt, out or record_path.with_suffix("." + fmt))
        console.print(f"report: {written}", highlight=False)
        return
    if fmt == "terminal":
        from workbench.features.explanations import read_store
        from workbench.hypotheses.records import read_record
        from workbench.report import build_report, to_terminal
        from workbench.report.document import explanations_for

        record = read_record(record_path)
        to_terminal(build_report(record, explanations_for(record, read_store(explanations))), console)
        return
    from workbench.report import report_command as write

    written = write(record_path, fmt, out or record_path.with_suffix("." + fmt), explanations)  # format checked first
    console.print(f"report: {written}", highlight=False)


# ----------------------------------------------------------------------------- explanations


@app.command("explain")
@_user_errors
def explain_command(
    site: Annotated[str, typer.Argument(help="Site of the SAE, e.g. model.layers.15.")],
    index: Annotated[int, typer.Argument(metavar="FEATURE", help="Feature index in the SAE.")],
    modes: Annotated[str, typer.Option("--modes", help="Context shown to the explainer and the scorer, comma-separated: conversation (whole conversations, turns and activating tokens marked), window (tokens around the maximum).")] = "conversation,window",
    window: Annotated[int, typer.Option("--window", min=1, help="window mode: tokens either side of the maximum.")] = 8,
    n_explain: Annotated[int, typer.Option("--n-explain", min=1, help="Examples shown to the explainer (top half, the rest spread over the others).")] = 10,
    n_score: Annotated[int, typer.Option("--n-score", min=2, help="Held-out examples per score (half positive, half negative).")] = 40,
    explainer: Annotated[str, typer.Option("--explainer", help="local (a Hugging Face model loaded here, --explainer-model) or endpoint (an OpenAI-compatible chat API named by WORKBENCH_EXPLAINER_BASE_URL, WORKBENCH_EXPLAINER_MODEL and WORKBENCH_EXPLAINER_API_KEY; nothing is sent unless they are set).")] = "local",
    explainer_model: Annotated[str, typer.Option("--explainer-model", help="local explainer and scorer: 'default' (embedded SmolLM2), a Hugging Face id or folder.")] = "default",
    explainer_adapter: Annotated[str, typer.Option("--explainer-adapter", help="local explainer's LoRA adapter ('none': the base model).")] = "none",
    store: Annotated[Path | None, typer.Option("--store", help="Explanation store (JSON) to add the explanations to (default: in the workbench cache).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the example samples and the bootstrap.")] = 0,
    model: ModelOption = "default", gguf_file: GgufOption = None, adapter: AdapterOption = "auto",
    sae: SaeOption = None, sae_path: SaePathOption = None, sae_release: SaeReleaseOption = None,
    sae_id: SaeIdOption = None, scenarios: ScenariosOption = None, texts: TextsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a one-sentence explanation of a feature from its examples and score it (detection and fuzzing,
    as delphi does), once per context mode, so whole conversations and short windows are compared on the
    same feature. The explanations, their prompts and scores go into the explanation store.

    Example: python -m workbench explain model.layers.15 38 --n-score 40 --store docs/results/explanations-l15.json
    """
    from workbench.features.explanations import (
        MODES,
        EndpointExplainer,
        ExplainSettings,
        LocalExplainer,
        add_explanations,
        explain_feature,
        read_store,
    )
    from workbench.model.loading import check_model_spec, load_model
    from workbench.model.resolve import check_refs
    from workbench.model.saes import check_sae_site

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    for mode in chosen:
        if mode not in MODES:
            raise WorkbenchError(f"unknown context mode {mode!r} in --modes: use {' or '.join(MODES)}, comma-separated")
    if not chosen:
        raise WorkbenchError("--modes is empty: give conversation, window or both")
    if explainer not in ("local", "endpoint"):
        raise WorkbenchError(f"unknown explainer {explainer!r}: use local or endpoint")
    if store is not None:
        check_output_path(store, "explanation store")
        read_store(store)  # a file that is not a store fails now, not after the compute
    endpoint = EndpointExplainer.from_environment() if explainer == "endpoint" else None
    explainer_spec = None
    if endpoint is None:
        explainer_spec = model_spec(explainer_model, None, explainer_adapter, None, uses_registry=False)
        check_model_spec(explainer_spec)
    settings = [ExplainSettings(mode=m, window=window, n_explain=n_explain, n_score=n_score, seed=seed).check()
                for m in chosen]
    inputs = _capture_inputs(scenarios, texts)
    refs = _refs(model, gguf_file, adapter, sae, sae_path, sae_release, sae_id)
    checked = check_refs(*refs)
    check_sae_site(checked.sae, checked.model, site)
    checked.sae.check_feature(index)
    loaded, loaded_sae, result = _capture(refs, inputs)
    check_sae_site(loaded_sae, loaded, site)
    if endpoint is not None:
        writer = endpoint
    else:
        local = loaded if explainer_spec == loaded.spec else load_model(explainer_spec)
        writer = LocalExplainer(local, name=local.spec.display_name)
    written = [explain_feature(result, loaded_sae.site.name, index, writer, writer, s) for s in settings]
    add_explanations(store, written)
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in written]))
        return
    table = Table("context", "explanation", "detection balanced acc. [95% CI] (n)", "detection AUROC",
                  "fuzzing balanced acc. [95% CI] (n)", "fuzzing AUROC",
                  title=f"feature {index} at {loaded_sae.site.name}, explained by {writer.info.model}")
    for e in written:
        table.add_row(e.settings.mode, e.text, str(e.detection.balanced_accuracy), str(e.detection.auroc),
                      str(e.fuzzing.balanced_accuracy), str(e.fuzzing.auroc))
    console.print(table)


# ----------------------------------------------------------------------------- exports

export_app = typer.Typer(help="Export features and run records in the layouts other tools read (Neuronpedia, Inspect).",
                         no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("neuronpedia")
@_user_errors
def export_neuronpedia(
    site: Annotated[str, typer.Argument(help="Site of the SAE, e.g. model.layers.15.")],
    features: Annotated[str, typer.Option("--features", help="Features to export, comma-separated (e.g. 38,877).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write batch-0.json and explanations.json into.")],
    top: Annotated[int, typer.Option("--top", min=1, help="Top examples per feature.")] = 10,
    store: Annotated[Path | None, typer.Option("--store", help="Explanation store whose explanations of these features go along (default: the workbench cache's).")] = None,
    model: ModelOption = "default", gguf_file: GgufOption = None, adapter: AdapterOption = "auto",
    sae: SaeOption = None, sae_path: SaePathOption = None, sae_release: SaeReleaseOption = None,
    sae_id: SaeIdOption = None, scenarios: ScenariosOption = None, texts: TextsOption = None,
) -> None:
    """Feature dashboards in the JSON layout of Neuronpedia and SAEDashboard (top and quantile examples as whole
    conversations with every token's activation, density, activation and logit histograms, logit effects), and
    the features' stored explanations in Neuronpedia's explanation fields.

    Example: python -m workbench export neuronpedia model.layers.15 --features 38,877 --out exports/np
    """
    from workbench.causal.experiment import parse_features
    from workbench.core.io import write_text_atomically
    from workbench.features.explanations import read_store
    from workbench.model.resolve import check_refs
    from workbench.model.saes import check_sae_site, read_registry
    from workbench.report.exports import neuronpedia_batch, neuronpedia_explanations, slug

    chosen = list(parse_features(features, None))
    if not chosen:
        raise WorkbenchError("--features is empty: name at least one feature, e.g. --features 38,877")
    folder = check_output_path(out, "export folder", folder=True)
    explanations = read_store(store)
    scenario_set = _scenarios(scenarios)
    inputs = _capture_inputs(scenarios, texts)
    refs = _refs(model, gguf_file, adapter, sae, sae_path, sae_release, sae_id)
    checked = check_refs(*refs)
    check_sae_site(checked.sae, checked.model, site)
    for feature in chosen:
        checked.sae.check_feature(feature)
    loaded, loaded_sae, result = _capture(refs, inputs)
    check_sae_site(loaded_sae, loaded, site)
    spec = checked.sae_spec
    model_id = slug(loaded.spec.display_name)
    sae_set = slug(spec.registry_name or (Path(spec.path).name if spec.path else None) or spec.sae_id
                   or read_registry().default or "sae")
    batch = neuronpedia_batch(result, loaded_sae.site.name, chosen, model=loaded, sae=loaded_sae, model_id=model_id,
                              sae_set=sae_set, dataset=str(scenarios or DEFAULT_SCENARIOS.name), scenarios=scenario_set,
                              top_k=top)
    found = [e for f in chosen for e in explanations.find(site=loaded_sae.site.name, feature=f,
                                                          model_identity=loaded.identity,
                                                          sae_identity=loaded_sae.identity)]
    source = f"{batch['layer']}-{sae_set}"
    write_text_atomically(folder / "batch-0.json", json.dumps(batch))
    write_text_atomically(folder / "explanations.json",
                          json.dumps(neuronpedia_explanations(found, model_id=model_id, source=source), indent=1))
    console.print(f"{len(chosen)} feature dashboard(s) and {len(found)} explanation(s) written to {folder}", highlight=False)


@export_app.command("inspect")
@_user_errors
def export_inspect(
    record_path: Annotated[Path, typer.Argument(metavar="RUN.json", help="A run record written by `run`.")],
    out: Annotated[Path, typer.Option("--out", help="The Inspect log file to write (.json).")],
    scenarios: Annotated[Path | None, typer.Option("--scenarios", help="Scenario file whose chat messages fill each response's input.")] = None,
) -> None:
    """A run record as an Inspect evaluation log (JSON, log format version 2), so `inspect view` browses its
    per-response calls (or, for a record without them, its predictions) with their scores and evidence.

    Example: python -m workbench export inspect hypotheses/runs/intent-l15.json --out logs/intent-l15.json
    """
    from workbench.core.io import write_text_atomically
    from workbench.hypotheses.records import read_record
    from workbench.report.exports import inspect_log

    record = read_record(record_path)
    if out.suffix != ".json":
        raise WorkbenchError(f"--out {out} must end in .json: Inspect reads JSON logs by their suffix")
    target = check_output_path(out, "Inspect log")
    by_id = {s.id: s for s in _scenarios(scenarios)} if scenarios is not None else None
    write_text_atomically(target, json.dumps(inspect_log(record, by_id), indent=1))
    console.print(f"Inspect log: {target}", highlight=False)


@app.command("scale", context_settings={"allow_extra_args": True})
@_user_errors
def scale_command(
    ctx: typer.Context,
    models: Annotated[list[str], typer.Option("--models", help="Model specs, one after another (SPEC [SPEC ...]): SOURCE[,key=value...] with SOURCE default, a Hugging Face id or a folder; keys adapter (a LoRA folder or organism name), sae (registry), sae-path, sae-release + sae-id, remote (NDIF; remote=local simulates it), revision, dtype, label.")],
    scenarios: Annotated[Path, typer.Option("--scenarios", help="Scenario JSONL file with honest, lie and parrot scenarios (required).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the study: scale.json (the record), scale.html, scale.md.")],
    depths: Annotated[str, typer.Option("--depths", help="Comma-separated fractions of depth to probe (0 = first layer, 1 = last).")] = "0,0.125,0.25,0.375,0.5,0.625,0.75,0.875,1",
    max_facts: Annotated[int | None, typer.Option("--max-facts", min=1, help="A seeded subset of this many facts (every scenario of each).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Greedy tokens per answer.")] = 12,
    batch_size: BatchOption = 16,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="Export PNG figures for the Markdown report.")] = True,
) -> None:
    """Lie vs parrot across model sizes: the same protocol on every model (behaviour, probes across depth,
    steering and patching at the best layer, the counterfactual copy test and the logit lens; an SAE feature
    where a spec names an SAE), one record and one report for the study. Models load one at a time; a spec
    with `remote` runs every trace on NDIF (an NDIF API key, a model NDIF hosts).

    Example: python -m workbench scale --models default default,adapter=smollm2-liar --scenarios scenarios/default.jsonl --out study --max-facts 40
    Example: python -m workbench scale --models meta-llama/Llama-3.1-8B-Instruct,remote meta-llama/Llama-3.1-70B-Instruct,remote --scenarios my.jsonl --out llama-study
    """
    from workbench.report.scale import write_scale_outputs
    from workbench.scale import parse_model_spec, run_study

    specs = [*models, *ctx.args]
    extra = [arg for arg in specs if arg.startswith("-")]
    if extra:
        raise WorkbenchError(f"unknown option {extra[0]} (see python -m workbench scale --help)")
    try:
        fractions = [float(part) for part in depths.split(",") if part.strip()]
    except ValueError:
        raise WorkbenchError(f"--depths {depths!r}: give comma-separated numbers between 0 and 1") from None
    parsed = [parse_model_spec(spec) for spec in specs]
    chosen = _scenarios(scenarios)
    check_output_path(check_output_path(out, "study folder", folder=True) / "scale.json", "scale record")
    command = "python -m workbench scale --models " + " ".join(specs) + f" --scenarios {scenarios} --out {out}" + (
        f" --depths {depths}" + (f" --max-facts {max_facts}" if max_facts else "") + f" --max-new-tokens {max_new_tokens}"
        + f" --seed {seed}")
    record = run_study(parsed, chosen, scenario_file=str(scenarios), depths=fractions, max_facts=max_facts,
                       max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, command=command,
                       say=lambda message: console.print(message, highlight=False))
    written = write_scale_outputs(record, out, figures=figures)
    table = Table("model", "params", "honest acc.", "lie rate", "parrot rate", "best AUROC lie/honest",
                  "lie/parrot", "steering gain", "patch gain", title=f"scale study ({record.n_scenarios} scenarios)")

    def best(study, contrast):
        found = study.best_auroc(contrast)
        return f"{found.value:.2f} (L{study.best_layer[contrast]})" if found else "n/a"

    for study in record.models:
        b = study.behaviour
        table.add_row(study.label, f"{study.n_params:,}", f"{b.honest_accuracy.value:.2f}", f"{b.lie_rate.value:.2f}",
                      f"{b.parrot_rate.value:.2f}", best(study, "lie_vs_honest"), best(study, "lie_vs_parrot"),
                      str(study.steering.gain) if study.steering else "n/a",
                      str(study.patching.gain) if study.patching else "n/a")
    console.print(table)
    console.print(f"record {written['record']}; report {written['html']} and {written['markdown']}", highlight=False)


#: The base class of the command-line parser's errors (a bad option value, an unknown command...).
_PARSER_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main(argv: list[str] | None = None) -> None:
    """``python -m workbench``: run a command; exit with its code. A bad option or argument (the parser's
    error) is one line too, with the command's ``--help`` to see, and exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="python -m workbench")
    except _PARSER_ERROR as error:
        if type(error).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            context = getattr(error, "ctx", None)
            _print_error(error.format_message() + (f" (see {context.command_path} --help)" if context else ""))
        sys.exit(error.exit_code)
    except typer.Abort:
        sys.exit(1)
    except WorkbenchError as error:  # pragma: no cover - commands print their own (``_user_errors``)
        _print_error(str(error))
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
