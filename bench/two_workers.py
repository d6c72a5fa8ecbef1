"""The scale-out phase: two ``churnwatch worker`` processes in one consumer group on the same backlog.

Both are spawned at once (:func:`bench.worker_run.spawn_worker`) in a consumer group of their own,
on the backlog the single worker read, with Redis emptied first, so they do the same work from the
same empty state. The first to join takes every partition until the second's join rebalances the
group, so two figures are kept: from both healthy until every event is done (joins and the
rebalance included), and the steady part, from the first ``/metrics`` poll where *both* have
finished an event. Events redelivered by the rebalance (``duplicate``) are not counted as done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.console import BenchError, say
from bench.cpu import CpuProbe, CpuTimes, Phase, cpu_seconds
from bench.scrape import Sample, scrape, total
from bench.worker_run import POLL_SECONDS, PROGRESS_EVERY, check_alive, spawn_worker, unique_finished
from stream.localstack import StackInfo
from stream.localstack.worker import WorkerProcess
from stream.settings import Topics

WORKERS = 2


@dataclass(frozen=True)
class GroupProbe(CpuProbe):
    """A :class:`CpuProbe` whose ``client`` is several processes: the first's pid, plus ``others``."""

    others: tuple[int, ...] = ()

    def snapshot(self) -> CpuTimes:
        times = super().snapshot()
        times["client"] += sum(cpu_seconds(pid) for pid in self.others)
        return times


@dataclass(frozen=True)
class TwoWorkersRun:
    events: int
    from_ready: float
    """Both healthy to every event done (the joins and the rebalance included)."""
    cpu_from_ready: CpuTimes
    steady_events: int
    """Events done from the first poll where both workers had finished one; 0 if that never came."""
    steady_seconds: float
    cpu_steady: CpuTimes
    per_worker: list[float]
    """Events each worker finished (duplicates excluded)."""
    duplicates: float

    def phases(self) -> list[Phase]:
        rows = [Phase(f"{WORKERS} workers, one group, from healthy", self.events, self.from_ready, self.cpu_from_ready)]
        if self.steady_events:
            name = f"{WORKERS} workers, one group, both busy"
            rows.append(Phase(name, self.steady_events, self.steady_seconds, self.cpu_steady))
        return rows


def run_two_workers(
    info: StackInfo, topics: Topics, app_id: str, expected: int, *, log_dir: Path, timeout: float
) -> TwoWorkersRun:
    inputs = set(topics.events)
    logs = [log_dir / f"worker-pair-{i + 1}.log" for i in range(WORKERS)]
    workers: list[WorkerProcess] = []
    try:
        for log_path in logs:
            workers.append(spawn_worker(info, topics, app_id, log_path))
        for worker in workers:
            worker.wait_healthy()
        ready = time.perf_counter()
        pids = [w.process.pid for w in workers]
        probe = GroupProbe(pids[0], info.kafka_pid, info.redis_pid, tuple(pids[1:]))
        at_ready = probe.snapshot()
        say(f"{WORKERS} workers healthy (group {app_id}); waiting for {expected:,} events between them")
        steady: tuple[float, float, CpuTimes] | None = None  # (when, events done then, CPU then)
        next_report = ready + PROGRESS_EVERY
        while True:
            samples = [scrape(w) for w in workers]
            done = [unique_finished(s, inputs) for s in samples]
            now = time.perf_counter()
            if steady is None and all(d > 0 for d in done):
                steady = (now, sum(done), probe.snapshot())
            if sum(done) >= expected:
                cpu_from_ready = probe.since(at_ready)
                cpu_steady = probe.since(steady[2]) if steady else {}
                break
            for worker, log_path in zip(workers, logs, strict=True):
                check_alive(worker, log_path)
            if now - ready > timeout:
                raise BenchError(
                    f"{WORKERS} workers finished {sum(done):,.0f} of {expected:,} events in {timeout:.0f}s"
                )
            if now >= next_report:
                say(f"{WORKERS} workers: {' + '.join(f'{d:,.0f}' for d in done)} of {expected:,} events")
                next_report += PROGRESS_EVERY
            time.sleep(POLL_SECONDS)
    finally:
        for worker in workers:
            worker.stop()
    steady_events = int(expected - steady[1]) if steady else 0
    return TwoWorkersRun(
        events=expected,
        from_ready=now - ready,
        cpu_from_ready=cpu_from_ready,
        steady_events=steady_events,
        steady_seconds=now - steady[0] if steady else 0.0,
        cpu_steady=cpu_steady,
        per_worker=done,
        duplicates=sum(_duplicates(s, inputs) for s in samples),
    )


def _duplicates(samples: list[Sample], inputs: set[str]) -> float:
    return total(samples, "churnwatch_events_consumed_total", inputs, outcome="duplicate")


def two_workers_lines(run: TwoWorkersRun, single_rate: float | None) -> list[str]:
    """The comparison: the pair's rates against one worker's (from its 1st event) in the same run."""
    rows = run.phases()
    split = " + ".join(f"{d:,.0f}" for d in run.per_worker)
    lines = [
        f"two workers (one consumer group, {run.events:,} events, Redis emptied first): events done by each "
        f"{split}; redelivered after the rebalance (duplicate, not counted): {run.duplicates:,.0f}"
    ]
    if not run.steady_events:
        lines.append("  the second worker finished no event before the first had read everything: no 'both busy' row")
    for row in rows:
        ratio = f" = {row.rate / single_rate:.2f}x one worker's" if single_rate else ""
        lines.append(f"  {row.name}: {row.rate:,.0f} events/s{ratio}")
    if single_rate:
        lines.append(f"  one worker (e2e, from its 1st event, this run): {single_rate:,.0f} events/s")
    return lines
