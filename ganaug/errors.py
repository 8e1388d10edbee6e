"""The one exception type for user mistakes.

Everything a user can get wrong (a path, a config value, a corrupt file, a class name) raises
:class:`GanaugError` with a message that says what was wrong and what to do. Validation never
uses ``assert``: ``python -O`` strips asserts.
"""

from __future__ import annotations


class GanaugError(Exception):
    """A problem with the user's input, data, files or configuration.

    The message names what was wrong and how to fix it. The CLI prints it without a
    traceback and exits with status 2.
    """


class TrainingDiverged(GanaugError):
    """A loss became NaN or infinite; the last good checkpoint was left untouched."""
