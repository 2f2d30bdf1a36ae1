"""Errors of the model-side layer: model specs, the zoo, dictionaries, tasks.

All derive from :class:`mechgraph.errors.MechgraphError`, so the CLI prints them as one line.
"""

from __future__ import annotations

from mechgraph.errors import ConfigError, MechgraphError


class SpecError(ConfigError):
    """A model, dictionary or task spec string cannot be parsed or names nothing known."""


class ModelUnavailableError(MechgraphError):
    """A model's weights cannot be obtained here (not built, not installed, hub unreachable)."""


class DictionaryError(MechgraphError):
    """A dictionary (SAE, identity, SVD basis) cannot be loaded or does not fit its model."""


class TaskError(ConfigError):
    """A task is unknown, or its examples are malformed for the tokenizer at hand."""


class AttributionError(MechgraphError):
    """The attribution engine cannot compute a graph from these inputs (e.g. NaN activations)."""
