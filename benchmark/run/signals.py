"""Ctrl-C and SIGTERM stop a suite cleanly: the running cell and the parent run end KILLED, exit 130 / 143.

    medtl benchmark smoke      # Ctrl-C: cell + parent KILLED, exit 130; `kill PID` (SIGTERM): the same, exit 143

Python's default SIGINT handler raises KeyboardInterrupt, which Lightning turns into
`sys.exit(1)` inside `fit`; SIGTERM's default kills the process with no record at all. While a
suite runs, both raise `tracking.runs.Interrupted` instead, which Lightning re-raises unchanged.
A second signal while the first is being recorded is ignored (with a note), so the bookkeeping
finishes; SIGKILL cannot be caught, and a rerun marks what it leaves RUNNING as KILLED. The workers of
`--launcher local` run in processes of their own (submitit's), which would outlive a SIGKILLed
launcher: each watches the launcher's pid (`watch_launcher`) and stops itself when it is gone.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tracking.claims import pid_alive
from tracking.runs import Interrupted, defer_signal, in_store_call, interrupted

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
        if in_store_call(frame):  # a store transaction is open: stop once it ends (tracking.runs.defer_signal)
            defer_signal(signum)
            return
        state["stopping"] = True
        raise interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def process_gone(pid: int) -> bool:
    """Whether process `pid` has ended: absent, or a zombie nobody reaped yet (in a container PID 1 may never)."""
    if not pid_alive(pid):
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux): liveness as pid_alive says
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def watch_launcher(pid: int, poll_s: float = 1.0, grace_s: float = 20.0) -> threading.Thread:
    """Stop this worker once the launcher `pid` is gone (SIGKILLed, its node lost): submitit's local jobs outlive
    the process that started them. SIGTERM to itself first, so the running cell is recorded KILLED like any
    interrupted cell; a hard exit if that has not ended it within `grace_s` (a worker between cells, where
    submitit ignores SIGTERM)."""

    def watch() -> None:
        while not process_gone(pid):
            time.sleep(poll_s)
        print(f"medtl worker {os.getpid()}: its launcher (pid {pid}) is gone; stopping (the running cell is recorded "
              "KILLED; rerun the launch to resume).", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(128 + signal.SIGTERM)

    thread = threading.Thread(target=watch, name="medtl-launcher-watch", daemon=True)
    thread.start()
    return thread


@contextmanager
def ended_with_launcher(pid: int | None) -> Iterator[None]:
    """Within the block, a worker stops once its launcher `pid` is gone (None: no launcher to watch, e.g. SLURM).
    Once its cell is recorded KILLED it leaves at once: the interpreter's own shutdown (thread pools, loaders)
    can take many seconds, while nobody waits for its result any more."""
    if pid is None:
        yield
        return
    watch_launcher(pid)
    try:
        yield
    except Interrupted:
        if process_gone(pid):
            sys.stderr.flush()
            os._exit(128 + signal.SIGTERM)
        raise
