"""The Dask backend (extra ``flowkit[dask]``): a run's attempts on a ``distributed`` cluster.

With an address, flowkit connects to a running scheduler; without one it starts a local cluster
of worker processes. Either way:

* **Code is shipped.** When the run starts, the flow's modules and its workflow's folder of scripts
  are installed on every worker (and on workers that join later) as a worker plugin (see
  :mod:`flowkit.ship`); each attempt is sent as one cloudpickle payload, so steps made by factory
  functions or defined in ``__main__`` travel by value.
* **State stays on the client.** An attempt's captured output comes back with its result and is
  appended to the step's log in the client's state folder; the worker that ran it (its address)
  is recorded in the journal with its CPU time and peak memory.
* **Losing the cluster interrupts the run.** If the scheduler goes away, every attempt in flight
  ends with :class:`ClusterLostError`; the engine stops the run as ``interrupted`` (exit 130) with
  the journal intact, so running the same command against the cluster, once it is back, resumes.
  A worker that dies is survived: Dask runs its attempt again on another worker.
* **Every wait is bounded.** Reaching the scheduler and waiting for a first worker both take at
  most ``cluster_wait`` seconds; after a few seconds without workers, the wait is announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import Any

import cloudpickle
from distributed import Client, LocalCluster, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from .errors import ExecutorUnavailableError, RunStoppingError
from .remote import portable
from .ship import Bundle, code_bundle, folder_bundles, in_place, unpack

__all__ = ["ClusterLostError", "ClusterUnavailableError", "DaskExecutor"]

log = logging.getLogger("flowkit")

#: Seconds without any worker before flowkit says it is waiting for one.
ANNOUNCE_AFTER = 3.0


class ClusterUnavailableError(ExecutorUnavailableError):
    """The scheduler cannot be reached, or no worker joined it, within ``cluster_wait``."""


class ClusterLostError(RunStoppingError):
    """The connection to the scheduler was lost while an attempt was in flight."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(
            f"the cluster at {address} went away; run the same command to resume",
            "interrupted",
        )


#: On a worker: where each installed bundle is used from (its copy, or the client's own folder
#: when this worker sees the same files there).
_WHERE: dict[str, str] = {}


class _Install(WorkerPlugin):
    """Installs shipped bundles on a worker: in place when it sees the same files at the same
    paths as the client, else unpacked into the worker's folder. Code goes first on
    ``sys.path``, and the modules it holds are imported afresh (a long-lived worker may hold an
    older version)."""

    def __init__(self, bundles: list[Bundle]) -> None:
        self.bundles = bundles

    def setup(self, worker: Any) -> None:
        into = os.path.join(worker.local_directory, "flowkit-ship")
        for b in self.bundles:
            here = in_place(b)
            path = (b.source or "") if here else unpack(b, into)
            _WHERE[b.name] = path
            if not b.modules:
                continue
            for entry in reversed(b.bases() if here else [path]):
                if entry in sys.path:
                    sys.path.remove(entry)
                sys.path.insert(0, entry)
            for name in list(sys.modules):
                if name.partition(".")[0] in b.modules:
                    del sys.modules[name]
        import importlib

        importlib.invalidate_caches()


def _shipped_folder(fn: Any) -> str | None:
    """The folder a step's callable needs a copy of on the workers (a workflow task's folder:
    its ``shipped_folder()``; the task's ``relocated(folder)`` then runs from the copy)."""
    get = getattr(fn, "shipped_folder", None)
    folder = get() if callable(get) else None
    return folder if isinstance(folder, str) and folder else None


def _relocate(fn: Any, folders: dict[str, str], worker: Any) -> Any:
    """A workflow task, moved to the worker's copy of its folder (unless used in place)."""
    folder = _shipped_folder(fn) if folders else None
    if folder is None:
        return fn
    for source, name in folders.items():
        if folder == source or folder.startswith(source + os.sep):
            here = _WHERE.get(name) or os.path.join(worker.local_directory, "flowkit-ship", name)
            return fn if here == source else fn.relocated(here + folder[len(source) :])
    return fn


def _read_and_remove(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
    except OSError:
        return None
    return data or None


def run_remote(payload: bytes) -> tuple[tuple[Any, ...], bytes | None]:
    """On a worker: run one attempt sent by :class:`DaskExecutor`; returns its invocation and
    its captured output. A failure carries the output and the worker on the exception."""
    worker = get_worker()
    try:
        fn, args, folders = pickle.loads(payload)
    except ImportError as exc:
        what = getattr(exc, "name", None) or str(exc)
        raise ModuleNotFoundError(
            f"the worker {worker.address} cannot load the step: {type(exc).__name__}: {exc}. "
            f"flowkit ships the flow's own modules, not installed packages: install {what!r} "
            "on every worker (in the same environment as `dask worker`)"
        ) from None
    args = list(args)
    args[0] = _relocate(args[0], folders, worker)
    log_path = None
    if args[3] is not None:
        fd, log_path = tempfile.mkstemp(prefix="flowkit-", suffix=".log")
        os.close(fd)
        args[3] = log_path
    try:
        inv = fn(*args)
    except BaseException as exc:
        standin = portable(exc)  # an exception that would not pickle back: its stand-in
        with contextlib.suppress(Exception):
            standin.flowkit_worker = worker.address  # type: ignore[attr-defined]
            standin.flowkit_log = _read_and_remove(log_path)  # type: ignore[attr-defined]
        if standin is exc:
            raise
        raise standin from None
    return (*inv[:5], worker.address, *inv[6:]), _read_and_remove(log_path)


def _append(path: str | None, data: bytes | None) -> None:
    if path is None or not data:
        return
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
    except OSError as exc:
        log.warning("could not write the log %s that came back from the cluster: %s", path, exc)


def _cut_short(record: logging.LogRecord) -> bool:
    """Drop the record of a reconnection cancelled by closing the client (the run already said
    the cluster went away)."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, asyncio.CancelledError)


def _closed_comm(record: logging.LogRecord) -> bool:
    """Drop the informational record, with its traceback, that Dask's client logs when its
    connection to the scheduler closes: the run reports a lost cluster in its own words."""
    return not (record.levelno < logging.WARNING and record.exc_info)


class _DaskFuture(Future[Any]):
    """The engine's view of one attempt on the cluster; cancelling it cancels the Dask task."""

    def __init__(self, task: Any) -> None:
        super().__init__()
        self.task = task

    def cancel(self) -> bool:
        cancelled = super().cancel()  # first: the task's end must find this future done
        with contextlib.suppress(Exception):
            self.task.cancel()
        return cancelled


class DaskExecutor(Executor):
    """Runs attempts on a Dask cluster; see the module's docstring.

    Args:
        address: the scheduler (``tcp://host:8786``); None starts a local cluster.
        workers: worker processes of the local cluster.
        cluster_wait: seconds to wait for the scheduler and for a first worker.
        attempt: the function that runs one attempt (``flowkit.executors.invoke``); its calls
            are sent as payloads whose output comes back to the client's log files.

    Raises:
        ClusterUnavailableError: the scheduler or any worker is not there within ``cluster_wait``.
    """

    def __init__(
        self,
        address: str | None,
        workers: int,
        cluster_wait: float = 60.0,
        attempt: Callable[..., Any] | None = None,
    ) -> None:
        self.attempt = attempt
        self.cluster: LocalCluster | None = None
        self._installed: set[str] = set()
        self._folders: dict[str, str] = {}
        self._lost = False
        batched = logging.getLogger("distributed.batched")
        if _closed_comm not in batched.filters:  # the run says "the cluster went away" itself
            batched.addFilter(_closed_comm)
        if address:
            self.address = address
            try:
                self.client = Client(address, timeout=cluster_wait, set_as_default=False)
            except OSError as exc:
                raise ClusterUnavailableError(
                    f"cannot reach the Dask scheduler at {address} within {cluster_wait:g}s "
                    f"({exc}). Start it with `dask scheduler`, check the address, or wait "
                    "longer with --cluster-wait SECONDS."
                ) from None
            self._wait_for_workers(cluster_wait)
        else:
            # each local worker offers its share of the machine as Dask resources, so that
            # @step(cpus=, memory=) hints place steps the same way as on a real cluster
            cpus = max(1.0, (os.cpu_count() or 1) / workers)
            memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / workers
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # a free local port: never a fixed one
                processes=True,
                resources={"CPU": cpus, "MEMORY": memory},
            )
            self.client = Client(self.cluster, set_as_default=False)
            self.address = str(self.cluster.scheduler_address)
        self.dashboard: str | None = None
        with contextlib.suppress(Exception):
            self.dashboard = self.client.dashboard_link or None
        where = f"; dashboard: {self.dashboard}" if self.dashboard else ""
        which = "the Dask cluster" if address else "a local Dask cluster"
        print(f"flowkit: running on {which} at {self.address}{where}", file=sys.stderr)

    def _wait_for_workers(self, seconds: float) -> None:
        first = min(ANNOUNCE_AFTER, seconds)
        try:
            self.client.wait_for_workers(1, timeout=first)
            return
        except TimeoutError:
            pass
        if seconds > first:
            print(
                f"flowkit: no workers connected to the cluster at {self.address} yet; waiting "
                f"up to {seconds:g}s (--cluster-wait). Start one: dask worker {self.address}",
                file=sys.stderr,
                flush=True,
            )
            with contextlib.suppress(TimeoutError):
                self.client.wait_for_workers(1, timeout=seconds - first)
                return
        self.client.close(timeout=2)
        raise ClusterUnavailableError(
            f"no workers connected to the cluster at {self.address} within {seconds:g}s. "
            f"Start some with `dask worker {self.address}`, or wait longer with "
            "--cluster-wait SECONDS."
        )

    @property
    def info(self) -> dict[str, Any]:
        """The cluster's address and dashboard, and its workers (for the run's report)."""
        out: dict[str, Any] = {"address": self.address}
        if self.dashboard:
            out["dashboard"] = self.dashboard
        with contextlib.suppress(Exception):
            out["workers"] = len(self.client.scheduler_info().get("workers", {}))
        return out

    def ship(self, functions: Iterable[Any]) -> None:
        """Install the code and folders ``functions`` need on every worker, now and later.

        Raises:
            ShippingError: something cannot be packed (missing folder, too large).
            ClusterUnavailableError: the scheduler went away meanwhile.
        """
        fns = list(functions)
        # a local cluster's workers run on this machine: its folders are there already
        local = self.cluster is not None
        bundles = [] if local else folder_bundles(filter(None, map(_shipped_folder, fns)))
        code = code_bundle(fns)
        if code is not None:
            bundles.append(code)
        self._folders = {b.source: b.name for b in bundles if b.source}
        new = [b for b in bundles if b.name not in self._installed]
        if new:
            name = "flowkit-ship-" + "-".join(b.name.rsplit("-", 1)[1] for b in new)
            try:
                self.client.register_plugin(_Install(new), name=name)
            except (OSError, TimeoutError) as exc:  # the scheduler went away meanwhile
                raise ClusterUnavailableError(
                    f"the cluster at {self.address} went away while the flow's code was being "
                    f"installed on its workers ({type(exc).__name__}: {exc}); nothing ran. "
                    "Run the same command once it is back."
                ) from None
            self._installed.update(b.name for b in new)

    def worker_resources(self) -> list[dict[str, float]]:
        """The resources each worker declares (``dask worker --resources "CPU=8,MEMORY=32e9"``)."""
        workers = self.client.scheduler_info().get("workers", {})
        return [dict(w.get("resources") or {}) for w in workers.values()]

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self.submit_with_resources({}, fn, *args)

    def submit_with_resources(
        self, resources: dict[str, float], fn: Callable[..., Any], /, *args: Any
    ) -> Future[Any]:
        """Submit ``fn(*args)`` (an attempt: ``invoke``'s arguments) to a worker that has
        ``resources`` free."""
        if fn is not self.attempt:
            task = self.client.submit(fn, *args, pure=False, resources=resources or None)
            return self._wrap(task, None)
        log_path = args[3] if len(args) > 3 else None
        try:
            payload = cloudpickle.dumps((fn, args, self._folders))
        except Exception as exc:
            done: Future[Any] = Future()
            done.set_exception(
                RuntimeError(
                    f"the attempt cannot be sent to the cluster: its arguments cannot be "
                    f"pickled ({type(exc).__name__}: {exc})"
                )
            )
            return done
        if self._lost or self.client.status not in ("running", "connecting"):
            lost: Future[Any] = Future()
            lost.set_exception(ClusterLostError(self.address))
            return lost
        task = self.client.submit(run_remote, payload, pure=False, resources=resources or None)
        return self._wrap(task, log_path)

    def _wrap(self, task: Any, log_path: str | None) -> Future[Any]:
        fut = _DaskFuture(task)

        async def cascade() -> None:
            result = await task._result(raiseit=False)
            if fut.done():
                return
            status = task.status
            if status == "finished":
                if log_path is None:
                    fut.set_result(result)
                    return
                inv, output = result
                _append(log_path, output)
                fut.set_result(inv)
            elif status == "cancelled":
                self._lost = True
                fut.set_exception(ClusterLostError(self.address))
            else:
                _, exc, tb = result
                _append(log_path, getattr(exc, "flowkit_log", None))
                with contextlib.suppress(Exception):
                    exc.flowkit_log = None
                fut.set_exception(exc.with_traceback(tb))

        self.client.loop.add_callback(cascade)  # type: ignore[union-attr]
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        # bounded: a scheduler that went away must not hold the run's end
        t = time.monotonic()
        if self._lost:  # its reconnection attempt, cut short here, would log a traceback
            quiet = logging.getLogger("distributed.client")
            if _cut_short not in quiet.filters:
                quiet.addFilter(_cut_short)
        with contextlib.suppress(Exception):
            self.client.close(timeout=5)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=max(1.0, 10 - (time.monotonic() - t)))
