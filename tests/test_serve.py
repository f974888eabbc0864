"""``flowkit serve`` without a browser: the runs list, escaping, path confinement, the token,
cancelling, the journal and log tailers, and the command line's errors.

Pages are fetched through Starlette's test client; the event stream and cancelling use a real
server and a real flow in subprocesses. Browser tests are in ``test_serve_browser.py``.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
import serveflows
from conftest import PYTHON, TESTS, flowkit_env
from starlette.testclient import TestClient

from flowkit import Flow
from flowkit.graph import GraphShape
from flowkit.serve import create_app
from flowkit.serve.actions import CancelError, cancel_run
from flowkit.serve.catalog import Catalog, UnknownRunError
from flowkit.serve.tail import LogTail, RunTail

LIVE = f"{TESTS / 'serveflows.py'}:live"


def client(state: Path, **options: object) -> TestClient:
    return TestClient(create_app(state, **options), base_url="http://127.0.0.1")  # type: ignore[arg-type]


def run_dir(state: Path, flow: str, run: str | None = None) -> Path:
    return state / flow / (run or flow)


def params_flow(tmp_path: Path) -> Flow:
    f = Flow("daily")

    @f.step()
    def load(day: str = "mon") -> str:
        return day

    return f


def journal_has(path: Path, needle: bytes, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_bytes():
            return
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} never appeared in {path}")


# --- the runs list ------------------------------------------------------------------------------


def test_runs_list_shows_each_run_newest_first_with_status_counts_and_params(
    tmp_path: Path,
) -> None:
    state = tmp_path / "st"
    f = params_flow(tmp_path)
    f.run({"day": "tue"}, state_dir=state)
    time.sleep(0.01)
    serveflows.failing.run(state_dir=state)
    html = client(state).get("/").text
    failing_at, daily_at = html.index('data-flow="failing"'), html.index('data-flow="daily"')
    assert failing_at < daily_at  # newest first
    assert 'data-status="failed"' in html and 'data-status="succeeded"' in html
    assert "day=&#x27;tue&#x27;" in html
    assert '<span class="badge st-failed">1 failed</span>' in html
    assert f'href="/runs/daily/{f.run_id({"day": "tue"})}"' in html


def test_runs_list_filters_by_text_status_and_flow(tmp_path: Path) -> None:
    state = tmp_path / "st"
    f = params_flow(tmp_path)
    for day in ("mon", "tue", "wed"):
        f.run({"day": day}, state_dir=state)
    serveflows.failing.run(state_dir=state)
    c = client(state)
    assert c.get("/", params={"q": "wed"}).text.count('data-flow="daily"') == 1
    assert c.get("/", params={"status": "failed"}).text.count("<tr data-flow=") == 1
    assert c.get("/", params={"flow": "daily"}).text.count("<tr data-flow=") == 3
    assert "No run matches." in c.get("/", params={"q": "nothing-like-this"}).text


def test_a_folder_of_1000_runs_lists_a_page_of_50_quickly(tmp_path: Path) -> None:
    state = tmp_path / "st"
    f = params_flow(tmp_path)
    f.run({"day": "mon"}, state_dir=state)
    src = next((state / "daily").iterdir())
    snap = orjson.loads((src / "snapshot.json").read_bytes())
    for i in range(999):
        dst = state / "daily" / f"copy{i:04d}"
        shutil.copytree(src, dst)
        (dst / "snapshot.json").write_bytes(
            orjson.dumps({**snap, "run_id": f"copy{i:04d}", "started": snap["started"] + i + 1})
        )
    c = client(state)
    t = time.perf_counter()
    first = c.get("/")
    cold = time.perf_counter() - t
    t = time.perf_counter()
    again = c.get("/", params={"page": "3"})
    warm = time.perf_counter() - t
    assert first.text.count("<tr data-flow=") == 50 and "page 1 of 20" in first.text
    assert first.text.index("copy0998") < first.text.index("copy0997")  # newest first
    assert "page 3 of 20" in again.text and "copy0898" in again.text
    print(f"1,000 runs: first listing {cold:.2f}s, next {warm:.3f}s")
    assert cold < 5.0 and warm < 1.0, (cold, warm)


# --- escaping and confinement -------------------------------------------------------------------


def test_pages_escape_errors_logs_and_names_from_the_run(tmp_path: Path) -> None:
    state = tmp_path / "st"
    serveflows.failing.run(state_dir=state)
    c = client(state)
    run_page = c.get("/runs/failing/failing").text
    assert "<script>alert" not in run_page
    step_page = c.get("/runs/failing/failing/step", params={"name": "boom"}).text
    assert "<script>alert" not in step_page and "<b>loudly" not in step_page
    assert "bad &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; value" in step_page
    assert "about to fail &lt;b&gt;loudly&lt;/b&gt;" in step_page  # the log
    assert 'id="traceback"' in step_page and "ValueError" in step_page


def test_a_step_page_shows_the_users_frames_first_and_each_attempts_worker(
    tmp_path: Path,
) -> None:
    flow = Flow("parse")

    @flow.step(retries=1, backoff=0.01)
    def read() -> object:
        import json

        return json.loads("{not json")

    flow.run(state_dir=tmp_path / "st", workers=2, executor="thread")
    c = client(tmp_path / "st")
    page = c.get("/runs/parse/parse/step", params={"name": "read"}).text
    mine = page.split('<pre id="traceback">', 1)[1].split("</pre>", 1)[0]
    assert "in read" in mine and "JSONDecodeError" in mine
    assert "json/decoder.py" not in mine and "left out]" in mine
    full = page.split('<details id="full-traceback">', 1)[1]
    assert "json/decoder.py" in full.split("</details>", 1)[0]
    workers = [cell.split("</td>", 1)[0] for cell in page.split('<td class="worker">')[1:]]
    assert len(workers) == 2 and all(":flowkit_" in w for w in workers), workers  # pid:thread


@pytest.mark.parametrize(
    "url",
    [
        "/runs/..%2F..%2Fetc/passwd",
        "/runs/../../etc",
        "/runs/failing/..",
        "/runs/.hidden/failing",
        "/runs/failing/failing%2F..%2F..",
        "/runs/failing/nosuchrun",
    ],
)
def test_paths_outside_the_state_folder_are_not_found(tmp_path: Path, url: str) -> None:
    state = tmp_path / "st"
    serveflows.failing.run(state_dir=state)
    r = client(state).get(url)
    assert r.status_code == 404


def test_a_symlink_out_of_the_state_folder_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "st"
    serveflows.failing.run(state_dir=state, run_id="inside")
    outside = tmp_path / "outside" / "secret"
    shutil.copytree(state / "failing" / "inside", outside)
    (state / "failing" / "link").symlink_to(outside)
    with pytest.raises(UnknownRunError):
        Catalog(state).run_dir("failing", "link")
    assert client(state).get("/runs/failing/link").status_code == 404


def test_a_step_page_for_an_unknown_step_or_a_path_is_not_found(tmp_path: Path) -> None:
    state = tmp_path / "st"
    serveflows.failing.run(state_dir=state)
    (tmp_path / "st" / "secret.log").write_text("do not show")
    c = client(state)
    for name in ("../../secret", "nosuch"):
        r = c.get("/runs/failing/failing/step", params={"name": name})
        assert r.status_code == 404 and "do not show" not in r.text
        assert "has no step" in r.text


# --- the token and the host ---------------------------------------------------------------------


def test_every_request_needs_the_token_when_one_is_set(tmp_path: Path) -> None:
    state = tmp_path / "st"
    serveflows.failing.run(state_dir=state)
    c = client(state, token="s3cret")
    for url in ("/", "/runs/failing/failing", "/static/run.js", "/runs/failing/failing/events"):
        r = c.get(url)
        assert r.status_code == 401, url
        assert "Token required" in r.text
    assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/", headers={"X-Flowkit-Token": "s3cret"}).status_code == 200
    first = c.get("/runs/failing/failing", params={"token": "s3cret"})
    assert first.status_code == 200
    assert "flowkit_token=s3cret" in first.headers["set-cookie"]
    assert "HttpOnly" in first.headers["set-cookie"]
    assert c.get("/static/run.js").status_code == 200  # the cookie now carries it


def test_a_foreign_host_header_is_refused_on_loopback(tmp_path: Path) -> None:
    state = tmp_path / "st"
    state.mkdir()
    c = client(state)
    assert c.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert c.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    for ok in ("[::1]:8765", "[::1]", "127.0.0.1:8765", "LOCALHOST"):
        assert c.get("/", headers={"Host": ok}).status_code == 200, ok
    for bad in ("[::1].evil.example", "[::2]:8765", "::1", "localhost.evil:80", "[::1]:x", ""):
        assert c.get("/", headers={"Host": bad}).status_code == 400, bad


def test_host_name_reads_ipv6_literals() -> None:
    from flowkit.serve.guard import host_name

    assert host_name("[::1]:8765") == "::1"
    assert host_name("[::1]") == "::1"
    assert host_name("localhost:80") == "localhost"
    assert host_name("example.org") == "example.org"
    assert host_name("[::1") == ""
    assert host_name("::1") == ""


def test_pages_carry_a_content_security_policy(tmp_path: Path) -> None:
    state = tmp_path / "st"
    state.mkdir()
    r = client(state).get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"


# --- cancelling ---------------------------------------------------------------------------------


@pytest.fixture
def running_live(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """The ``live`` flow running in a subprocess, held at its first step's gate."""
    state, gate = tmp_path / "st", tmp_path / "gate"
    gate.mkdir()
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "flowkit",
            "run",
            LIVE,
            "--state-dir",
            str(state),
            "-p",
            f"gate={gate}",
            "--workers",
            "2",
            "--grace",
            "0.3",
        ],
        env=flowkit_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield state, proc
    finally:
        for name in ("first", "flaky-1", "flaky-2", "spread"):
            (gate / name).touch()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_cancel_stops_a_running_run_only_with_actions_allowed(
    tmp_path: Path, running_live: tuple[Path, subprocess.Popen[str]]
) -> None:
    state, proc = running_live
    journal = _journal(state)
    journal_has(journal, b'"start"')
    run = journal.parent
    url = f"/runs/live/{run.name}/cancel"
    assert client(state).post(url, headers={"X-Flowkit-Action": "cancel"}).status_code == 403
    allowed = client(state, allow_actions=True)
    assert allowed.post(url).status_code == 400  # a plain form post: no action header
    r = allowed.post(url, headers={"X-Flowkit-Action": "cancel"})
    assert r.status_code == 200, r.text
    assert "SIGTERM sent" in r.json()["message"]
    journal_has(journal, b'"ev":"end"')  # stopped within its grace period
    for name in ("first", "flaky-1", "flaky-2", "spread"):  # let abandoned attempts finish
        (tmp_path / "gate" / name).touch()
    assert proc.wait(timeout=30) == 130
    records = [orjson.loads(line) for line in (run / "journal.jsonl").read_bytes().splitlines()]
    assert records[-1]["ev"] == "end" and records[-1]["status"] == "interrupted"
    assert (run / "cancel.json").exists()  # the marker `flowkit cancel` leaves too
    tail = RunTail(run)
    tail.load()
    assert tail.run_json()["status"] == "cancelled"
    assert [r.status for r in Catalog(state).runs()] == ["cancelled"]
    with pytest.raises(CancelError, match="not running"):
        cancel_run(run)
    assert allowed.post(url, headers={"X-Flowkit-Action": "cancel"}).status_code == 409


# --- following a journal and a log --------------------------------------------------------------


def test_tail_reads_only_what_was_appended_and_names_the_changed_steps(tmp_path: Path) -> None:
    state = tmp_path / "st"
    f = params_flow(tmp_path)
    f.run(state_dir=state)
    src = run_dir(state, "daily")
    data = (src / "journal.jsonl").read_bytes()
    lines = data.splitlines(keepends=True)
    header, rest = lines[0], b"".join(lines[1:])
    dst = tmp_path / "copy" / "daily" / "daily"
    dst.mkdir(parents=True)
    shutil.copy(src / "graph.json", dst / "graph.json")
    (dst / "journal.jsonl").write_bytes(header)
    tail = RunTail(dst)
    tail.load()
    assert tail.offset == len(header) and tail.report().steps[0].status == "pending"
    assert tail.poll().steps == set()  # nothing appended: nothing read
    cut = len(rest) // 2
    with open(dst / "journal.jsonl", "ab") as j:
        j.write(rest[:cut])  # ends in the middle of a line
    up = tail.poll()
    assert tail.offset == len(header) + cut
    with open(dst / "journal.jsonl", "ab") as j:
        j.write(rest[cut:])
    up2 = tail.poll()
    assert "load" in up.steps | up2.steps and up2.run  # the end record came in
    assert tail.offset == len(data)
    assert tail.rows(["load"])[0]["status"] == "succeeded"
    assert tail.run_json()["status"] == "succeeded"


def test_tail_shows_the_steps_a_resume_restored_together_as_cached(tmp_path: Path) -> None:
    state = tmp_path / "st"
    f = params_flow(tmp_path)
    f.run(state_dir=state)
    tail = RunTail(run_dir(state, "daily"))
    tail.load()
    again = f.run(state_dir=state)  # everything cached: one `cached` record names all steps
    assert set(again.counts()) == {"cached"}
    up = tail.poll()
    names = [r.name for r in again.steps.values()]
    assert set(names) <= up.steps
    assert {r["status"] for r in tail.rows(names)} == {"cached"}


def test_tail_starts_over_when_the_journal_is_moved_aside(tmp_path: Path) -> None:
    state = tmp_path / "st"
    f = params_flow(tmp_path)
    f.run(state_dir=state)
    tail = RunTail(run_dir(state, "daily"))
    tail.load()
    f.run(state_dir=state, fresh=True)
    assert tail.poll().reset


def test_each_attempt_is_a_bar_with_its_outcome_and_the_wait_after_it(tmp_path: Path) -> None:
    calls = {"n": 0}
    f = Flow("retrying")

    @f.step(retries=2, backoff=0.05)
    def shaky() -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"refused #{calls['n']}")
        return 1

    f.run(state_dir=tmp_path / "st")
    tail = RunTail(run_dir(tmp_path / "st", "retrying"))
    tail.load()
    row = tail.report().steps[0]
    bars = tail.bars(row)
    assert [b["n"] for b in bars] == [1, 2, 3]
    assert [b["status"] for b in bars] == ["failed", "failed", "succeeded"]
    assert bars[0]["error"] == "ConnectionError: refused #1"
    assert bars[0]["delay"] == pytest.approx(0.05)
    for before, after in itertools.pairwise(bars):  # the wait lies between one attempt and the next
        assert before["end"] + before["delay"] <= after["start"] + 0.01
        assert before["start"] <= before["end"]


def test_log_tail_starts_at_the_end_and_returns_only_new_text(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    tail = LogTail(log, last=10)
    assert tail.read() == ""  # no file yet
    log.write_text("0123456789abcdefghij\n")
    assert tail.read() == "bcdefghij\n"  # only the last 10 bytes at first
    with open(log, "a") as f:
        f.write("next line\n")
    assert tail.read() == "next line\n"
    assert tail.read() == ""


# --- the event stream, from a real server -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(state: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [PYTHON, "-m", "flowkit", "serve", "--state-dir", str(state), "--port", "0", *extra],
        env=flowkit_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("flowkit serve: http://"), (line, proc.stderr and proc.stderr.read())
    return proc, line.split()[2]


def test_event_stream_sends_a_snapshot_then_the_rows_that_change(
    tmp_path: Path, running_live: tuple[Path, subprocess.Popen[str]]
) -> None:
    state, _ = running_live
    journal = _journal(state)
    journal_has(journal, b'"start"')
    server, url = start_server(state)
    events: list[tuple[str, Any]] = []
    try:
        with httpx.stream("GET", f"{url}runs/live/{journal.parent.name}/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, orjson.loads(line[6:])))
                    if kind == "snapshot":
                        (tmp_path / "gate" / "first").touch()
                        (tmp_path / "gate" / "spread").touch()
                    names = {s["name"] for s in events[-1][1]["steps"]}
                    if kind == "patch" and "spread[3]" in names:
                        break
    finally:
        server.terminate()
        server.communicate(timeout=10)
    kind, snapshot = events[0]
    assert kind == "snapshot"
    first = {s["name"]: s for s in snapshot["steps"]}["first"]
    assert first["status"] == "running" and len(first["bars"]) == 1
    patches = [e for k, e in events[1:] if k == "patch"]
    statuses = [s["status"] for e in patches for s in e["steps"] if s["name"] == "first"]
    assert statuses[-1] == "succeeded"
    instances = {s["name"] for e in patches for s in e["steps"] if s["parent"] == "spread"}
    assert instances == {"spread[1]", "spread[2]", "spread[3]"}  # named by value
    assert all(p["run"]["status"] == "running" for p in patches)


def _journal(state: Path) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = list(state.glob("live/*/journal.jsonl"))
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError("the live run never started")


# --- the command line ---------------------------------------------------------------------------


def serve_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "flowkit", "serve", *args],
        env=flowkit_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    (tmp_path / "st").mkdir()
    r = serve_cli("--state-dir", str(tmp_path / "st"), "--host", "0.0.0.0")
    assert r.returncode == 2
    assert "--token" in r.stderr and "FLOWKIT_SERVE_TOKEN" in r.stderr


def test_serving_a_missing_state_folder_is_refused(tmp_path: Path) -> None:
    r = serve_cli("--state-dir", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "nope" in r.stderr and "does not exist" in r.stderr


def test_a_port_in_use_is_reported_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "st").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = serve_cli("--state-dir", str(tmp_path / "st"), "--port", str(port))
    assert r.returncode == 2
    assert f"127.0.0.1:{port}" in r.stderr and "--port 0" in r.stderr


def test_a_missing_ui_extra_names_the_extra_to_install(tmp_path: Path) -> None:
    (tmp_path / "st").mkdir()
    code = (
        "import sys; sys.modules['starlette'] = None; from flowkit.cli import main; "
        f"sys.exit(main(['serve', '--state-dir', {str(tmp_path / 'st')!r}]))"
    )
    r = subprocess.run(
        [PYTHON, "-c", code], env=flowkit_env(), capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2
    assert "pip install 'flowkit[ui]'" in r.stderr


def test_the_token_can_come_from_the_environment(tmp_path: Path) -> None:
    state = tmp_path / "st"
    serveflows.failing.run(state_dir=state)
    proc = subprocess.Popen(
        [PYTHON, "-m", "flowkit", "serve", "--state-dir", str(state), "--port", "0"],
        env=flowkit_env(FLOWKIT_SERVE_TOKEN="from-env"),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[2]
        assert url.endswith("/?token=from-env")
        base = url.split("?")[0]
        assert httpx.get(base).status_code == 401
        assert httpx.get(url).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_a_killed_run_shows_as_interrupted_with_its_step_interrupted(tmp_path: Path) -> None:
    state, gate = tmp_path / "st", tmp_path / "gate"
    gate.mkdir()
    proc = subprocess.Popen(
        [PYTHON, "-m", "flowkit", "run", LIVE, "--state-dir", str(state), "-p", f"gate={gate}"],
        env=flowkit_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = _journal(state)
    journal_has(journal, b'"start"')
    catalog = Catalog(state)
    assert [r.status for r in catalog.runs()] == ["running"]
    tail = RunTail(journal.parent)
    tail.load()
    assert tail.run_json()["status"] == "running"
    proc.kill()
    proc.wait(timeout=30)
    up = tail.poll()  # nothing was appended, but its process went away
    assert up.run and "first" in up.steps
    assert tail.run_json()["status"] == "interrupted"
    first = tail.rows(["first"])[0]
    assert first["status"] == "interrupted" and first["bars"][0]["status"] == "interrupted"
    assert [r.status for r in catalog.runs()] == ["interrupted"]


def test_the_saved_graph_shape_reads_back_as_the_flow_graph(tmp_path: Path) -> None:
    graph = serveflows.live.graph()
    saved = orjson.loads(orjson.dumps(graph.shape_json()))
    assert saved == orjson.loads(orjson.dumps(graph.shape().to_json()))
    shape = GraphShape.from_json(saved)
    assert shape == graph.shape()
    assert shape.deps["flaky"] == (("first",), ())
    assert shape.tier_of("spread") == 1
    for bad in ({}, {"flow": "x", "tiers": 3}, [1, 2]):
        with pytest.raises(ValueError, match="not a graph shape"):
            GraphShape.from_json(bad)


def test_a_run_without_a_saved_graph_is_shown_as_one_tier(tmp_path: Path) -> None:
    state = tmp_path / "st"
    serveflows.failing.run(state_dir=state)
    (run_dir(state, "failing") / "graph.json").unlink()
    html = client(state).get("/runs/failing/failing").text
    assert 'data-step="boom"' in html and 'data-status="failed"' in html


def test_ctrl_c_stops_the_server_at_once_with_event_streams_open(tmp_path: Path) -> None:
    state = tmp_path / "st"
    serveflows.failing.run(state_dir=state)
    server, url = start_server(state)
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    streams = []
    for path in ("/events", "/runs/failing/failing/events"):
        s = socket.create_connection((host, int(port)))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert b"text/event-stream" in s.recv(4096)
        streams.append(s)
    t = time.monotonic()
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=10)
    assert time.monotonic() - t < 3.0
    assert server.returncode == 0 and "Traceback" not in err, err
    for s in streams:
        s.close()


def test_serve_help_lists_the_options_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    from flowkit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for option in ("--state-dir", "--host", "--port", "--token", "--allow-actions", "--open"):
        assert option in out
    assert "examples:" in out and "flowkit[ui]" in out


def test_serve_reads_the_state_folder_named_in_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.flowkit]\nstate_dir = "runs"\n')
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('configured')\n\n@flow.step()\ndef a() -> int:\n"
        "    return 1\n"
    )
    ran = subprocess.run(
        [PYTHON, "-m", "flowkit", "run", "p.py:flow"],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0 and (tmp_path / "runs" / "configured").is_dir(), ran.stderr
    proc = subprocess.Popen(
        [PYTHON, "-m", "flowkit", "serve", "--port", "0"],
        cwd=tmp_path,
        env=flowkit_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("flowkit serve: http://"), line
        page = httpx.get(line.split()[2], timeout=10).text
        assert "configured" in page
    finally:
        proc.terminate()
        proc.wait(timeout=10)
