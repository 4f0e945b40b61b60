"""Cell claims in MLflow itself: no two workers run one cell, and a dead worker's cells are taken over.

    medtl benchmark smoke & medtl benchmark smoke     # two workers on one store share the cells

A claim is the cell's own run: created RUNNING with the claimant's host, pid and a heartbeat
timestamp as tags. After creating it, the claimant lists the runs of that spec hash: if one is
FINISHED, or an earlier live claim exists (earliest start time, then run id), it deletes its own
run and skips the cell. A background thread renews the heartbeat of every run the process holds;
a RUNNING run whose heartbeat is older than the lease, or whose pid is gone on this host, is stale:
its cell may be claimed again, and `reap_stale` marks it KILLED. No lock server: every worker that
can reach the tracking store can take part (a SLURM array of workers included).

Timing assumptions: creating a run commits within `settle_s` (a winner re-checks after that
long, so two claims made at once resolve the same way for both), and hosts' clocks agree to well
under the lease.

    claims = Claims(client, experiment_id)
    for run, reason in claims.reap_stale(): ...          # say what was marked KILLED
    run_id = claims.claim(spec_hash, name=..., tags=..., parent_id=...)   # None: ran or runs elsewhere
    ...                                                  # run the cell in run_id, then
    claims.release(run_id)
    claims.close()                                       # stops the heartbeat thread
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from tracking import settings
from tracking.runs import ERROR_TAG, HASH_TAG, search_runs, start_run
from tracking.naming import CLAIM_TAG, HEARTBEAT_TAG, HOST_TAG, PID_TAG

def lease_seconds() -> float:
    """How long a claim lives without a heartbeat: $MEDTL_LEASE_SECONDS, default 300 s.

    Long enough for a store that is slow for a while, short enough that a dead SLURM worker's cells
    come back soon. Read when a Claims is made, not at import, so a bad value is a SettingError.
    """
    return settings.read("MEDTL_LEASE_SECONDS")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@dataclass
class Claims:
    """The claims of one worker process on one experiment (see the module docstring)."""

    client: MlflowClient  # the shared store
    experiment_id: str  # the suite's experiment
    lease_s: float = field(default_factory=lease_seconds)  # a heartbeat older than this is a dead claim
    settle_s: float = 0.2  # how long a run creation may take to become visible to others
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    owner: str = ""  # set in __post_init__: host:pid:nonce
    _held: set = field(default_factory=set)  # run ids whose heartbeat this process renews
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.owner = self.owner or f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"

    @property
    def heartbeat_s(self) -> float:
        return max(self.lease_s / 10, 0.5)

    def tags(self) -> dict[str, str]:
        """Tags that make a run a claim of this process."""
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), CLAIM_TAG: self.owner, HEARTBEAT_TAG: f"{time.time():.3f}"}

    # --- staleness ------------------------------------------------------------------------------

    def stale_reason(self, run, now: float | None = None) -> str | None:
        """Why the RUNNING `run` is dead (its process is gone, or its lease ran out), or None if alive."""
        if run.info.status != "RUNNING":
            return None
        tags = run.data.tags
        if tags.get(CLAIM_TAG) == self.owner:
            return None
        now = time.time() if now is None else now
        host, pid = tags.get(HOST_TAG), tags.get(PID_TAG, "")
        if host == self.host and pid.isdigit() and not pid_alive(int(pid)):
            return f"its process {pid} on {host} is gone"
        try:
            beat = float(tags[HEARTBEAT_TAG])
        except (KeyError, ValueError):
            beat = run.info.start_time / 1000  # a run from before claims: its start is its last sign of life
        age = now - beat
        if age > self.lease_s:
            return f"no heartbeat from {host or 'an unknown host'} for {age:.0f} s (lease {self.lease_s:.0f} s)"
        return None

    def mark_killed(self, run, reason: str) -> None:
        self.client.set_tag(run.info.run_id, ERROR_TAG, f"stale: {reason}; marked KILLED by {self.owner}")
        self.client.set_terminated(run.info.run_id, "KILLED")

    def reap_stale(self) -> list[tuple[object, str]]:
        """Mark every stale RUNNING run of the experiment KILLED; returns (run, reason) for each."""
        reaped = []
        for run in search_runs(self.client, self.experiment_id, "attributes.status = 'RUNNING'"):
            reason = self.stale_reason(run)
            if reason is not None:
                self.mark_killed(run, reason)
                reaped.append((run, reason))
        return reaped

    # --- claims ---------------------------------------------------------------------------------

    def runs_of(self, spec_hash: str) -> list:
        return search_runs(self.client, self.experiment_id, f"tags.`{HASH_TAG}` = '{spec_hash}'")

    def _winner(self, spec_hash: str, mine: str) -> str | None:
        """Run id that owns the cell: a FINISHED run's, else the earliest live claim's (stale ones are KILLED)."""
        live = []
        for run in self.runs_of(spec_hash):
            if run.info.status == "FINISHED":
                return run.info.run_id
            if run.info.status != "RUNNING":
                continue
            reason = self.stale_reason(run) if run.info.run_id != mine else None
            if reason is not None:
                self.mark_killed(run, reason)  # a dead worker's claim: take it over
                continue
            live.append(run)
        if not live:
            return None
        return min(live, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id

    def claim(self, spec_hash: str, *, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> str | None:
        """Create the cell's run as a claim; its id if this process won the cell, else None (run deleted)."""
        run_id = start_run(self.client, self.experiment_id, name=name, tags={**tags, **self.tags()}, parent_id=parent_id)
        self.hold(run_id)
        if self._winner(spec_hash, run_id) == run_id:
            time.sleep(self.settle_s)  # a claim made at the same moment is visible now
            if self._winner(spec_hash, run_id) == run_id:
                return run_id
        self.release(run_id)
        self.client.delete_run(run_id)
        return None

    def live_claim(self, spec_hash: str) -> object | None:
        """A RUNNING, non-stale run of `spec_hash` held by another process, if any."""
        for run in self.runs_of(spec_hash):
            if run.info.status == "RUNNING" and run.data.tags.get(CLAIM_TAG) != self.owner and self.stale_reason(run) is None:
                return run
        return None

    def wait_finished(self, spec_hash: str, poll_s: float = 2.0, on_wait=None) -> object | None:
        """The FINISHED run of `spec_hash`, waiting while another live process holds it; None if nobody does."""
        told = False
        while True:
            finished = [r for r in self.runs_of(spec_hash) if r.info.status == "FINISHED"]
            if finished:
                return max(finished, key=lambda r: r.info.start_time)
            holder = self.live_claim(spec_hash)
            if holder is None:
                return None
            if on_wait is not None and not told:
                on_wait(holder)
                told = True
            time.sleep(poll_s)

    # --- heartbeat ------------------------------------------------------------------------------

    def hold(self, run_id: str) -> None:
        """Renew `run_id`'s heartbeat until `release` (starts the heartbeat thread on first use)."""
        self._held.add(run_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="medtl-heartbeat", daemon=True)
            self._thread.start()

    def release(self, run_id: str) -> None:
        self._held.discard(run_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            now = f"{time.time():.3f}"
            for run_id in list(self._held):
                try:
                    self.client.log_batch(run_id, tags=[RunTag(HEARTBEAT_TAG, now)])
                except Exception:  # noqa: BLE001 - a missed beat is retried next time; the lease allows many
                    pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._held.clear()
