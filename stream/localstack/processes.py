"""Starting and (carefully) stopping the stack's server processes.

Servers are detached (own session, stdin closed, output to a log file) so a stack
started by ``churnwatch stack up`` outlives the CLI process. Stopping never trusts a
bare PID: PIDs are reused, so we only signal a process whose ``/proc/<pid>/cmdline``
mentions the stack directory we started it with.
"""

from __future__ import annotations

import enum
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Log = Callable[[str], None]


class StopResult(enum.Enum):
    """Outcome of :func:`stop_process`."""

    NOT_RUNNING = "not-running"
    NOT_OURS = "not-ours"
    TERMINATED = "terminated"
    KILLED = "killed"


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a detached server with stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the shell that ran `up` must not kill it
            close_fds=True,
        )


def _reap(pid: int, timeout: float = 2.0) -> None:
    """Collect an exited child of ours that we just stopped, so no zombie lingers.

    A multi-threaded process (JVM, redis) shows state Z as soon as its main thread
    exits but is only waitable once every thread is gone, hence the short retry loop.
    Only used on pids we signalled (a Popen holding that pid then sees returncode 0).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child (its parent / init reaps it) or already reaped
        if reaped == pid or time.monotonic() >= deadline:
            return
        time.sleep(0.02)


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # Field 3 (after the parenthesised comm, which may contain spaces) is the state.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def read_cmdline(pid: int) -> list[str]:
    """The process's argv, or ``[]`` if it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def cmdline_marker(stack_dir: Path) -> str:
    """Substring every process of a stack carries in its argv.

    The trailing separator stops ``.../stacks/dev`` from matching ``.../stacks/dev2``.
    """
    return str(stack_dir.resolve()) + os.sep


def argv_matches(argv: Sequence[str], marker: str, exe: str | None = None) -> bool:
    """``marker`` is in some argument and, if given, ``argv[0]``'s basename is ``exe``.

    The ``exe`` check keeps e.g. a ``tail -f <stack dir>/kafka/broker.log`` safe.
    """
    if not argv or (exe is not None and os.path.basename(argv[0]) != exe):
        return False
    return any(marker in arg for arg in argv)


def is_ours(pid: int | None, marker: str, exe: str | None = None) -> bool:
    """True if ``pid`` is alive and its argv matches (see :func:`argv_matches`)."""
    if not pid_alive(pid):
        return False
    assert pid is not None
    return argv_matches(read_cmdline(pid), marker, exe)


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None if it is gone: a pid plus this is unique."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])  # field 22; the split starts at field 3


@dataclass(frozen=True)
class StartedProcess:
    """A process recorded when it was started, recognisable later even if its pid is reused."""

    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> StartedProcess:
        ticks = start_ticks(pid)
        if ticks is None:
            raise ProcessLookupError(pid)
        return cls(pid, ticks)

    def running(self) -> bool:
        return pid_alive(self.pid) and start_ticks(self.pid) == self.start_ticks


def stop_process(pid: int | None, marker: str, *, exe: str | None = None, timeout: float = 20.0) -> StopResult:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL, but only if the process is ours (by its argv)."""
    return _stop(pid, lambda: is_ours(pid, marker, exe), timeout)


def stop_started(process: StartedProcess, *, timeout: float = 20.0) -> StopResult:
    """:func:`stop_process` for a process recorded by its start time rather than recognised by its argv."""
    return _stop(process.pid, process.running, timeout)


def _stop(pid: int | None, ours: Callable[[], bool], timeout: float) -> StopResult:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL, each signal only if ``ours()`` still holds.

    Ownership is re-checked right before each signal to keep the pid-reuse window tiny.
    """
    if not pid_alive(pid):
        return StopResult.NOT_RUNNING
    assert pid is not None
    if not ours():
        return StopResult.NOT_OURS
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return StopResult.NOT_RUNNING
    if _wait_gone(pid, timeout):
        return StopResult.TERMINATED
    if not ours():
        return StopResult.TERMINATED
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return StopResult.TERMINATED
    _wait_gone(pid, 5.0)
    return StopResult.KILLED


def _wait_gone(pid: int, timeout: float) -> bool:
    """Poll until ``pid`` is gone (reaping it if it is our child); False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if not pid_alive(pid):
            _reap(pid)  # after the check: an exit between reap and check would leave a zombie
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def ensure_apt_tool(command: str, package: str, *, log: Log) -> str:
    """Path of ``command``; if missing, install Debian ``package`` (we run as root).

    Machines are rebuilt between sessions, so the project installs what it needs itself.
    """
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{command!r} not found; install the Debian package {package!r} (e.g. `sudo apt-get install -y {package}`)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
    ]
    for step in steps:
        log(f"[localstack] {command} missing -> running: {' '.join(step)}")
        subprocess.run(step, check=True, env=env)
    found = shutil.which(command)
    if not found:
        raise RuntimeError(f"installed {package!r} but {command!r} is still not on PATH")
    log(f"[localstack] installed {package} ({found})")
    return found


def tail(path: Path, lines: int = 40) -> str:
    """Last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log file at {path})"
    return "\n".join(text.splitlines()[-lines:])
