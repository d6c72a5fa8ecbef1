"""Throughput benchmark: how many events per second churnwatch processes, against its ceilings.

One run starts a private local stack (Kafka + Redis), pre-produces a realistic backlog of N events
(the demo's customer personas, a 120-day backfill, keyed by customer id) into fresh 4-partition
topics, then measures over the same events:

- ``produce``: the backlog sent with ``acks=all`` (setup cost, for context);
- ``bare aiokafka``: the consumer ceiling, an ``AIOKafkaConsumer`` that only counts and ``json.loads``;
- ``decode + validate``: the worker's ``decode_event`` (JSON + pydantic) alone, in-process, no I/O;
- ``redis apply`` / ``redis apply_batch``: the window store's Lua update alone, sequential and pipelined;
- ``processor in-process``: churnwatch's ``EventProcessor`` (decode, window update, rules, alert
  claims) on real Redis without Kafka or faust;
- ``worker end to end``: the real ``churnwatch worker`` child process reading the backlog, from
  healthy (and from its first processed event) until its ``/metrics`` count reaches N;
- ``two workers``: two worker processes in one consumer group on the same backlog, against one;
- ``live``: a caught-up worker fed at a steady rate, and the latency from an event to its alert.

After the single worker it reports the Redis memory the worker's state takes per customer. It prints
figures and never asserts on them: it is a benchmark, not a test. Run ``python -m bench.throughput --help``.

This module is the entry point: options, the order of the phases, and the stack's lifetime. The
phases live in :mod:`bench.workload`, :mod:`bench.phases`, :mod:`bench.worker_run`,
:mod:`bench.two_workers`, :mod:`bench.live` and :mod:`bench.redis_memory`; the printed report in
:mod:`bench.report`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis as redis_sync

from bench.console import say
from bench.cpu import Phase
from bench.live import live_lines, run_live
from bench.phases import client_phases, produce_backlog
from bench.redis_memory import MemoryReport, measure_memory, used_memory
from bench.report import print_report, run_context, source_revision
from bench.two_workers import run_two_workers, two_workers_lines
from bench.worker_run import WorkerRun, run_worker
from bench.workload import build_workload, on_topics, run_topics
from rules.ruleset import RuleConfigError, load_rule_set
from stream.localstack import StackInfo, running_stack
from stream.settings import Settings, Topics


@dataclass(frozen=True)
class Options:
    events: int
    customers: int | None
    partitions: int
    seed: int
    timeout: float
    py_spy: float
    phases: frozenset[str]
    live_rate: float
    live_seconds: float


PHASES = ("ceilings", "worker", "two-workers", "live")
"""``ceilings``: bare consumer, decode, Redis, in-process processor; ``worker``: one worker e2e (and the
Redis memory); ``two-workers``: two in one group (with ``worker``, for its rate); ``live``: live latency."""
BACKLOG_PHASES = frozenset(PHASES[:3])
"""The phases that read the backlog on the run's topics (so it is produced first, the ``produce`` row)."""


def _phase_list(text: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = names - set(PHASES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(PHASES)} (comma-separated), not {text!r}")
    return names | ({"worker"} if "two-workers" in names else set())


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events to pre-produce (default 50000)")
    parser.add_argument(
        "--customers", type=int, default=None, help="customers to generate (default: enough for --events)"
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900.0, help="max seconds for a consuming phase")
    parser.add_argument(
        "--py-spy",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="profile the worker with py-spy for SECONDS once it processes events (perturbs its figure)",
    )
    parser.add_argument(
        "--phases",
        type=_phase_list,
        default=frozenset(PHASES),
        help=f"comma-separated, from {', '.join(PHASES)} (default: all; two-workers runs worker too)",
    )
    parser.add_argument("--live-rate", type=float, default=2000.0, help="live phase: events/s sent (default 2000)")
    parser.add_argument("--live-seconds", type=float, default=30.0, help="live phase: seconds sent (default 30)")
    ns = parser.parse_args(argv)
    if ns.events < 1:
        parser.error("--events must be >= 1")
    if ns.live_rate <= 0 or ns.live_seconds <= 0:
        parser.error("--live-rate and --live-seconds must be > 0")
    return Options(
        ns.events, ns.customers, ns.partitions, ns.seed, ns.timeout, ns.py_spy, ns.phases, ns.live_rate, ns.live_seconds
    )


def bench_settings(info: StackInfo, run_id: str, topics: Topics, partitions: int) -> Settings:
    """The worker's settings on the run's stack and topics; ``app_id`` is also the consumer group."""
    return Settings(
        app_id=f"churnwatch-bench-{run_id}",
        kafka_bootstrap=info.kafka_bootstrap,
        redis_url=info.redis_url,
        topics=topics,
        topic_partitions=partitions,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    run_id = uuid.uuid4().hex[:8]
    topics = run_topics(run_id)
    rules_dir = Settings().rules_dir
    try:
        rule_set = load_rule_set(rules_dir)  # the worker loads the same; fail before starting anything
    except RuleConfigError as exc:
        say(f"the rule set in {rules_dir} is invalid, so the worker would refuse to start:")
        for problem in exc.problems:
            say(f"  {problem}")
        return 2
    revision = source_revision()
    out_dir = Path(tempfile.mkdtemp(prefix=f"churnwatch-bench-{run_id}-"))
    say(f"run {run_id}: generating the workload (seed {options.seed})")
    started = time.perf_counter()
    workload = build_workload(options.events, options.customers, options.seed, topics)
    say(
        f"{len(workload.messages):,} events for {workload.customers} customers "
        f"in {time.perf_counter() - started:.1f}s; outputs in {out_dir}"
    )
    selected = options.phases
    say(f"phases: {', '.join(p for p in PHASES if p in selected)}")
    n = len(workload.messages)
    phases: list[Phase] = []
    notes: list[str] = []
    sections: list[list[str]] = []
    run: WorkerRun | None = None
    memory: MemoryReport | None = None
    with running_stack(f"bench-{os.getpid()}", purge=True, log=say) as info:
        settings = bench_settings(info, run_id, topics, options.partitions)
        admin = redis_sync.Redis.from_url(info.redis_url)
        try:
            if selected & BACKLOG_PHASES:
                phases.append(asyncio.run(produce_backlog(info, settings, workload.messages)))
            if "ceilings" in selected:
                flush = admin.flushdb
                more, notes = asyncio.run(client_phases(info, settings, rule_set, workload, options.timeout, flush))
                phases += more
            if "worker" in selected:
                used_before = used_memory(admin)
                run = run_worker(
                    info,
                    topics,
                    settings.app_id,
                    n,
                    log_path=out_dir / "worker.log",
                    timeout=options.timeout,
                    profile_seconds=options.py_spy,
                )
                say("measuring Redis memory")
                memory = measure_memory(admin, used_before)
                single = Phase("churnwatch worker e2e, from 1st event", n, run.from_first, run.cpu_from_first)
                phases += [Phase("churnwatch worker e2e, from healthy", n, run.from_ready, run.cpu_from_ready), single]
            if "two-workers" in selected:
                admin.flushdb()  # the pair starts from empty windows too
                app_id = f"{settings.app_id}-pair"
                pair = run_two_workers(info, topics, app_id, n, log_dir=out_dir, timeout=options.timeout)
                phases += pair.phases()
                sections.append(two_workers_lines(pair, single.rate if run else None))
            if "live" in selected:
                admin.flushdb()
                live_topics = run_topics(f"{run_id}-live")
                live_settings = bench_settings(info, f"{run_id}-live", live_topics, options.partitions)
                live = asyncio.run(
                    run_live(
                        info,
                        live_settings,
                        on_topics(workload.messages, topics, live_topics),
                        workload.profiles,
                        rate=options.live_rate,
                        seconds=options.live_seconds,
                        seed=options.seed,
                        log_path=out_dir / "worker-live.log",
                        timeout=options.timeout,
                    )
                )
                sections.append(live_lines(live))
        finally:
            admin.close()
        kafka_version = info.kafka_version
    print_report(
        phases,
        notes,
        run,
        memory,
        workload,
        topics,
        partitions=options.partitions,
        py_spy=options.py_spy,
        context=run_context(run_id, revision, kafka_version, rule_set),
        sections=sections,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
