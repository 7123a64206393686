"""Training the project's SAEs: a TopK SAE (sae-lens) on one residual-stream site.

Data flow: a text corpus (text the model generates itself + chat transcripts of scenarios;
``corpus``) -> activations at the site, read with a forward hook on the Hugging Face module,
first position of every text dropped (``activations``) -> sae-lens' ``SAETrainer`` fed by an
in-memory activation iterator (``training``) -> the inference SAE in sae-lens' on-disk format
(``cfg.json`` + ``sae_weights.safetensors``, float16 weights) -> metrics on held-out texts
(``evaluation``). ``run`` strings these together with a run record and a card, and is the
command line.

Why the first position is dropped: in SmolLM2 (as in most Llama-style models) the residual
stream at position 0 is an "attention sink" with a norm about 100 times that of any other
token (~25,000 against ~170 at ``model.layers.15``). It would dominate the reconstruction loss
and says nothing about the text, so it is left out of training and of every metric here; the
evaluation splices the SAE in at positions 1.. only.

Why ``SAETrainer`` with our own activation iterator rather than
``LanguageModelSAETrainingRunner``: the runner loads the model through TransformerLens (or a
HookedProxyLM wrapper) and streams a Hugging Face dataset, both of which expect the network or
a hub cache; our activations come from an already loaded ``LoadedModel`` (any HF causal LM,
adapter merged) and a handful of texts, so we read them with a forward hook and hand sae-lens
an iterator of activation batches. The trainer, the SAE classes, the auxiliary dead-latent
loss, the activation-norm scaling and the on-disk format are all sae-lens' own.

Entry points: :func:`build_corpus`, :func:`collect_activations`, :func:`train_sae`,
:func:`evaluate_sae`, :func:`save_sae`, :func:`train_and_save` (what the CLI calls),
:func:`evaluate_on_fresh_text` (``sae eval``) and ``python -m workbench.sae_training --help``.
"""

from __future__ import annotations

from workbench.sae_training.activations import SKIP_POSITIONS, collect_activations, count_tokens, encode_text, work_model
from workbench.sae_training.corpus import (
    CHAT_TASKS, SYSTEM_PROMPTS, TEXT_SEEDS, TOPICS, Corpus, CorpusConfig, build_corpus, generate_texts,
    generation_prompts, heldout_corpus, scenario_transcripts,
)
from workbench.sae_training.evaluation import evaluate_on_fresh_text, evaluate_sae
from workbench.sae_training.run import DEFAULT_SAE_NAME, DEFAULT_SITE, REPRODUCE_COMMAND, main, sae_card, train_and_save
from workbench.sae_training.training import (
    SAETrainingConfig, TrainedSAE, save_sae, sae_metadata, train_sae, train_sae_on_activations,
)

__all__ = [
    # activations
    "SKIP_POSITIONS", "collect_activations", "count_tokens", "encode_text", "work_model",
    # corpus
    "CHAT_TASKS", "SYSTEM_PROMPTS", "TEXT_SEEDS", "TOPICS", "Corpus", "CorpusConfig", "build_corpus", "generate_texts",
    "generation_prompts", "heldout_corpus", "scenario_transcripts",
    # training
    "SAETrainingConfig", "TrainedSAE", "sae_metadata", "save_sae", "train_sae", "train_sae_on_activations",
    # evaluation
    "evaluate_on_fresh_text", "evaluate_sae",
    # run
    "DEFAULT_SAE_NAME", "DEFAULT_SITE", "REPRODUCE_COMMAND", "main", "sae_card", "train_and_save",
]
