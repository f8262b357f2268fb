"""Exceptions slimkit raises for bad input.

Every error a user can cause is a `SlimkitError` whose message is one line naming what is wrong
and how to fix it; the CLI prints that line and exits non-zero. They also subclass the builtin
that fits, so `except ValueError` keeps working for library users.
"""


class SlimkitError(Exception):
    """Base class: a user-facing, one-line error."""


class ConfigError(SlimkitError, ValueError):
    """An option or config value is invalid."""


class UnknownModelError(SlimkitError, ValueError):
    """A model name that the zoo does not have."""


class DataError(SlimkitError, ValueError):
    """A data path is missing, unreadable or in an unknown format."""


class ShapeError(SlimkitError, ValueError):
    """Input of the wrong shape for a model."""


class WeightsError(SlimkitError, ValueError):
    """A weights file that is not one, or does not match the model."""


class TrainingError(SlimkitError, RuntimeError):
    """Training that cannot go on, e.g. a loss that became NaN or infinite."""
