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
  healthy (and from its first processed event) until its ``/metrics`` count reaches N.

Afterwards it reports the Redis memory the worker's state takes per customer. It prints figures and
never asserts on them: it is a benchmark, not a test. Run ``python -m bench.throughput --help``.

This module is the entry point: options, the order of the phases, and the stack's lifetime. The
phases live in :mod:`bench.workload`, :mod:`bench.phases`, :mod:`bench.worker_run` and
:mod:`bench.redis_memory`; the printed report in :mod:`bench.report`.
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
from bench.phases import client_phases
from bench.redis_memory import measure_memory, used_memory
from bench.report import print_report, run_context, source_revision
from bench.worker_run import run_worker
from bench.workload import build_workload, run_topics
from rules.ruleset import RuleConfigError, load_rule_set
from stream.localstack import running_stack
from stream.settings import Settings


@dataclass(frozen=True)
class Options:
    events: int
    customers: int | None
    partitions: int
    seed: int
    timeout: float
    py_spy: float


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
    ns = parser.parse_args(argv)
    if ns.events < 1:
        parser.error("--events must be >= 1")
    return Options(ns.events, ns.customers, ns.partitions, ns.seed, ns.timeout, ns.py_spy)


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
    with running_stack(f"bench-{os.getpid()}", purge=True, log=say) as info:
        settings = Settings(
            app_id=f"churnwatch-bench-{run_id}",
            kafka_bootstrap=info.kafka_bootstrap,
            redis_url=info.redis_url,
            topics=topics,
            topic_partitions=options.partitions,
        )
        admin = redis_sync.Redis.from_url(info.redis_url)
        try:
            phases, notes = asyncio.run(
                client_phases(info, settings, rule_set, workload, options.timeout, flush=lambda: admin.flushdb())
            )
            used_before = used_memory(admin)
            run = run_worker(
                info,
                topics,
                settings.app_id,
                len(workload.messages),
                log_path=out_dir / "worker.log",
                timeout=options.timeout,
                profile_seconds=options.py_spy,
            )
            say("measuring Redis memory")
            memory = measure_memory(admin, used_before)
        finally:
            admin.close()
        kafka_version = info.kafka_version
    n = len(workload.messages)
    phases += [
        Phase("churnwatch worker e2e, from healthy", n, run.from_ready, run.cpu_from_ready),
        Phase("churnwatch worker e2e, from 1st event", n, run.from_first, run.cpu_from_first),
    ]
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
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
