"""A process supervisor for the embedded stack, doing what Kubernetes does for a pod's container:
start every process, restart one that exits (exponential backoff, logged), drain all on SIGTERM,
and restart them one by one, each healthy before the next goes, on SIGHUP.

python -m tools.supervise --spec SPEC.json

SPEC.json: {"processes": [{"name": "routing-1", "argv": [...], "env": {...}, "log": "path",
"health_url": "http://127.0.0.1:18081/health"}], "grace_s": 25}. Only `name` and `argv` are
required; `env` is added to the supervisor's environment; without `log` a child writes to the
supervisor's stderr. Each exit, restart and roll step is one JSON line on the supervisor's stdout.
Tests drive the same `Supervisor` from Python (`start`, `stop`, `roll`, `kill`, `wait_healthy`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class SupervisorError(RuntimeError):
    """Something a person must look at; the message says what (and shows the log's tail)."""


class ProcessSpec(BaseModel):
    """One supervised process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    log: str | None = None
    health_url: str | None = None
    cwd: str | None = None


class Spec(BaseModel):
    """The supervisor's spec file."""

    model_config = ConfigDict(extra="forbid")

    processes: list[ProcessSpec] = Field(min_length=1)
    grace_s: float = Field(25.0, gt=0)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    backoff_reset_after_s: float = Field(60.0, gt=0)

    @field_validator("processes")
    @classmethod
    def _unique_names(cls, processes: list[ProcessSpec]) -> list[ProcessSpec]:
        names = [p.name for p in processes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"process names must be unique; repeated: {', '.join(dupes)}")
        return processes

    @model_validator(mode="after")
    def _backoff_order(self) -> Spec:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self

    @classmethod
    def load(cls, path: str | Path) -> Spec:
        """Read and validate a spec file; errors name the file and the field."""
        try:
            raw = json.loads(Path(path).read_text())
        except OSError as exc:
            raise SupervisorError(f"cannot read the supervisor spec {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise SupervisorError(f"{path} is not JSON: {exc}") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
            raise SupervisorError(f"{path} is not a valid supervisor spec: {problems}") from None

    def backoff(self) -> Backoff:
        return Backoff(self.backoff_initial_s, self.backoff_max_s, self.backoff_reset_after_s)


@dataclass(frozen=True)
class Backoff:
    """Delay before restart n (0-based) of a crash loop: initial * 2**n, capped; a process that
    stayed up `reset_after_s` starts a fresh loop."""

    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.initial_s * 2 ** min(attempt, 30)))


@dataclass(frozen=True)
class Exit:
    """One exit of a supervised process, as logged."""

    name: str
    pid: int
    at: float  # time.monotonic()
    exit_code: int | None  # None when a signal ended it
    signal: str | None
    uptime_s: float
    expected: bool  # asked for (stop, roll), not a crash
    backoff_s: float | None  # delay before the restart; None when not restarted


@dataclass
class _Managed:
    spec: ProcessSpec
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    generation: int = 0
    restarts: int = 0
    crash_streak: int = 0
    restart_now: bool = False  # the next exit is a roll's: restart at once
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    exits: list[Exit] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class Supervisor:
    """Runs `processes` in this event loop, restarting those that exit, until `stop()`."""

    def __init__(
        self,
        processes: Iterable[ProcessSpec],
        *,
        grace_s: float = 25.0,
        backoff: Backoff | None = None,
        out: IO[str] | None = None,
    ) -> None:
        self.grace_s = grace_s
        self.backoff = backoff or Backoff()
        self.out = out if out is not None else sys.stdout
        self._procs: dict[str, _Managed] = {}
        for spec in processes:
            if spec.name in self._procs:
                raise SupervisorError(f"two processes are named {spec.name!r}; names must be unique")
            self._procs[spec.name] = _Managed(spec)
        self._stopping = False
        self._roll_lock = asyncio.Lock()
        self.events: list[dict[str, Any]] = []

    @classmethod
    def from_spec(cls, spec: Spec, out: IO[str] | None = None) -> Supervisor:
        return cls(spec.processes, grace_s=spec.grace_s, backoff=spec.backoff(), out=out)

    # --- what tests and the command line call ---------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._procs)

    def pid(self, name: str) -> int | None:
        m = self._get(name)
        return m.proc.pid if m.running and m.proc else None

    def exits(self, name: str | None = None) -> list[Exit]:
        """Every exit so far (of one process, or of all in order)."""
        if name is not None:
            return list(self._get(name).exits)
        return sorted((e for m in self._procs.values() for e in m.exits), key=lambda e: e.at)

    def restarts(self, name: str) -> int:
        return self._get(name).restarts

    async def start(self) -> None:
        """Start every process (each under its own watcher, which restarts it when it exits)."""
        if self._stopping:
            raise SupervisorError("this supervisor was stopped; make a new one")
        for m in self._procs.values():
            if m.task is None:
                m.task = asyncio.create_task(self._watch(m), name=f"supervise:{m.spec.name}")
        for m in self._procs.values():
            await self._wait_generation(m, 0)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to the process (and its process group), as a crash or an operator would;
        the watcher restarts it like any other exit. Returns the pid signalled."""
        m = self._get(name)
        if not m.running or m.proc is None:
            raise SupervisorError(f"{name} is not running (it may be waiting to restart)")
        _signal_group(m.proc.pid, sig)
        return m.proc.pid

    async def wait_healthy(self, name: str, timeout: float = 120.0) -> float:
        """Until the process answers 200 on its health_url (or merely runs, without one); returns
        the seconds waited."""
        m = self._get(name)
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = "not started"
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if m.running:
                    if m.spec.health_url is None:
                        return time.monotonic() - t0
                    try:
                        r = await client.get(m.spec.health_url)
                        if r.status_code == 200:
                            return time.monotonic() - t0
                        last = f"HTTP {r.status_code}: {r.text[:200]}"
                    except httpx.HTTPError as exc:
                        last = f"{exc.__class__.__name__}: {exc}"
                else:
                    last = "not running (exited; waiting to restart)"
                await asyncio.sleep(0.2)
        raise SupervisorError(
            f"{name} did not become healthy at {m.spec.health_url or '(no health_url)'} within "
            f"{timeout:.0f}s; last answer: {last}{_log_tail(m.spec.log)}"
        )

    async def restart(self, name: str) -> None:
        """SIGTERM one process, wait for its exit (SIGKILL after the grace period), start it again."""
        m = self._get(name)
        gen = m.generation
        if m.running and m.proc is not None:
            m.restart_now = True
            await self._terminate(m)
        else:
            m.wake.set()  # waiting out a backoff: cut it short
        await self._wait_generation(m, gen)

    async def roll(self, names: Iterable[str] | None = None, health_timeout: float = 120.0) -> list[dict[str, Any]]:
        """Restart processes one by one, each healthy again before the next goes down; stops at the
        first that does not come back healthy (raising), so a bad roll takes down one process only.
        Returns one record per step (name, old and new pid, seconds down, seconds to healthy)."""
        order = list(names) if names is not None else self.names
        for name in order:
            self._get(name)
        async with self._roll_lock:
            steps = []
            self._emit("roll_started", processes=order)
            for name in order:
                old = self.pid(name)
                t0 = time.monotonic()
                await self.restart(name)
                up = time.monotonic()
                try:
                    waited = await self.wait_healthy(name, health_timeout)
                except SupervisorError as exc:
                    self._emit("roll_failed", name=name, error=str(exc).splitlines()[0])
                    raise
                step = {
                    "name": name,
                    "old_pid": old,
                    "new_pid": self.pid(name),
                    "down_s": round(up - t0, 3),
                    "healthy_after_s": round(up - t0 + waited, 3),
                }
                self._emit("roll_step", **step)
                steps.append(step)
            self._emit("roll_done", processes=order)
            return steps

    async def stop(self) -> None:
        """SIGTERM every process, wait up to the grace period, SIGKILL what is left (including
        stragglers in a process's group), and stop watching."""
        if self._stopping:
            return
        self._stopping = True
        self._emit("stopping", grace_s=self.grace_s)
        for m in self._procs.values():
            m.wake.set()
            async with m.changed:
                m.changed.notify_all()
        running = [m for m in self._procs.values() if m.running and m.proc is not None]
        for m in running:
            assert m.proc is not None
            _signal_group(m.proc.pid, signal.SIGTERM)
        if running:
            await asyncio.wait([asyncio.create_task(m.proc.wait()) for m in running if m.proc], timeout=self.grace_s)
        for m in running:
            assert m.proc is not None
            if m.proc.returncode is None:
                self._emit("killed_after_grace", name=m.spec.name, pid=m.proc.pid, grace_s=self.grace_s)
                _signal_group(m.proc.pid, signal.SIGKILL)
                await m.proc.wait()
            elif _group_alive(m.proc.pid):
                self._emit("stragglers_killed", name=m.spec.name, pgid=m.proc.pid)
                _signal_group(m.proc.pid, signal.SIGKILL)
        tasks = [m.task for m in self._procs.values() if m.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._emit("stopped")

    # --- the watcher ---------------------------------------------------------------------------

    async def _watch(self, m: _Managed) -> None:
        while not self._stopping:
            pid = await self._spawn(m)
            if pid is None:
                returncode: int | None = None
                uptime = 0.0
            else:
                assert m.proc is not None
                if self._stopping:  # stop() began while this one was being spawned
                    await self._terminate(m)
                returncode = await m.proc.wait()
                uptime = time.monotonic() - m.started_at
            if self._stopping:
                self._record_exit(m, pid, returncode, uptime, expected=True, backoff_s=None)
                return
            expected = m.restart_now
            if expected:
                m.restart_now = False
                m.crash_streak = 0
                delay = 0.0
            else:
                if uptime >= self.backoff.reset_after_s:
                    m.crash_streak = 0
                delay = self.backoff.delay(m.crash_streak)
                m.crash_streak += 1
            self._record_exit(m, pid, returncode, uptime, expected=expected, backoff_s=delay)
            m.restarts += 1
            if delay > 0:
                m.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(m.wake.wait(), delay)

    async def _spawn(self, m: _Managed) -> int | None:
        spec = m.spec
        env = {**os.environ, **spec.env}
        logf: IO[bytes] | None = None
        try:
            if spec.log:
                Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
                logf = open(spec.log, "ab")
            m.proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf if logf is not None else sys.stderr,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,  # its own process group: signals reach its children too
                preexec_fn=_TERM_WITH_PARENT,
            )
        except OSError as exc:
            m.proc = None
            self._emit("spawn_failed", name=spec.name, argv=spec.argv, error=f"{exc.__class__.__name__}: {exc}")
            await self._bump(m)
            return None
        finally:
            if logf is not None:
                logf.close()
        m.started_at = time.monotonic()
        self._emit("process_started", name=spec.name, pid=m.proc.pid, restarts=m.restarts)
        await self._bump(m)
        return m.proc.pid

    async def _bump(self, m: _Managed) -> None:
        async with m.changed:
            m.generation += 1
            m.changed.notify_all()

    async def _wait_generation(self, m: _Managed, past: int) -> None:
        async with m.changed:
            await m.changed.wait_for(lambda: m.generation > past or self._stopping)

    async def _terminate(self, m: _Managed) -> None:
        assert m.proc is not None
        proc = m.proc
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.grace_s)
        except TimeoutError:
            self._emit("killed_after_grace", name=m.spec.name, pid=proc.pid, grace_s=self.grace_s)
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()

    def _record_exit(
        self,
        m: _Managed,
        pid: int | None,
        returncode: int | None,
        uptime: float,
        *,
        expected: bool,
        backoff_s: float | None,
    ) -> None:
        ex = Exit(
            name=m.spec.name,
            pid=pid or 0,
            at=time.monotonic(),
            exit_code=returncode if returncode is not None and returncode >= 0 else None,
            signal=_signal_name(returncode) if returncode is not None else None,
            uptime_s=round(uptime, 3),
            expected=expected,
            backoff_s=backoff_s,
        )
        m.exits.append(ex)
        if pid is None:
            if backoff_s is not None:
                self._emit("restart_scheduled", name=ex.name, restart_in_s=backoff_s)
            return
        self._emit(
            "process_exited",
            name=ex.name,
            pid=ex.pid,
            exit_code=ex.exit_code,
            signal=ex.signal,
            uptime_s=ex.uptime_s,
            expected=ex.expected,
            restart_in_s=backoff_s,
        )

    def _emit(self, event: str, **fields: Any) -> None:
        line = {"timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
        self.events.append(line)
        with contextlib.suppress(ValueError, OSError):  # a closed stdout must not stop supervision
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()

    def _get(self, name: str) -> _Managed:
        try:
            return self._procs[name]
        except KeyError:
            raise SupervisorError(f"no process named {name!r}; known: {', '.join(self._procs)}") from None


def _term_with_parent() -> Callable[[], None] | None:
    """On Linux, a child asks for SIGTERM when the supervisor dies (even by SIGKILL), so no service
    outlives it holding its port. Elsewhere None: children outlive a killed supervisor."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return set_pdeathsig


# made once in the parent: the forked child only calls it
_TERM_WITH_PARENT = _term_with_parent()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    except PermissionError:
        os.kill(pid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _log_tail(log: str | None, lines: int = 20) -> str:
    if not log or not Path(log).exists():
        return ""
    text = Path(log).read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(text)


# --- command line ------------------------------------------------------------------------------


async def serve(spec: Spec, out: IO[str] | None = None) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP rolls every process (one roll at a time)."""
    sup = Supervisor.from_spec(spec, out=out)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    rolls: set[asyncio.Task[Any]] = set()

    async def roll() -> None:
        if sup._roll_lock.locked():
            sup._emit("roll_skipped", reason="a roll is already running")
            return
        with contextlib.suppress(SupervisorError):  # roll_failed was logged; the others stay up
            await sup.roll()

    def on_hup() -> None:
        task = asyncio.create_task(roll())
        rolls.add(task)
        task.add_done_callback(rolls.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await sup.start()
        await stop.wait()
    finally:
        for task in list(rolls):
            task.cancel()
        await sup.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.supervise", description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", required=True, help="JSON file: {'processes': [{'name', 'argv', ...}]}")
    args = p.parse_args(argv)
    try:
        spec = Spec.load(args.spec)
    except SupervisorError as exc:
        print(f"[supervise] error: {exc}", file=sys.stderr, flush=True)
        return 2
    asyncio.run(serve(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
