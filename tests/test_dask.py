"""The Dask backend on a real LocalCluster bound to 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]
    )
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as c:
        yield c


def test_flow_with_branches_and_matrix_runs_on_dask(cluster: Any, tmp_path: Path) -> None:
    import daskflows

    params = {"counter": str(tmp_path / "count.log")}
    result = daskflows.branches.run(
        params,
        state_dir=tmp_path / "state",
        executor="dask",
        address=cluster.scheduler_address,
        workers=2,
    )
    assert result.ok, result.summary()
    out = result["combine"].output
    assert out["scaled"] == [2, 4, 6] and out["side"] == 102
    assert out["pid"] != os.getpid()  # ran in a worker process
    state = daskflows.branches.load_state(params, state_dir=tmp_path / "state")
    assert state.steps["scale[k=3]"]["status"] == "succeeded"
    assert (tmp_path / "count.log").read_text().count("scale") == 3
    again = daskflows.branches.run(
        params,
        state_dir=tmp_path / "state",
        executor="dask",
        address=cluster.scheduler_address,
        workers=2,
    )
    assert all(r.status.value == "cached" for r in again)


def test_killed_worker_is_survived_and_nothing_finished_reruns(
    cluster: Any, tmp_path: Path
) -> None:
    import daskflows

    counter = tmp_path / "count.log"
    params = {"counter": str(counter), "marker": str(tmp_path / "killed")}
    result = daskflows.worker_killer.run(
        params,
        state_dir=tmp_path / "state",
        executor="dask",
        address=cluster.scheduler_address,
        workers=2,
    )
    assert (tmp_path / "killed").exists()  # a worker really died mid-step
    assert result.ok, result.summary()
    assert result["after"].output == 3
    names = [line.split()[0] for line in counter.read_text().splitlines()]
    assert names.count("before") == 1 and names.count("after") == 1
    assert names.count("dies_once") == 2  # the lost attempt, then the one that finished
    daskflows.worker_killer.run(
        params,
        state_dir=tmp_path / "state",
        executor="dask",
        address=cluster.scheduler_address,
        workers=2,
    )
    assert [line.split()[0] for line in counter.read_text().splitlines()] == names


def test_dask_executor_starts_its_own_local_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import daskflows

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    params = {"counter": str(tmp_path / "count.log")}
    result = daskflows.branches.run(params, state_dir=tmp_path, executor="dask", workers=2)
    assert result.ok and result["combine"].output["scaled"] == [2, 4, 6]


def test_cpu_and_memory_hints_become_dask_worker_resources(tmp_path: Path) -> None:
    import daskflows

    from flowkit import FlowDefinitionError

    params = {"counter": str(tmp_path / "count.log")}
    result = daskflows.hinted.run(params, state_dir=tmp_path, executor="dask", workers=2)
    assert result.ok and result["also_light"].output == 2
    with pytest.raises(FlowDefinitionError, match="largest Dask worker"):
        daskflows.too_big.run(state_dir=tmp_path, executor="dask", workers=2)
    assert not (tmp_path / "dask_too_big" / "dask_too_big" / "journal.jsonl").exists()


def test_hints_are_ignored_with_a_warning_on_workers_without_resources(
    cluster: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import daskflows

    params = {"counter": str(tmp_path / "count.log")}
    result = daskflows.hinted.run(
        params, state_dir=tmp_path, executor="dask", address=cluster.scheduler_address
    )
    assert result.ok
    assert "declare no CPU/MEMORY resources" in caplog.text


def test_a_workflow_on_a_local_cluster_runs_in_its_own_folder(tmp_path: Path) -> None:
    from flowkit.loader import load_flow

    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "flow.yaml").write_text(
        "name: local_wf\ntasks:\n"
        "  write:\n    command: ['sh', '-c', 'pwd > where.txt']\n"
        "  read:\n    command: ['cat', 'where.txt']\n    depends_on: [write]\n"
    )
    result = load_flow(str(wf / "flow.yaml")).run(
        state_dir=tmp_path / "state", executor="dask", workers=2
    )
    assert result.ok, result.summary()
    # nothing was copied: a local cluster's workers share this machine's folders
    assert (wf / "where.txt").read_text().strip() == str(wf)
    assert str(wf) in str(result["read"].output)
