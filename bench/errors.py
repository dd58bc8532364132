"""The exception types for bad input: the CLI prints them as a single line."""

from architectures.errors import BackboneError


class BenchError(ValueError):
    """Bad input or a failed check; the message names what is wrong and what is accepted."""


USER_ERRORS = (BenchError, BackboneError)
"""Errors the user can fix from their one-line message (the benchmark's and the backbones')."""
