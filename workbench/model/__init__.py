"""Stage 2, model: a loaded language model and its SAEs. Loading models (embedded default, Hugging
Face ids, local folders, GGUF, LoRA adapters, remote on NDIF) in ``loading``, SAEs through sae-lens
in ``saes``, identities (what a model, adapter or SAE computes with: digests of weights and
configuration, never documentation) in ``identity``, site names in ``sites``, chat rendering with
speaker turns in ``rendering``, the one nnsight tracing helper in ``tracing`` and the one greedy
decoder in ``generation``."""
