"""A real Dask cluster: ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, started
in a folder where the tests' projects are not importable; flowkit runs as a user would run it,
``python -m flowkit run ... --executor dask --address tcp://...`` from the project's folder.

What is checked: the code (a module with its helpers, a package, steps made by a factory) and a
YAML workflow's folder of scripts are shipped; logs and resource figures come back to the client's
state folder, with the worker each attempt ran on; a killed worker is survived; a killed scheduler
interrupts the run (exit 130), a scheduler without workers is a bounded wait, and the run resumes
with its finished steps cached once the cluster is back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from clusterprocs import Cluster, clean_env

HELPERS = """
def base() -> int:
    return 21
"""

PIPE = """
import logging
import os
import threading
import time
from pathlib import Path

import helpers
from flowkit import Flow, step

demo = Flow("demo")


@demo.step()
def source() -> int:
    print("hello from source")
    return helpers.base()


@demo.step()
def double(source: int) -> int:
    logging.getLogger("pipe").warning("doubling %d", source)
    print("module file:", __file__)
    t = time.process_time()
    while time.process_time() - t < 0.2:  # CPU time the journal must report
        pass
    return source * 2


def make_adder(n: int):
    def add(double: int) -> int:
        print("adder made by a factory, n =", n)
        return double + n

    return add


demo.add(step(name="plus_one")(make_adder(1)))

killer = Flow("killer")


@killer.step()
def before(marker: str) -> int:
    return 1


@killer.step()
def dies_once(before: int, marker: str) -> int:
    if not Path(marker).exists():
        Path(marker).write_text("killed")
        os._exit(1)  # the worker process dies mid-step
    print("second try")
    return before + 1


flaky = Flow("flaky")


@flaky.step(retries=1)
def once(marker: str) -> str:
    if not Path(marker).exists():
        Path(marker).write_text("failed once")
        raise ConnectionError("first attempt fails")
    return "second attempt"


slow = Flow("slow")


@slow.step()
def first(counter: str) -> int:
    with open(counter, "a") as f:
        f.write("first\\n")
    return 1


@slow.step()
def waits(first: int, hold: str, started: str) -> int:
    Path(started).write_text("running")
    while Path(hold).exists():
        time.sleep(0.1)
    return first + 1


unshippable = Flow("unshippable")


def make_locked():
    lock = threading.Lock()

    def locked() -> None:
        with lock:
            pass

    return locked


unshippable.add(step(name="locked")(make_locked()))
"""

PKG_INIT = """
from flowkit import Flow

from .steps import answer

flow = Flow("pkg", steps=[answer])
"""

PKG_STEPS = """
from flowkit import step

from .util import forty_two


@step()
def answer() -> int:
    print("package file:", __file__)
    return forty_two()
"""

PKG_UTIL = """
def forty_two() -> int:
    return 42
"""

WORKFLOW = """
name: scripts
tasks:
  prepare:
    script: ./scripts/prepare.py
  report:
    command: ["sh", "scripts/report.sh"]
    depends_on: [prepare]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    proj = tmp_path_factory.mktemp("project")
    (proj / "helpers.py").write_text(HELPERS)
    (proj / "pipe.py").write_text(PIPE)
    pkg = proj / "pkgflow"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PKG_INIT)
    (pkg / "steps.py").write_text(PKG_STEPS)
    (pkg / "util.py").write_text(PKG_UTIL)
    wf = proj / "wf"
    (wf / "scripts").mkdir(parents=True)
    (wf / "flow.yaml").write_text(WORKFLOW)
    (wf / "data.txt").write_text("data shipped with the scripts\n")
    (wf / "scripts" / "prepare.py").write_text(
        "import os\nprint('prepare in', os.getcwd())\nprint('script', os.path.abspath(__file__))\n"
    )
    (wf / "scripts" / "report.sh").write_text("cat data.txt\n")
    return proj


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start_scheduler()
        c.start_worker("w1")
        c.start_worker("w2")
        c.wait_for_workers(2)
        yield c
    finally:
        c.stop()


def flowkit(
    cwd: Path, *args: str, timeout: float = 120, check: int | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "flowkit", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def journal(state: Path) -> list[dict[str, object]]:
    (path,) = state.rglob("journal.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def done(state: Path) -> dict[str, dict[str, object]]:
    return {str(r["step"]): r for r in journal(state) if r.get("ev") == "done" and "start" in r}


def report(state: Path) -> dict[str, object]:
    (path,) = state.rglob("report.json")
    return dict(json.loads(path.read_text()))


def test_module_helpers_and_factory_steps_are_shipped_and_logs_come_back(
    project: Path, cluster: Cluster, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    run = ["run", "pipe:demo", "--executor", "dask", "--address", cluster.address]
    proc = flowkit(project, *run, "--state-dir", str(state), check=0)
    assert f"running on the Dask cluster at {cluster.address}; dashboard: http://127.0.0.1:" in (
        proc.stderr
    )
    steps = done(state)
    assert set(steps) == {"source", "double", "plus_one"}
    workers = {str(s["worker"]) for s in steps.values()}
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers)  # a worker's address
    assert float(steps["double"]["cpu"]) >= 0.15  # type: ignore[arg-type]
    rep = report(state)
    assert rep["cluster"]["address"] == cluster.address  # type: ignore[index]
    assert str(rep["cluster"]["dashboard"]).startswith("http://127.0.0.1:")  # type: ignore[index]

    logs = flowkit(project, "logs", "pipe:demo", "source", "--state-dir", str(state), check=0)
    assert "hello from source" in logs.stdout
    logs = flowkit(project, "logs", "pipe:demo", "double", "--state-dir", str(state), check=0)
    assert "doubling 21" in logs.stdout
    # the module the worker ran is the shipped copy in the worker's folder, not the project's
    shipped = logs.stdout.split("module file: ")[1].split()[0]
    assert shipped.startswith(str(cluster.home)) and "flowkit-code-" in shipped
    logs = flowkit(project, "logs", "pipe:demo", "plus_one", "--state-dir", str(state), check=0)
    assert "adder made by a factory, n = 1" in logs.stdout
    # nothing was left on the workers' side
    assert not list(cluster.home.rglob("*.log.*")) and not list(cluster.home.rglob("logs"))

    again = flowkit(project, *run, "--state-dir", str(state), check=0)
    assert "3 cached" in again.stdout


def test_a_package_is_shipped(project: Path, cluster: Cluster, tmp_path: Path) -> None:
    state = tmp_path / "state"
    flowkit(
        project,
        *["run", "pkgflow:flow", "--executor", "dask", "--address", cluster.address],
        *["--state-dir", str(state)],
        check=0,
    )
    logs = flowkit(project, "logs", "pkgflow:flow", "answer", "--state-dir", str(state), check=0)
    shipped = logs.stdout.split("package file: ")[1].split()[0]
    assert shipped.startswith(str(cluster.home)) and shipped.endswith("pkgflow/steps.py")


def test_a_yaml_workflows_folder_of_scripts_is_shipped(
    project: Path, cluster: Cluster, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    flowkit(
        project,
        *["run", "wf/flow.yaml", "--executor", "dask", "--address", cluster.address],
        *["--state-dir", str(state)],
        check=0,
    )
    prepared = flowkit(project, "logs", "wf/flow.yaml", "prepare", "--state-dir", str(state))
    where = prepared.stdout.split("prepare in ")[1].split()[0]
    assert where.startswith(str(cluster.home)) and "flowkit-folder-" in where
    script = prepared.stdout.split("script ")[1].split()[0]  # the worker's copy ran
    assert script.startswith(where) and script.endswith("scripts/prepare.py")
    reported = flowkit(project, "logs", "wf/flow.yaml", "report", "--state-dir", str(state))
    assert "data shipped with the scripts" in reported.stdout
    # the figures of the command the worker ran came back with its result
    steps = done(state)
    assert int(steps["prepare"]["peak_rss"]) > 100_000  # type: ignore[call-overload]
    assert str(steps["prepare"]["worker"]).startswith("tcp://127.0.0.1:")


def test_a_step_that_cannot_be_shipped_is_refused_before_the_run(
    project: Path, cluster: Cluster, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    proc = flowkit(
        project,
        *["run", "pipe:unshippable", "--executor", "dask", "--address", cluster.address],
        *["--state-dir", str(state)],
        check=2,
    )
    assert "step 'locked' cannot be sent to the dask executor's workers" in proc.stderr
    assert "lock" in proc.stderr
    assert not list(state.rglob("journal.jsonl"))


def test_an_installed_package_missing_on_the_workers_is_named(
    project: Path, cluster: Cluster, tmp_path: Path
) -> None:
    # a package installed on the client only (in a site-packages folder): not shipped
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "extlib.py").write_text("def value() -> int:\n    return 7\n")
    (tmp_path / "uses_ext.py").write_text(
        "import extlib\nfrom flowkit import Flow\n\nflow = Flow('ext')\n\n\n"
        "@flow.step()\ndef get() -> int:\n    return extlib.value()\n"
    )
    env = {**clean_env(), "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [
            *[sys.executable, "-m", "flowkit", "run", "uses_ext:flow", "--executor", "dask"],
            *["--address", cluster.address, "--state-dir", str(tmp_path / "state")],
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ModuleNotFoundError: the worker" in proc.stdout  # the console line is shortened
    detail = subprocess.run(
        [
            *[sys.executable, "-m", "flowkit", "status", "uses_ext:flow", "--step", "get"],
            *["--state-dir", str(tmp_path / "state")],
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "cannot load the step" in detail and "install 'extlib' on every worker" in detail


def test_a_killed_worker_is_survived(project: Path, cluster: Cluster, tmp_path: Path) -> None:
    state, marker = tmp_path / "state", tmp_path / "killed"
    flowkit(
        project,
        *["run", "pipe:killer", "--executor", "dask", "--address", cluster.address],
        *["--state-dir", str(state), "--param", f"marker={marker}"],
        check=0,
    )
    assert marker.exists()  # a worker really died mid-step
    steps = done(state)
    assert steps["dies_once"]["attempts"] == 1  # Dask ran it again: not a failed attempt
    assert str(steps["dies_once"]["worker"]).startswith("tcp://127.0.0.1:")
    cluster.wait_for_workers(2)  # its nanny restarts it


def test_the_worker_of_every_attempt_is_recorded(
    project: Path, cluster: Cluster, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    flowkit(
        project,
        *["run", "pipe:flaky", "--executor", "dask", "--address", cluster.address],
        *["--state-dir", str(state), "--param", f"marker={tmp_path / 'm'}"],
        check=0,
    )
    records = journal(state)
    (retry,) = [r for r in records if r.get("ev") == "retry"]
    assert retry["error"] == {"type": "ConnectionError", "message": "first attempt fails"}
    assert str(retry["worker"]).startswith("tcp://127.0.0.1:")
    assert str(done(state)["once"]["worker"]).startswith("tcp://127.0.0.1:")
    text = flowkit(
        project,
        *["logs", "pipe:flaky", "once", "--state-dir", str(state)],
        *["--param", f"marker={tmp_path / 'm'}"],
        check=0,
    )
    assert "attempt failed: ConnectionError: first attempt fails" in text.stdout
    again = flowkit(  # the journal, retry records with workers included, reads back
        project,
        *["run", "pipe:flaky", "--executor", "dask", "--address", cluster.address],
        *["--state-dir", str(state), "--param", f"marker={tmp_path / 'm'}"],
        check=0,
    )
    assert "1 cached" in again.stdout


SHARED_WORKFLOW = """
name: shared
tasks:
  write:
    command: ["sh", "-c", "mkdir -p out && echo written-by-write > out/a.txt"]
  read:
    command: ["cat", "out/a.txt"]
    depends_on: [write]
"""

SHARED_PIPE = """
from pathlib import Path

from flowkit import Flow

flow = Flow("beside")


@flow.step()
def read_beside() -> str:
    print("module file:", __file__)
    return (Path(__file__).parent / "data.csv").read_text()
"""


def test_workers_that_see_the_project_use_it_in_place(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "wf").mkdir(parents=True)
    (proj / "wf" / "flow.yaml").write_text(SHARED_WORKFLOW)
    (proj / "beside.py").write_text(SHARED_PIPE)
    (proj / "data.csv").write_text("a,b\n1,2\n")
    c = Cluster(tmp_path / "shared-cluster", copies=False)
    try:
        c.start_scheduler()
        c.start_worker("x")
        c.start_worker("y")
        c.wait_for_workers(2)
        on = ["--executor", "dask", "--address", c.address, "--state-dir", str(tmp_path / "s")]
        flowkit(proj, "run", "wf/flow.yaml", *on, check=0)
        # the file one task wrote is where the next one reads it, on whichever worker
        assert (proj / "wf" / "out" / "a.txt").read_text() == "written-by-write\n"
        read = flowkit(proj, "logs", "wf/flow.yaml", "read", "--state-dir", str(tmp_path / "s"))
        assert "written-by-write" in read.stdout
        flowkit(proj, "run", "beside:flow", *on, check=0)
        logs = flowkit(
            proj, "logs", "beside:flow", "read_beside", "--state-dir", str(tmp_path / "s")
        )
        assert f"module file: {proj / 'beside.py'}" in logs.stdout  # the project's own file
    finally:
        c.stop()


def test_scheduler_lost_mid_run_interrupts_then_waits_for_workers_then_resumes(
    project: Path, tmp_path: Path
) -> None:
    c = Cluster(tmp_path / "own-cluster")
    state = tmp_path / "state"
    counter, hold, started = tmp_path / "counter", tmp_path / "hold", tmp_path / "started"
    hold.write_text("hold")
    params = [f"counter={counter}", f"hold={hold}", f"started={started}"]
    run = ["run", "pipe:slow", "--executor", "dask", "--address", c.address]
    run += ["--state-dir", str(state)] + [a for p in params for a in ("--param", p)]
    try:
        c.start_scheduler()
        c.start_worker("only")
        c.wait_for_workers(1)
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowkit", *run],
            cwd=project,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
        c.kill_scheduler()
        t = time.monotonic()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out + err
        assert time.monotonic() - t < 30
        assert f"the cluster at {c.address} went away; run the same command to resume" in err
        assert "Traceback" not in err, err
        assert set(done(state)) == {"first"}  # journal intact: what finished is there
        assert report(state)["status"] == "interrupted"

        # back, but without workers: said after a few seconds, and the wait is bounded
        c.kill_workers()
        c.start_scheduler()
        t = time.monotonic()
        waited = flowkit(project, *run, "--cluster-wait", "4", check=2)
        assert 3.5 < time.monotonic() - t < 30
        assert f"no workers connected to the cluster at {c.address} yet" in waited.stderr
        assert f"no workers connected to the cluster at {c.address} within 4s" in waited.stderr
        assert "--cluster-wait" in waited.stderr

        c.start_worker("again")
        hold.unlink()
        resumed = flowkit(project, *run, check=0)
        assert "1 succeeded, 1 cached" in resumed.stdout
        assert counter.read_text() == "first\n"  # finished once, not again
    finally:
        c.stop()


def test_cluster_wait_must_be_positive(project: Path) -> None:
    proc = flowkit(project, "run", "pipe:demo", "--executor", "dask", "--cluster-wait", "0")
    assert proc.returncode == 2 and "cluster_wait must be a number of seconds > 0" in proc.stderr


def test_an_unreachable_scheduler_is_a_bounded_wait(project: Path, tmp_path: Path) -> None:
    from clusterprocs import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    t = time.monotonic()
    proc = flowkit(
        project,
        *["run", "pipe:demo", "--executor", "dask", "--address", address, "--cluster-wait", "2"],
        *["--state-dir", str(tmp_path)],
        check=2,
    )
    assert time.monotonic() - t < 30
    assert f"cannot reach the Dask scheduler at {address} within 2s" in proc.stderr
    assert not list(tmp_path.rglob("journal.jsonl"))


def test_the_step_span_is_current_inside_steps_on_dask_workers(
    cluster: Cluster, tmp_path: Path
) -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    import tracedflows
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from flowkit.otel import OtelListener

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    result = tracedflows.inside.run(
        state_dir=tmp_path,
        executor="dask",
        address=cluster.address,
        listeners=[OtelListener(provider)],
    )
    assert result.ok, result.summary()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for step in ("query", "fetch"):
        ctx = spans[f"step {step}"].context
        assert result[step].output == {
            "trace_id": format(ctx.trace_id, "032x"),
            "span_id": format(ctx.span_id, "016x"),
        }
    assert result.trace_id == format(spans["run traced_inside"].context.trace_id, "032x")
