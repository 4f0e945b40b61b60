"""Cell claims: one winner per cell, stale claims (dead pid, expired lease) taken over and marked KILLED."""

import socket
import time

from tracking import client, ensure_experiment
from tracking.claims import CLAIM_TAG, HEARTBEAT_TAG, HOST_TAG, PID_TAG, Claims
from tracking.runs import ERROR_TAG, HASH_TAG, start_run
from tests.benchmark.faults import dead_pid


def _setup(uri):
    c = client(uri)
    return c, ensure_experiment(c, "claims")


def test_first_claim_wins_and_a_second_worker_skips_the_cell(mlflow_uri):
    c, exp = _setup(mlflow_uri)
    first, second = Claims(c, exp, settle_s=0), Claims(c, exp, settle_s=0)
    mine = first.claim("h1", name="cell", tags={HASH_TAG: "h1"})
    assert mine is not None
    assert second.claim("h1", name="cell", tags={HASH_TAG: "h1"}) is None  # deleted its own run
    live = [r for r in c.search_runs([exp]) if r.data.tags.get(HASH_TAG) == "h1"]
    assert [r.info.run_id for r in live] == [mine] and live[0].data.tags[CLAIM_TAG] == first.owner
    c.set_terminated(mine, "FINISHED")
    assert Claims(c, exp, settle_s=0).claim("h1", name="cell", tags={HASH_TAG: "h1"}) is None  # finished: never again
    for claims in (first, second):
        claims.close()


def test_claim_of_a_dead_process_is_taken_over_and_marked_killed(mlflow_uri):
    c, exp = _setup(mlflow_uri)
    pid = dead_pid()
    orphan = start_run(c, exp, name="cell", tags={HASH_TAG: "h2", HOST_TAG: socket.gethostname(), PID_TAG: str(pid),
                                                    HEARTBEAT_TAG: str(time.time())})
    claims = Claims(c, exp, settle_s=0)
    assert claims.claim("h2", name="cell", tags={HASH_TAG: "h2"}) is not None
    old = c.get_run(orphan)
    assert old.info.status == "KILLED" and f"process {pid}" in old.data.tags[ERROR_TAG]
    claims.close()


def test_expired_lease_on_another_host_is_stale_and_reaped(mlflow_uri):
    c, exp = _setup(mlflow_uri)
    claims = Claims(c, exp, lease_s=60)
    fresh = start_run(c, exp, name="a", tags={HOST_TAG: "elsewhere", PID_TAG: "1", HEARTBEAT_TAG: str(time.time())})
    expired = start_run(c, exp, name="b", tags={HOST_TAG: "elsewhere", PID_TAG: "1", HEARTBEAT_TAG: str(time.time() - 120)})
    reaped = claims.reap_stale()
    assert [run.info.run_id for run, _ in reaped] == [expired]
    assert "no heartbeat from elsewhere" in reaped[0][1] and "lease 60 s" in reaped[0][1]
    assert c.get_run(expired).info.status == "KILLED" and c.get_run(fresh).info.status == "RUNNING"


def test_heartbeat_is_renewed_while_held(mlflow_uri):
    c, exp = _setup(mlflow_uri)
    claims = Claims(c, exp, lease_s=1.0, settle_s=0)
    run_id = claims.claim("h3", name="cell", tags={HASH_TAG: "h3"})
    first = float(c.get_run(run_id).data.tags[HEARTBEAT_TAG])
    deadline = time.monotonic() + 30
    while float(c.get_run(run_id).data.tags[HEARTBEAT_TAG]) == first:
        assert time.monotonic() < deadline, "heartbeat never renewed"
        time.sleep(0.2)
    claims.close()
