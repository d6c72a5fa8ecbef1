"""A churnwatch worker as a child process pointed at a local stack: for the demo, tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from stream.localstack.ports import free_ports
from stream.localstack.stack import StackInfo

READY_TIMEOUT = 90.0


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    web_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def wait_healthy(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait for ``/healthz``; raise if the worker exits or does not answer in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited with code {self.process.returncode} before it was ready")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as reply:
                if reply.status == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the worker did not answer {self.base_url}/healthz within {timeout:.0f}s")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=5) as reply:
            return str(reply.read().decode())

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM our own child (it exits within CHURNWATCH_SHUTDOWN_TIMEOUT), SIGKILL it if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_worker(
    info: StackInfo,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = ("--loglevel", "warning"),
    output: IO[bytes] | Path | None = None,
) -> WorkerProcess:
    """Start ``churnwatch worker`` on ``info``'s Kafka and Redis with a free web port.

    The child gets its own session, so a Ctrl-C in the terminal reaches only the parent, which
    stops the child by its PID; and it is told the parent's pid, so it stops itself if the parent
    dies without doing so.
    """
    (web_port,) = free_ports(1)
    child_env = {
        **os.environ,
        **info.client_env(),  # a secure stack's security settings too (passwords by its secrets dir)
        "CHURNWATCH_WEB_PORT": str(web_port),
        "CHURNWATCH_PARENT_PID": str(os.getpid()),
        **(env or {}),
    }
    sink: IO[bytes] | None = output.open("ab") if isinstance(output, Path) else output
    process = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker", *args],
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=sink,
        stderr=subprocess.STDOUT if sink is not None else None,
        start_new_session=True,
    )
    return WorkerProcess(process=process, web_port=web_port)


@contextlib.contextmanager
def running_worker(info: StackInfo, **kwargs: object) -> Iterator[WorkerProcess]:
    worker = start_worker(info, **kwargs)  # type: ignore[arg-type]
    try:
        worker.wait_healthy()
        yield worker
    finally:
        worker.stop()
