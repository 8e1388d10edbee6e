"""Progress bars that read well on a terminal and in a log file.

On a terminal, tqdm redraws one line in place. Written to a file (``nohup``, a CI log, a pipe),
those redraws become one endless line of carriage returns, several per second. There a bar
redraws at most once a minute, and each redraw is a line of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

LOG_INTERVAL_S = 60.0  # seconds between redraws when the output is not a terminal


class _Lines:
    """A stream that ends each redraw with a newline instead of starting it with a carriage return."""

    def __init__(self, stream: Any):
        self.stream, self.at_line_start = stream, True

    def write(self, text: str) -> None:
        text = text.replace("\r", "")
        if text.strip():
            self.stream.write(text if text.endswith("\n") else text + "\n")
            self.at_line_start = True
        elif "\n" in text and not self.at_line_start:  # tqdm's closing newline after a redraw it ended already
            self.stream.write("\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, off unless ``enabled``; in a log, a line a minute at most. Pass
    ``refresh=False`` to ``set_postfix`` so that the figures wait for the next redraw."""
    stream = kwargs.pop("file", None) or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
        kwargs.setdefault("ascii", True)
        stream = _Lines(stream)
    return tqdm(iterable, disable=not enabled, file=stream, **kwargs)
