"""The project's expected failures: what the CLI reports as one ``error:`` line (exit code 2).

A ``UserError`` is a failure the user can fix without changing code: an invalid config, input that
cannot be read, a missing model or package, an unwritable run directory, a stage whose inputs are
missing or too small, a Ray Job that failed. Its message says what happened and what to do. Any
other exception is a bug and keeps its traceback (``tgd --debug`` shows one for every failure).
Subclasses also derive from the built-in they replaced (``ValueError``, ``RuntimeError``), so code
that caught those keeps working.
"""
from __future__ import annotations


class UserError(Exception):
    """An expected, user-fixable failure; the message names the cause and what to do."""


class StageError(UserError, RuntimeError):
    """A stage cannot go on because of its inputs (an upstream stage missing or out of date, too few
    documents, a package the chosen option needs): the message says which command or key fixes it."""
