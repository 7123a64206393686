"""The one tracing helper: every forward pass the workbench runs through nnsight goes through
``run_trace``, which owns ``model.lm.trace``, gradients off, remote execution (``remote=`` from the
model's spec, so a model served by NDIF runs the same code) and early stopping; ``read_site`` and
``write_site`` own the difference between a module's input and output and the unwrap of modules
that return tuples (HF decoder layers return ``(hidden_states, ...)`` in some versions).

nnsight runs the body of a ``with model.trace(...)`` block from its source, so a trace cannot be
wrapped in a context manager of ours: ``run_trace`` takes the body as a function of the tracer,
called inside the block, and returns what it returns (saved values).

Traces are serialised: one process-wide lock is held for the whole of each trace. The app keeps
one model per process (``st.cache_resource``) shared by every session, and nnsight's tracing
state is not safe across threads (two concurrent traces on one model fail with "parent cannot be
on a different thread" or lose their saved values). A lock was chosen over per-session model
copies (memory grows with each session, and a copy of a large model does not fit) and over a
work queue (more machinery for the same effect): on a CPU one forward pass already uses every
core, so running two at once gains nothing, and each session still gets exactly the numbers it
would get alone, because no state outlives a trace. Work made of several traces (a sweep, a
greedy decode) interleaves with other sessions' traces between its passes, so no session waits
for another's whole job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import threading

import nnsight
import torch

from workbench.model.sites import Site

T = TypeVar("T")

TRACE_LOCK = threading.RLock()
"""Held for the whole of every trace (see the module docstring)."""


def run_trace(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
              body: Callable[[Any], T], *, stop: bool = False, **trace_kwargs: Any) -> T:
    """One traced forward pass of ``model`` (a ``LoadedModel``) on a batch ``[batch, pos]``.

    ``body(tracer)`` runs inside the trace; what it returns (values it ``.save()``-d) comes back.
    ``stop`` ends the pass after the body's last read (nothing after the last site runs).
    Extra keyword arguments go to the model's forward (``past_key_values``, ``position_ids``...).
    """
    inputs: dict[str, torch.Tensor] = {"input_ids": input_ids}
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask
    with TRACE_LOCK, torch.no_grad(), model.lm.trace(inputs, remote=model.spec.remote, **trace_kwargs) as tracer:
        # nnsight hands back from the block only what is saved: the body's return value is marked
        # too (its parts are saved by the body), else ``result`` would be unbound after the block.
        result = nnsight.save(body(tracer))
        if stop:
            tracer.stop()
    return result


def read_site(model: Any, site: Site) -> Any:
    """Inside a trace: the activation at a site (``[batch, pos, d]``), its module's input for
    ``hook_resid_pre``-style sites, else its output, unwrapped from a tuple."""
    envoy = model.envoy(site)
    value = envoy.input if site.reads_input else envoy.output
    return value[0] if isinstance(value, tuple) else value


def write_site(model: Any, site: Site, value: Any) -> None:
    """Inside a trace: replace the activation at a site (keeping the rest of a tuple output)."""
    envoy = model.envoy(site)
    if site.reads_input:
        envoy.input = value
        return
    output = envoy.output
    if isinstance(output, tuple):
        envoy.output = (value, *output[1:])
    else:
        envoy.output = value
