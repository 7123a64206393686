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
