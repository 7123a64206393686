"""Model and SAE references of the app's current choices, until the one resolver in ``model`` takes
them over (see ``workbench.model``)."""

from __future__ import annotations

from typing import Any


def model_and_sae_refs(model_spec: Any, sae_spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hypothesis-file form (``model:``, ``sae:``) of the app's current model and SAE specs.

    A registry SAE on the model it was trained on is written as ``adapter: auto`` (portable: no
    adapter path of this machine in the file)."""
    from workbench.model.saes import default_model_spec

    model_ref: dict[str, Any] = {"source": model_spec.source, "adapter": model_spec.adapter,
                                 "gguf_file": model_spec.gguf_file}
    if sae_spec.path:
        sae_ref: dict[str, Any] = {"path": sae_spec.path}
    elif sae_spec.release:
        sae_ref = {"release": sae_spec.release, "id": sae_spec.sae_id}
    else:
        sae_ref = {"registry": sae_spec.registry_name}
        if model_spec == default_model_spec(sae_spec.registry_name):
            model_ref["adapter"] = "auto"
    return model_ref, sae_ref


def hypothesis_specs(hypothesis: Any) -> tuple[Any, Any]:
    """The ``ModelSpec`` and ``SAESpec`` a hypothesis names (as ``workbench.hypotheses.runner.load_for``
    resolves them), so an app can load them through its own cache."""
    from workbench.model.loading import ModelSpec
    from workbench.model.saes import SAESpec, default_model_spec

    ref, sae = hypothesis.model, hypothesis.sae
    uses_registry = sae.path is None and sae.release is None
    if ref.adapter == "auto":
        if ref.source == "default" and uses_registry and not ref.gguf_file:
            model_spec = default_model_spec(sae.registry)
        else:
            model_spec = ModelSpec(source=ref.source, gguf_file=ref.gguf_file)
    else:
        model_spec = ModelSpec(source=ref.source, gguf_file=ref.gguf_file, adapter=ref.adapter)
    sae_spec = SAESpec(registry_name=sae.registry, path=sae.path, release=sae.release, sae_id=sae.id,
                       site=hypothesis.site)
    return model_spec, sae_spec
