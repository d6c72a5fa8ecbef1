"""The ``--py-spy`` option: sample the worker while it reads the backlog, and summarize where it spent time.

A rate says how fast; a profile says why. py-spy attaches to the running worker by PID, so the
worker under test is the unmodified ``churnwatch worker``. The summary ranks frames by self and
inclusive time, leaving out the event-loop and thread plumbing every sample passes through.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.console import say

PROFILE_RATE = 100
"""py-spy samples per second."""

PLUMBING_FILES = (
    "<frozen runpy>",
    "click/core.py",
    "threading.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "mode/threads.py",
    "mode/worker.py",
    "stream/cli.py",
)
"""Frames every sample passes through; left out of the inclusive ranking."""


def start_profiler(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        say("py-spy not found (pip install py-spy in the venv); not profiling")
        return None
    argv = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(PROFILE_RATE)]
    # Blocking mode (py-spy pauses the worker for each sample): --nonblocking reads half-updated stacks
    # and counted a thread entering or leaving epoll_wait as busy far too often here.
    argv += ["--format", "raw", "--nolineno", "--threads", "--output", str(output)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _frame_file(frame: str) -> str:
    return frame.rpartition(" (")[2].rstrip(")")


def _short(frame: str) -> str:
    """``fn (/long/path/pkg/module.py)`` -> ``fn (pkg/module.py)``, for readable tables."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")")
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def _package(frame: str) -> str:
    path = _frame_file(frame)
    return path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")


def summarize_profile(path: Path, window: float, top: int = 15) -> list[str]:
    """Per-thread activity and the top frames and packages of a py-spy raw (collapsed stacks) file.

    py-spy records only samples where a thread is running (not blocked in epoll, a lock or a
    sleep), so a thread's samples over ``window`` seconds x the rate is roughly its busy share.
    """
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *raw_frames = stack.split(";")
        threads[thread.partition(": ")[2] or thread] += count
        frames = [_short(f) for f in raw_frames] or ["(no Python frame)"]
        busy += count
        self_time[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            if _frame_file(frame) not in PLUMBING_FILES:
                inclusive[frame] += count
    if not busy:
        return ["(no active samples)"]
    ticks = max(1.0, window * PROFILE_RATE)
    lines = [
        f"active samples by thread over the {window:.1f}s the worker was busy (~share of wall time running): "
        + ", ".join(f"{t} {n} (~{100 * n / ticks:.0f}%)" for t, n in threads.most_common()),
        "active samples by package of the innermost frame: "
        + ", ".join(f"{pkg} {100 * n / busy:.0f}%" for pkg, n in packages.most_common(12)),
        f"top frames by self time (share of {busy} active samples):",
    ]
    lines += [f"  {100 * n / busy:5.1f}%  {frame}" for frame, n in self_time.most_common(top)]
    lines.append("top frames by inclusive time (share of active samples; event loop/thread plumbing left out):")
    lines += [f"  {100 * n / busy:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return lines
