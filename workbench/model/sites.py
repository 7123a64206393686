"""One place that names sites and finds the module nnsight must read.

A *site* is where activations are read: the canonical name is the Hugging Face module
path whose output is the activation (``model.layers.15`` = residual stream after
decoder layer 15). SAEs trained with TransformerLens-style hook names
(``blocks.15.hook_resid_post``) are translated here, and only here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from workbench.core.errors import SiteError

#: Where the list of decoder layers lives, per model family.
LAYER_CONTAINERS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")

_TL_HOOK = re.compile(r"^blocks\.(\d+)\.(hook_resid_post|hook_resid_pre|hook_mlp_out|hook_attn_out)$")
_LAYER_SUFFIX = {"hook_mlp_out": "mlp", "hook_attn_out": "self_attn"}


@dataclass(frozen=True)
class Site:
    """A readable activation site on a specific model."""

    name: str
    """Canonical name: the HF module path (e.g. ``model.layers.15``)."""
    module_path: str
    """The module nnsight reads, dotted (``model.layers.15``)."""
    reads_input: bool
    """True if the activation is the module's input (``hook_resid_pre``), else its output."""
    layer: int | None
    """Decoder layer index, when the site belongs to one."""


def find_layer_container(module: torch.nn.Module) -> str:
    """The dotted path of the decoder-layer list of a HF causal LM."""
    names = dict(module.named_modules())
    for path in LAYER_CONTAINERS:
        if path in names and isinstance(names[path], torch.nn.ModuleList):
            return path
    raise SiteError(
        f"cannot find the decoder layers of {type(module).__name__}: looked for "
        f"{', '.join(LAYER_CONTAINERS)}; name the site by its full module path instead"
    )


def to_module_name(site_name: str, layers_path: str) -> tuple[str, bool]:
    """Translate any accepted site name into (module path, reads_input).

    Accepts HF module paths as they are and TransformerLens-style hook names.
    """
    match = _TL_HOOK.match(site_name)
    if not match:
        return site_name, False
    layer, hook = int(match.group(1)), match.group(2)
    if hook == "hook_resid_post":
        return f"{layers_path}.{layer}", False
    if hook == "hook_resid_pre":
        return f"{layers_path}.{layer}", True
    return f"{layers_path}.{layer}.{_LAYER_SUFFIX[hook]}", False


def to_hook_name(site: Site, layers_path: str) -> str | None:
    """The TransformerLens-style hook name of a site, where one exists."""
    if site.layer is None:
        return None
    suffix = site.module_path[len(f"{layers_path}.{site.layer}") :]
    if suffix == "":
        return f"blocks.{site.layer}.{'hook_resid_pre' if site.reads_input else 'hook_resid_post'}"
    for hook, module in _LAYER_SUFFIX.items():
        if suffix == f".{module}" and not site.reads_input:
            return f"blocks.{site.layer}.{hook}"
    return None


def resolve_site(site_name: str, module: torch.nn.Module) -> Site:
    """Resolve a site name on a model, failing with a helpful message if it does not exist."""
    layers_path = find_layer_container(module)
    module_path, reads_input = to_module_name(site_name, layers_path)
    names = dict(module.named_modules())
    if module_path not in names:
        n_layers = len(names[layers_path])
        raise SiteError(
            f"site {site_name!r} does not exist on {type(module).__name__}: {layers_path} has "
            f"{n_layers} layers (0-{n_layers - 1}); "
            f"use e.g. '{layers_path}.{n_layers // 2}' or 'blocks.{n_layers // 2}.hook_resid_post'"
        )
    layer_match = re.match(re.escape(layers_path) + r"\.(\d+)(\.|$)", module_path)
    layer = int(layer_match.group(1)) if layer_match else None
    return Site(name=module_path if not reads_input else site_name, module_path=module_path,
                reads_input=reads_input, layer=layer)


def layer_site(layer: int, module: torch.nn.Module) -> Site:
    """The residual stream after decoder layer ``layer``."""
    return resolve_site(f"{find_layer_container(module)}.{layer}", module)
