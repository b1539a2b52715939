"""The workers share the models: forked from a zygote that loaded them once, each worker's
own (private) memory is a small part of what it maps; a replacement worker shares them too."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from alive_service.client import AliveClient
from alive_service.memory import children, tree, usage
from alive_service.rpc import pb
from tests.test_operations import log_events
from tools.harness import ServerProcess

pytestmark = pytest.mark.integration

SMALL = pb.AnimateOptions(long_side=256, duration_s=1.0)
# Idle, a worker maps ~340 MB, of which ~15 MB is its own here. Far below the old ~260 MB
# of private model copies, and far above what allocator noise could reach.
PRIVATE_SHARE = 0.25


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory, model_dir: Path
                ) -> Iterator[ServerProcess]:
    with ServerProcess(data_dir=tmp_path_factory.mktemp("memory"),
                       env={"ALIVE_WORKERS": "2"}) as process:
        yield process


def ready_event(server: ServerProcess) -> dict:
    return [e for e in log_events(server) if e.get("msg") == "workers ready"][-1]


def test_workers_are_forks_of_one_zygote_and_hold_little_of_their_own(
    two_workers: ServerProcess,
) -> None:
    ready = ready_event(two_workers)
    assert two_workers.process is not None
    zygote = ready["zygote"]
    assert zygote in children(two_workers.process.pid)
    assert set(ready["pids"]) <= set(children(zygote))
    for pid in ready["pids"]:
        worker = usage(pid)
        assert worker is not None and worker.name == "alive-worker"
        assert worker.private < PRIVATE_SHARE * worker.rss, worker
        assert worker.shared > worker.private, worker
    # Each page counted once: the tree's PSS is well under the sum of its RSS.
    processes = tree(two_workers.process.pid)
    assert sum(u.pss for u in processes) < 0.7 * sum(u.rss for u in processes)


def test_a_replacement_worker_is_forked_from_the_zygote_and_shares_its_models(
    two_workers: ServerProcess, landscape_jpeg: bytes,
) -> None:
    ready = ready_event(two_workers)
    os.kill(ready["pids"][0], signal.SIGKILL)
    # An idle worker's death is noticed when a job takes it: two at once take both.
    made: list[str] = []

    def animate(user: str) -> None:
        with AliveClient(two_workers.addr, token=two_workers.token(user)) as client:
            made.append(client.animate(landscape_jpeg, "", SMALL).info.video_id)

    callers = [threading.Thread(target=animate, args=(f"mem{i}",)) for i in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(120)
    assert len(made) == 2
    (replaced,) = [e for e in log_events(two_workers) if e.get("msg") == "worker replaced"]
    fresh = replaced["pid"]
    assert fresh in children(ready["zygote"])
    worker = usage(fresh)
    assert worker is not None and worker.private < PRIVATE_SHARE * worker.rss, worker
