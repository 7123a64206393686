"""Errors a user can hit. Each message says what was wrong and what to do."""

from __future__ import annotations


class WorkbenchError(Exception):
    """An error caused by the user's input or environment, with a readable message.

    The CLI and the app show ``str(error)`` as it is; they never show a traceback for it.
    """


class ModelLoadError(WorkbenchError):
    """The model (or its adapter) could not be loaded."""


class SAELoadError(WorkbenchError):
    """The SAE could not be loaded or does not fit the model."""


class SiteError(WorkbenchError):
    """A site name that cannot be read on this model."""


class FeatureIndexError(WorkbenchError):
    """A feature index outside the SAE's dictionary."""


def check_number(name: str, value: float, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None) -> None:
    """A setting that must be a finite number in a range (``minimum``/``maximum`` inclusive, ``above``
    exclusive), or a ``WorkbenchError`` naming the setting, the range and the value given."""
    import math

    bounds = [f">= {minimum:g}" if minimum is not None else "", f"> {above:g}" if above is not None else "",
              f"<= {maximum:g}" if maximum is not None else ""]
    wanted = " and ".join(b for b in bounds if b)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and not (
        (minimum is not None and value < minimum) or (maximum is not None and value > maximum)
        or (above is not None and value <= above))
    if not ok:
        raise WorkbenchError(f"{name} must be a finite number{' ' + wanted if wanted else ''}, not {value!r}")
