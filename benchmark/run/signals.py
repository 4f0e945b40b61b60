"""Ctrl-C and SIGTERM stop a suite cleanly: the running cell and the parent run end KILLED, exit 130 / 143.

    medtl benchmark smoke      # Ctrl-C: cell + parent KILLED, exit 130; `kill PID` (SIGTERM): the same, exit 143

Python's default SIGINT handler raises KeyboardInterrupt, which Lightning turns into
`sys.exit(1)` inside `fit`; SIGTERM's default kills the process with no record at all. While a
suite runs, both raise `tracking.runs.Interrupted` instead, which Lightning re-raises unchanged.
A second signal while the first is being recorded is ignored (with a note), so the bookkeeping
finishes; SIGKILL cannot be caught, and a rerun marks what it leaves RUNNING as KILLED.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tracking.runs import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT / SIGTERM raise Interrupted once (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = {"stopping": False}

    def handler(signum, frame):
        if state["stopping"]:
            print(f"medtl: {signal.Signals(signum).name} again; still recording the runs as KILLED, then exiting.",
                  file=sys.stderr)
            return
        state["stopping"] = True
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
