"""One process trains a given benchmark run.

Several ``bench-downstream`` processes may share a report folder (the README runs them side by
side with different ``--variants``); some runs are needed by more than one of them (the judge is
the balanced-softmax baseline of seed 0). A lock file next to the run's record, created
exclusively and holding its owner's host and pid, makes the second process wait for the first
one's record instead of training the same run again.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _owner_alive(text: str) -> bool:
    """Whether the process named in a lock file still runs. A lock from another host cannot be
    checked, so it counts as alive (the waiting message says how to remove it by hand)."""
    try:
        host, pid = text.split()
        pid_n = int(pid)
    except ValueError:  # garbled: cannot tell, so wait (the waiting message says how to remove it)
        return True
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid_n, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class Busy(Exception):
    """A live process holds the lock and the claimant asked not to wait."""


@contextmanager
def claim(lock: Path, *, poll: float = 10.0, log: Callable[[str], None] = lambda m: None,
          wait: bool = True) -> Iterator[None]:
    """Hold ``lock`` for the body: wait while a live process holds it (or, with ``wait=False``,
    raise ``Busy`` before the body), take over a lock left by a dead one, and remove it
    afterwards. The body should check again whether the work it guards was done while it waited."""
    lock = Path(lock)
    # the lock appears by hard link of a file already holding host and pid: atomic, never seen empty
    mine = lock.with_name(f"{lock.name}.{os.getpid()}")
    mine.write_text(f"{socket.gethostname()} {os.getpid()}\n")
    waited = False
    try:
        while True:
            try:
                os.link(mine, lock)
                break
            except FileExistsError:
                pass
            try:
                text = lock.read_text()
            except FileNotFoundError:  # released between our link() and read: try again at once
                continue
            if not _owner_alive(text):
                # stale: its owner died without removing it. Two waiters taking over the same stale
                # lock at once may both go on: the run is trained twice, as it was before locks.
                lock.unlink(missing_ok=True)
                continue
            if not wait:
                raise Busy(text.strip())
            if not waited:
                log(f"waiting for {text.strip()} (host, pid), which holds {lock}; if that process is "
                    "gone, delete the file")
                waited = True
            time.sleep(poll)
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
