"""``bin/run`` (``churnwatch demo``) leaves nothing running however it ends, and a worker stops in time.

Each test runs the real demo in a child process (its output on a pseudo-terminal or a pipe, as a
user's terminal or ``| tee`` would give it), waits until it is sending, ends it one way or another,
and checks from the outside, by pid and start time in ``/proc``, that every process it started is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.localstack import stack_down
from stream.localstack.paths import stack_dir
from stream.localstack.processes import StartedProcess

SENDING = b"sending demo customers"
STOPPED = b"stopped; nothing left running"
RUNS: list[DemoRun] = []


class DemoRun:
    """One ``churnwatch demo`` child. On a pty its output is drained all the time, as a terminal
    would; on a pipe it is read only while the test waits, so the test can close the pipe."""

    def __init__(self, name: str, *, output: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        argv = [sys.executable, "-m", "stream.cli", "demo", "--stack-name", name, "--customers", "8", "--rate", "5"]
        self.output = b""
        if output == "pty":
            self._fd, child = pty.openpty()
            self.process = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, env=env)
            os.close(child)
            threading.Thread(target=self._drain, daemon=True).start()
        else:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
            )
            assert self.process.stdout is not None
            self._fd = self.process.stdout.fileno()
            os.set_blocking(self._fd, False)
        RUNS.append(self)

    def _drain(self) -> None:
        with contextlib.suppress(OSError):  # EIO once every writer of the pty is gone
            while chunk := os.read(self._fd, 65536):
                self.output += chunk

    def read(self) -> None:
        if self._fd < 0 or os.get_blocking(self._fd):
            return  # closed by the test, or a pty that the drain thread reads
        with contextlib.suppress(OSError):  # BlockingIOError: nothing yet
            while chunk := os.read(self._fd, 65536):
                self.output += chunk

    def wait_for(self, text: bytes, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            self.read()
            assert self.process.poll() is None or text in self.output, self._report(f"exited before {text!r}")
            assert time.monotonic() < deadline, self._report(f"no {text!r} within {timeout:.0f} s")
            time.sleep(0.2)

    def started(self) -> list[tuple[str, StartedProcess]]:
        """Everything this run started, as recorded by it (stack and worker) and as seen in /proc (children)."""
        sdir = stack_dir(self.name)
        info = json.loads((sdir / "stack.json").read_text())
        found = [(label, StartedProcess.of(info[f"{label}_pid"])) for label in ("kafka", "redis")]
        found += [
            (row["label"], StartedProcess(row["pid"], row["start_ticks"]))
            for row in json.loads((sdir / "clients.json").read_text())
        ]
        found += [(f"child {pid}", StartedProcess.of(pid)) for pid in _children(self.process.pid)]
        assert {label for label, _ in found} >= {"kafka", "redis", "worker"}
        return found

    def close_output(self) -> None:
        os.close(self._fd)
        self._fd = -1

    def finish(self, timeout: float = 90) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            self.read()
            assert time.monotonic() < deadline, self._report(f"still running {timeout:.0f} s after it was stopped")
            time.sleep(0.2)
        self.read()
        return self.process.returncode

    def _report(self, what: str) -> str:
        return f"demo run {self.name}: {what}; its output:\n{self.output.decode(errors='replace')[-4000:]}"


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[-1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def assert_all_gone(started: list[tuple[str, StartedProcess]], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while running := [f"{label} (pid {p.pid})" for label, p in started if p.running()]:
        assert time.monotonic() < deadline, f"still running: {', '.join(running)}"
        time.sleep(0.2)


@pytest.fixture
def demo_name(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"pytest-{os.getpid()}-demo-{request.node.name.split('[')[-1].rstrip(']')}"[:64]
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    yield name
    for run in RUNS:  # whatever a failing test left
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
    RUNS.clear()
    stack_down(name, purge=True)


@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_stops_everything_the_run_started(stop_signal: signal.Signals, demo_name: str) -> None:
    run = DemoRun(demo_name, output="pty")
    run.wait_for(SENDING)
    started = run.started()

    run.process.send_signal(stop_signal)

    assert run.finish() == 0
    assert STOPPED in run.output
    assert_all_gone(started)
    assert not stack_dir(demo_name).exists()


def test_a_closed_output_pipe_stops_everything_the_run_started(demo_name: str) -> None:
    """``bin/run | tee demo.log`` and Ctrl-C: tee goes first, and the run must not die mid-cleanup."""
    run = DemoRun(demo_name, output="pipe")
    run.wait_for(SENDING)
    started = run.started()

    run.close_output()

    assert run.finish() == 0
    assert_all_gone(started)
    assert not stack_dir(demo_name).exists()


def test_after_a_kill_9_the_worker_stops_itself_and_the_next_run_clears_the_stale_stack(demo_name: str) -> None:
    first = DemoRun(demo_name, output="pty")
    first.wait_for(SENDING)
    started = dict(first.started())

    first.process.kill()
    first.finish()

    assert_all_gone([("worker", started["worker"])], timeout=30)  # it notices its parent is gone
    assert started["kafka"].running() and started["redis"].running()  # servers are detached by design

    second = DemoRun(demo_name, output="pty")
    second.wait_for(SENDING)
    assert_all_gone([("kafka", started["kafka"]), ("redis", started["redis"])], timeout=0)
    again = second.started()
    second.process.send_signal(signal.SIGTERM)
    assert second.finish() == 0
    assert_all_gone(again)


def test_with_the_broker_gone_the_worker_and_the_run_still_stop_within_their_bounds(demo_name: str) -> None:
    """A worker busy publishing when its broker vanishes waits for ever in faust's graceful shutdown
    (seen: still running 90 s after SIGTERM); its bound ends it, and the run's own sender too."""
    run = DemoRun(demo_name, output="pty", env={"CHURNWATCH_SHUTDOWN_TIMEOUT": "5s"})
    run.wait_for(SENDING)
    started = dict(run.started())
    time.sleep(2)  # mid-stream: alerts are being published and delivered
    os.kill(started["kafka"].pid, signal.SIGKILL)
    time.sleep(5)  # let the worker and the sender get stuck retrying it

    asked = time.monotonic()
    os.kill(started["worker"].pid, signal.SIGTERM)
    assert_all_gone([("worker", started["worker"])], timeout=30)
    worker_took = time.monotonic() - asked
    run.process.send_signal(signal.SIGTERM)

    assert run.finish(timeout=60) in (0, 1)
    assert worker_took < 5 + 5, f"the worker took {worker_took:.1f} s to exit after SIGTERM"
    assert_all_gone(list(started.items()))
