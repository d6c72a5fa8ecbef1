"""The end-to-end phase: the real ``churnwatch worker`` process reading the pre-produced backlog.

The worker is started as the demo and the integration tests start it
(:func:`stream.localstack.worker.start_worker`), on the run's own topics and consumer group, and
timed from the outside: from ``/healthz`` answering (and from its first finished event) until its
``/metrics`` count reaches N. Its CPU, and optionally a py-spy profile, are taken meanwhile.
Starting a worker (:func:`spawn_worker`) and telling how far it got are shared with the two-workers
and live phases.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from bench.console import BenchError, say
from bench.cpu import CpuProbe, CpuTimes, cpu_seconds, main_thread_cpu
from bench.pyspy import start_profiler, summarize_profile
from bench.scrape import Sample, finished, scrape, total
from stream.localstack import StackInfo
from stream.localstack.worker import WorkerProcess, start_worker
from stream.settings import Topics

POLL_SECONDS = 0.2
PROGRESS_EVERY = 10.0


@dataclass
class WorkerRun:
    startup_seconds: float
    """Spawn to ``/healthz`` answering (excluded from the throughput figures)."""
    from_ready: float
    """Healthy to every event finished (includes the consumer group join)."""
    from_first: float
    """First event seen finished (by a /metrics poll) to every event finished."""
    ready_to_first: float
    samples: list[Sample]
    cpu_from_ready: CpuTimes
    cpu_from_first: CpuTimes
    bench_cpu: float
    """CPU seconds the bench itself spent while the worker ran (polling /metrics)."""
    main_thread_cpu: float
    """CPU seconds of the worker's main (event loop) thread from its 1st event to the end."""
    profile: list[str] = field(default_factory=list)


def spawn_worker(info: StackInfo, topics: Topics, app_id: str, log_path: Path) -> WorkerProcess:
    """Start ``churnwatch worker`` on ``topics`` in consumer group ``app_id``; the caller stops it
    (:meth:`WorkerProcess.stop`, by its own PID) in a ``finally``."""
    env = {
        "CHURNWATCH_APP_ID": app_id,
        # faust's directory in the run's outputs: it creates <data dir>/<app_id>-data, not the data dir
        "CHURNWATCH_DATA_DIR": str(log_path.parent),
        **{f"CHURNWATCH_TOPIC_{name.upper()}": value for name, value in topics.model_dump().items()},
    }
    worker = start_worker(info, env=env, output=log_path)
    say(f"worker pid {worker.process.pid} starting (log: {log_path})")
    return worker


def unique_finished(samples: list[Sample], inputs: Collection[str]) -> float:
    """Events finished, less those seen again (``duplicate``: redelivered after a rebalance)."""
    duplicates = total(samples, "churnwatch_events_consumed_total", inputs, outcome="duplicate")
    return finished(samples, inputs) - duplicates


def check_alive(worker: WorkerProcess, log_path: Path) -> None:
    if worker.process.poll() is not None:
        raise BenchError(f"worker {worker.process.pid} exited with code {worker.process.returncode}; see {log_path}")


def run_worker(
    info: StackInfo,
    topics: Topics,
    app_id: str,
    expected: int,
    *,
    log_path: Path,
    timeout: float,
    profile_seconds: float,
) -> WorkerRun:
    inputs = set(topics.events)
    profile_path = log_path.with_name("py-spy.raw.txt")
    profiler: subprocess.Popen[bytes] | None = None
    launched = time.perf_counter()
    worker = spawn_worker(info, topics, app_id, log_path)
    try:
        worker.wait_healthy()
        ready = time.perf_counter()
        probe = CpuProbe(worker.process.pid, info.kafka_pid, info.redis_pid)
        at_ready, bench_at_ready = probe.snapshot(), cpu_seconds(os.getpid())
        say(f"worker healthy after {ready - launched:.1f}s; waiting for {expected:,} events")
        first: float | None = None
        at_first: CpuTimes = {}
        next_report = ready + PROGRESS_EVERY
        while True:
            samples = scrape(worker)
            done = finished(samples, inputs)
            now = time.perf_counter()
            if first is None and done > 0:
                first, at_first = now, probe.snapshot()
                main_at_first = main_thread_cpu(worker.process.pid)
                if profile_seconds > 0:
                    profiler = start_profiler(worker.process.pid, profile_seconds, profile_path)
            if done >= expected:
                cpu_from_ready, cpu_from_first = probe.since(at_ready), probe.since(at_first)
                bench_cpu = cpu_seconds(os.getpid()) - bench_at_ready
                main_cpu = main_thread_cpu(worker.process.pid) - main_at_first
                break
            check_alive(worker, log_path)
            if now - ready > timeout:
                raise BenchError(f"the worker finished {done:,.0f} of {expected:,} events in {timeout:.0f}s")
            if now >= next_report:
                say(f"worker: {done:,.0f}/{expected:,} events after {now - ready:.0f}s")
                next_report += PROGRESS_EVERY
            time.sleep(POLL_SECONDS)
        assert first is not None
        run = WorkerRun(
            startup_seconds=ready - launched,
            from_ready=now - ready,
            from_first=now - first,
            ready_to_first=first - ready,
            samples=samples,
            cpu_from_ready=cpu_from_ready,
            cpu_from_first=cpu_from_first,
            bench_cpu=bench_cpu,
            main_thread_cpu=main_cpu,
        )
        if profiler is not None:
            profiler.wait(timeout=profile_seconds + 60)
            window = min(profile_seconds, run.from_first)
            run.profile = (
                summarize_profile(profile_path, window) if profile_path.exists() else ["(py-spy wrote nothing)"]
            )
        return run
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.terminate()
            profiler.wait()
        worker.stop()
