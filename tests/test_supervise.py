"""The process supervisor (tools.supervise) on tiny Python children: no Kafka, no PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from tools.supervise import Backoff, ProcessSpec, Spec, Supervisor, SupervisorError, main

# A child with a health endpoint: journals "start", "healthy" (first 200) and "stop" (SIGTERM) to a
# shared file, so the order of events across processes is visible; never healthy while a file
# JOURNAL.broken-NAME exists at its start. argv: port name journal ready_after_s
HTTP_CHILD = r"""
import http.server, os, signal, sys, time
port, name, journal, ready_after = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
broken = os.path.exists(f"{journal}.broken-{name}")
def note(what):
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{what} {name}\n".encode()); os.close(fd)
def on_term(*_):
    note("stop"); os._exit(0)
signal.signal(signal.SIGTERM, on_term)
t0 = time.monotonic(); said = []
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = not broken and time.monotonic() - t0 >= ready_after
        if ok and not said:
            said.append(1); note("healthy")
        self.send_response(200 if ok else 503); self.end_headers()
    def log_message(self, *a): pass
server = http.server.HTTPServer(("127.0.0.1", port), H)
note("start")
server.serve_forever()
"""

SLEEPER = "import time\nwhile True: time.sleep(1)"
IGNORES_TERM = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)"
# exits on SIGTERM but leaves a grandchild (same process group) that ignores it
LEAVES_STRAGGLER = (
    "import subprocess, sys, time\n"
    f"subprocess.Popen([sys.executable, '-c', {IGNORES_TERM!r}])\n"
    "while True: time.sleep(1)"
)


def py(name: str, code: str, *args: str, **kw: object) -> ProcessSpec:
    return ProcessSpec(name=name, argv=[sys.executable, "-c", code, *args], **kw)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.05)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture
async def supervised() -> AsyncIterator[list[Supervisor]]:
    """Supervisors a test made; stopped afterwards whatever happened."""
    made: list[Supervisor] = []
    yield made
    for sup in made:
        await sup.stop()


async def test_a_crashing_process_is_restarted_with_exponential_backoff(supervised: list[Supervisor]) -> None:
    out = io.StringIO()
    sup = Supervisor([py("crasher", "import sys; sys.exit(3)")], backoff=Backoff(0.2, 0.8, 60.0), out=out)
    supervised.append(sup)
    await sup.start()
    await until(lambda: len(sup.exits("crasher")) >= 5, "five exits")
    exits = sup.exits("crasher")[:5]
    assert [e.exit_code for e in exits] == [3] * 5
    assert [e.backoff_s for e in exits] == [0.2, 0.4, 0.8, 0.8, 0.8]
    for before, after in itertools.pairwise(exits):
        assert after.at - before.at >= before.backoff_s  # type: ignore[operator]
    logged = [e for e in lines(out) if e["event"] == "process_exited"]
    assert logged[0]["name"] == "crasher" and logged[0]["exit_code"] == 3 and logged[0]["restart_in_s"] == 0.2
    assert len([e for e in lines(out) if e["event"] == "process_started"]) >= 5


async def test_backoff_starts_again_after_a_stable_run(supervised: list[Supervisor]) -> None:
    sup = Supervisor(
        [py("flaky", "import sys, time; time.sleep(0.6); sys.exit(1)")],
        backoff=Backoff(0.2, 5.0, 0.5),
        out=io.StringIO(),
    )
    supervised.append(sup)
    await sup.start()
    await until(lambda: len(sup.exits("flaky")) >= 3, "three exits")
    assert [e.backoff_s for e in sup.exits("flaky")[:3]] == [0.2, 0.2, 0.2]


async def test_a_killed_process_is_reported_by_signal_and_restarted(supervised: list[Supervisor]) -> None:
    out = io.StringIO()
    sup = Supervisor([py("sleeper", SLEEPER)], backoff=Backoff(0.1, 1.0, 60.0), out=out)
    supervised.append(sup)
    await sup.start()
    first = sup.pid("sleeper")
    assert first is not None
    assert sup.kill("sleeper", signal.SIGKILL) == first
    await until(lambda: sup.pid("sleeper") not in (None, first), "a new sleeper")
    [ex] = sup.exits("sleeper")
    assert (ex.exit_code, ex.signal, ex.expected, ex.backoff_s) == (None, "SIGKILL", False, 0.1)
    assert any(e["event"] == "process_exited" and e["signal"] == "SIGKILL" for e in lines(out))
    await until(lambda: dead(first), "the killed sleeper gone", 5)


async def test_roll_restarts_one_by_one_each_healthy_before_the_next(
    supervised: list[Supervisor], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    procs = []
    for name in ("a", "b", "c"):
        port = free_port()
        procs.append(
            py(
                name,
                HTTP_CHILD,
                str(port),
                name,
                str(journal),
                "0.4",
                health_url=f"http://127.0.0.1:{port}/health",
            )
        )
    sup = Supervisor(procs, grace_s=5.0, out=io.StringIO())
    supervised.append(sup)
    await sup.start()
    for name in sup.names:
        await sup.wait_healthy(name, 20)
    old = {n: sup.pid(n) for n in sup.names}
    journal.write_text("")
    steps = await sup.roll(health_timeout=20)
    assert journal.read_text().split("\n")[:-1] == [
        f"{what} {name}" for name in ("a", "b", "c") for what in ("stop", "start", "healthy")
    ]
    assert [s["name"] for s in steps] == ["a", "b", "c"]
    assert all(s["new_pid"] != old[s["name"]] for s in steps)
    assert all(e.expected and e.exit_code == 0 and e.backoff_s == 0 for e in sup.exits())


async def test_a_roll_stops_at_the_first_process_that_does_not_come_back(
    supervised: list[Supervisor], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    ports = {name: free_port() for name in ("a", "b", "c")}
    procs = [
        py(n, HTTP_CHILD, str(p), n, str(journal), "0", health_url=f"http://127.0.0.1:{p}/") for n, p in ports.items()
    ]
    sup = Supervisor(procs, grace_s=5.0, out=io.StringIO())
    supervised.append(sup)
    await sup.start()
    for name in sup.names:
        await sup.wait_healthy(name, 20)
    # b's next incarnation never turns healthy: the roll must not touch c
    Path(f"{journal}.broken-b").touch()
    c_pid = sup.pid("c")
    with pytest.raises(SupervisorError, match=r"b did not become healthy .* within 2s; last answer: HTTP 503"):
        await sup.roll(health_timeout=2)
    assert sup.pid("c") == c_pid
    assert sup.events[-1]["event"] == "roll_failed" and sup.events[-1]["name"] == "b"


async def test_stop_terminates_then_kills_stragglers(supervised: list[Supervisor]) -> None:
    out = io.StringIO()
    sup = Supervisor(
        [py("polite", SLEEPER), py("stubborn", IGNORES_TERM), py("parent", LEAVES_STRAGGLER)], grace_s=1.0, out=out
    )
    supervised.append(sup)
    await sup.start()
    pids = {n: sup.pid(n) for n in sup.names}
    await until(lambda: len(psutil.Process(pids["parent"]).children()) == 1, "the parent's child")  # type: ignore[arg-type]
    grandchild = psutil.Process(pids["parent"]).children()[0].pid  # type: ignore[arg-type]
    await asyncio.sleep(0.3)  # the children install their signal handlers
    t0 = time.monotonic()
    await sup.stop()
    assert time.monotonic() - t0 < 6.0
    everyone = [*pids.values(), grandchild]
    await until(lambda: all(dead(pid) for pid in everyone), "every process gone", 5)  # type: ignore[arg-type]
    events = {e["event"]: e for e in lines(out)}
    assert events["killed_after_grace"]["name"] == "stubborn"
    assert events["stragglers_killed"]["name"] == "parent"
    by_name = {e.name: e for e in sup.exits()}
    assert by_name["polite"].signal == "SIGTERM" and by_name["stubborn"].signal == "SIGKILL"
    assert all(e.expected and e.backoff_s is None for e in sup.exits())


async def test_the_command_rolls_on_sighup_and_drains_on_sigterm(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "processes": [
                    {"name": "one", "argv": [sys.executable, "-c", SLEEPER], "log": str(tmp_path / "one.log")},
                    {"name": "two", "argv": [sys.executable, "-c", SLEEPER], "env": {"X": "1"}},
                ],
                "grace_s": 5,
            }
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.supervise", "--spec", str(spec), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    seen: list[dict[str, object]] = []

    async def read_until(event: str, count: int = 1) -> None:
        assert proc.stdout is not None
        while sum(e["event"] == event for e in seen) < count:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line, f"the supervisor's stdout closed before {event}: {seen}"
            seen.append(json.loads(line))

    try:
        await read_until("process_started", 2)
        pids = [e["pid"] for e in seen if e["event"] == "process_started"]
        proc.send_signal(signal.SIGHUP)
        await read_until("roll_done")
        assert [e["name"] for e in seen if e["event"] == "roll_step"] == ["one", "two"]
        proc.send_signal(signal.SIGTERM)
        await read_until("stopped")
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        new_pids = [e["pid"] for e in seen if e["event"] == "process_started"][2:]
        everyone = [int(p) for p in [*pids, *new_pids]]  # type: ignore[call-overload]
        await until(lambda: all(dead(p) for p in everyone), "every child gone", 5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_a_bad_spec_is_refused_with_the_field_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"processes": [{"name": "x", "argv": []}, {"name": "x", "argv": ["true"]}]}))
    with pytest.raises(SupervisorError, match=r"processes\.0\.argv: List should have at least 1 item"):
        Spec.load(bad)
    bad.write_text(json.dumps({"processes": [{"name": "x", "argv": ["true"], "helth_url": "http://x"}]}))
    with pytest.raises(SupervisorError, match=r"processes\.0\.helth_url: Extra inputs are not permitted"):
        Spec.load(bad)
    bad.write_text(json.dumps({"processes": [{"name": "x", "argv": ["true"]}, {"name": "x", "argv": ["true"]}]}))
    assert main(["--spec", str(bad)]) == 2
    assert "repeated: x" in capsys.readouterr().err
    assert main(["--spec", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the supervisor spec" in capsys.readouterr().err


async def test_a_command_that_cannot_start_is_retried_and_logged(supervised: list[Supervisor]) -> None:
    out = io.StringIO()
    missing = str(Path(os.devnull).parent / "no-such-program-here")
    sup = Supervisor([ProcessSpec(name="ghost", argv=[missing])], backoff=Backoff(0.1, 0.2, 60.0), out=out)
    supervised.append(sup)
    await sup.start()
    await until(lambda: len(sup.exits("ghost")) >= 2, "two attempts")
    failed = [e for e in lines(out) if e["event"] == "spawn_failed"]
    assert failed and "FileNotFoundError" in str(failed[0]["error"])
    with pytest.raises(SupervisorError, match="ghost is not running"):
        sup.kill("ghost")


async def test_children_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"processes": [{"name": "one", "argv": [sys.executable, "-c", SLEEPER]}]}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.supervise", "--spec", str(spec), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        started = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert started["event"] == "process_started"
        proc.kill()
        await proc.wait()
        await until(lambda: dead(int(started["pid"])), "the orphan gone", 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
