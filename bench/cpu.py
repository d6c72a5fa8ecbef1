"""CPU accounting for benchmark phases: who spent the CPU while a phase ran, read from ``/proc``.

On a small shared machine a rate alone says little: the client, the Kafka broker and redis-server
share the cores with each other and with whatever else runs. Each phase therefore records the CPU
seconds of those three processes and of the whole machine, so the report can show how much of the
time went elsewhere (the ``other`` column).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

CpuTimes = dict[str, float]
"""CPU seconds (user + system) by process role: ``client`` (the bench, or the worker), ``kafka``, ``redis``,
and ``machine``: every CPU's busy time (``/proc/stat``), so other load on the machine shows."""
CPU_ROLES = ("client", "kafka", "redis")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Busy CPU seconds summed over all CPUs since boot (user, nice, system, irq, softirq, steal)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _stat_cpu(stat_path: Path) -> float:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a live process (all its threads) from ``/proc`` (NaN if unknown)."""
    if pid is None:
        return math.nan
    try:
        return _stat_cpu(Path(f"/proc/{pid}/stat"))
    except OSError:
        return math.nan


def main_thread_cpu(pid: int) -> float:
    """CPU time of a process's main thread alone (its task id is the pid)."""
    try:
        return _stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))
    except OSError:
        return math.nan


@dataclass(frozen=True)
class CpuProbe:
    client: int
    kafka: int | None
    redis: int | None

    def snapshot(self) -> CpuTimes:
        pids = (self.client, self.kafka, self.redis)
        times = {role: cpu_seconds(pid) for role, pid in zip(CPU_ROLES, pids, strict=True)}
        times["machine"] = machine_busy_seconds()
        return times

    def since(self, mark: CpuTimes) -> CpuTimes:
        now = self.snapshot()
        return {role: now[role] - mark[role] for role in now}


@dataclass(frozen=True)
class Phase:
    """One row of the report: what a phase processed, how long it took and the CPU spent meanwhile."""

    name: str
    events: int
    seconds: float
    cpu: CpuTimes = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.inf
