"""The one logit lens: the rank of given tokens when the residual stream after each decoder layer is
read out through the model's final norm and unembedding, at each item's last prompt token.

The norm and the unembedding run inside the trace (on the model's own modules), so the read-out
works where the weights are not here (remote execution on NDIF).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from workbench.core.errors import WorkbenchError
from workbench.model.rendering import RenderedItem, last_prompt_token_batches
from workbench.model.sites import Site
from workbench.model.tracing import read_site, run_trace

#: Where the final norm sits in common architectures (Llama/Qwen/Gemma/Mistral, GPT-2, GPT-NeoX, Phi).
FINAL_NORM_PATHS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.final_layernorm")


def final_norm_path(model: Any) -> str | None:
    """Dotted path of the norm applied before the unembedding, or None where the model has none we know."""
    for path in FINAL_NORM_PATHS:
        try:
            model.hf_model.get_submodule(path)
        except AttributeError:
            continue
        return path
    return None


def _module_envoy(model: Any, path: str) -> Any:
    """The nnsight Envoy of the module at a dotted path (the final norm, the unembedding)."""
    return model.envoy(Site(name=path, module_path=path, reads_input=False, layer=None))


def true_token_ranks(model: Any, items: Sequence[RenderedItem], token_ids: Sequence[int], layers: Sequence[int],
                     *, batch_size: int = 32) -> torch.Tensor:
    """Rank (0 = top) of ``token_ids[i]`` under the logit lens after each of ``layers``, at item ``i``'s last
    prompt token: ``[n_items, n_layers]`` long."""
    if len(items) != len(token_ids):
        raise WorkbenchError(f"{len(items)} items but {len(token_ids)} tokens to rank")
    norm_path = final_norm_path(model)
    head_path = _head_path(model)
    sites = [model.site(f"{model.layers_path}.{layer}") for layer in layers]
    norm = _module_envoy(model, norm_path) if norm_path is not None else None
    head = _module_envoy(model, head_path)
    out: list[torch.Tensor] = []
    for input_ids, attention, rows, last in last_prompt_token_batches(items, model.tokenizer.pad_token_id, batch_size):
        done = sum(len(ranks) for ranks in out)
        targets = torch.tensor([int(t) for t in token_ids[done : done + len(rows)]])

        def body(tracer: Any) -> list[torch.Tensor]:
            ranks = []
            for site in sites:
                hidden = read_site(model, site)[rows, last]  # [chunk, d_model]
                if norm is not None:
                    hidden = norm(hidden)
                logits = head(hidden)  # [chunk, vocab]
                target_logit = logits.gather(1, targets[:, None].to(logits.device))  # a remote model: on its GPU
                ranks.append((logits > target_logit).sum(1).save())
            return ranks

        saved = run_trace(model, input_ids, attention, body)
        out.append(torch.stack([r.long() for r in saved], dim=1))
    return torch.cat(out) if out else torch.zeros(0, len(layers), dtype=torch.long)


def _head_path(model: Any) -> str:
    head = model.hf_model.get_output_embeddings()
    for name, module in model.hf_model.named_modules():
        if module is head:
            return name
    raise WorkbenchError("the model has no output embedding (lm head) to read the logit lens through")
