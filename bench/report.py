"""The benchmark's printed report: the phase table, the worker's own figures, Redis memory, the profile.

Figures only mean something next to what produced them, so the report opens with the run's context
(commit, flagged when files outside ``bench/`` differ from it; CPUs; versions; rule set) and every
table row carries the CPU that was spent elsewhere on the machine meanwhile.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.cpu import CPU_ROLES, Phase
from bench.redis_memory import MemoryReport
from bench.scrape import by_label, histogram_quantile, total
from bench.worker_run import WorkerRun
from bench.workload import BACKFILL_DAYS, Workload
from rules.ruleset import RuleSet
from stream.settings import Topics


def source_revision() -> str:
    """The checked-out commit, flagged if files outside ``bench/`` differ from it (figures depend on the code)."""
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench")
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {head}" + (" + uncommitted changes" if dirty else "")


def run_context(run_id: str, revision: str, kafka_version: str, rule_set: RuleSet) -> str:
    return (
        f"run {run_id}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {revision}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, Kafka {kafka_version}, "
        f"rule set {rule_set.version[:12]} ({len(rule_set.enabled)} enabled rules)"
    )


def format_counts(counts: dict[str, float] | Counter[str]) -> str:
    return ", ".join(f"{k} {v:,.0f}" for k, v in counts.items()) or "none"


def format_table(phases: Sequence[Phase], ceiling: Phase | None) -> list[str]:
    """One row per phase; CPU columns are seconds of user + system time during the phase. Without
    the ceiling phase (not selected), ``vs ceiling`` is n/a."""
    width = max(len(p.name) for p in phases)
    cpus = os.cpu_count() or 1
    header = (
        f"{'phase':<{width}}  {'events':>7}  {'seconds':>7}  {'events/s':>8}  {'vs ceiling':>10}  "
        f"{'cpu client':>10}  {'kafka':>5}  {'redis':>5}  {'other':>5}  {'machine busy':>12}"
    )
    lines = [header, "-" * len(header)]
    for p in phases:
        ours = sum(p.cpu.get(role, 0.0) for role in CPU_ROLES)
        machine = p.cpu.get("machine", math.nan)
        vs = f"{p.rate / ceiling.rate:>9.3f}x" if ceiling else f"{'n/a':>10}"
        lines.append(
            f"{p.name:<{width}}  {p.events:>7,}  {p.seconds:>7.2f}  {p.rate:>8,.0f}  "
            f"{vs}  {p.cpu.get('client', math.nan):>10.2f}  "
            f"{p.cpu.get('kafka', math.nan):>5.2f}  {p.cpu.get('redis', math.nan):>5.2f}  "
            f"{max(0.0, machine - ours):>5.2f}  {100 * machine / (p.seconds * cpus):>11.0f}%"
        )
    return lines


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f} ms"


def worker_lines(run: WorkerRun, inputs: Collection[str]) -> list[str]:
    s = run.samples
    name = "churnwatch_event_processing_seconds"
    count = total(s, f"{name}_count", inputs)
    inside = total(s, f"{name}_sum", inputs)
    mean = inside / count if count else None
    batches = total(s, "churnwatch_batch_processing_seconds_count")
    in_batches = total(s, "churnwatch_batch_processing_seconds_sum")
    batch_events = total(s, "churnwatch_batch_events_sum")
    return [
        f"worker startup (spawn -> /healthz 200): {run.startup_seconds:.1f}s, excluded from both worker rows; "
        f"healthy -> first event finished: {run.ready_to_first:.1f}s (group join + assignment, in 'from healthy')",
        f"time inside EventProcessor.process_batch (histogram sum): {in_batches:.2f}s = "
        f"{100 * in_batches / run.from_first:.0f}% of the worker's wall time from its 1st event, over "
        f"{batches:,.0f} batches of {batch_events / batches if batches else math.nan:,.1f} events on average; "
        f"the rest is faust/aiokafka (fetch, dispatch, commits) and waiting for CPU; bench CPU while polling "
        f"/metrics: {run.bench_cpu:.2f}s",
        f"worker CPU from its 1st event: main (event loop) thread {run.main_thread_cpu:.2f}s = "
        f"{100 * run.main_thread_cpu / run.from_first:.0f}% of one core, other threads (faust's consumer thread, "
        f"the rules file watcher, ...) {run.cpu_from_first['client'] - run.main_thread_cpu:.2f}s",
        f"worker processing latency per event (its batch's start -> windows, rules, alerts done; excludes "
        f"faust queueing): "
        f"p50 ~{_ms(histogram_quantile(s, name, inputs, 0.5))}, p99 ~{_ms(histogram_quantile(s, name, inputs, 0.99))}"
        f" (bucket-interpolated), mean {_ms(mean)}",
        f"worker outcomes: {format_counts(by_label(s, 'churnwatch_events_consumed_total', 'outcome', inputs))}; "
        f"dead-lettered: {format_counts(by_label(s, 'churnwatch_deadletters_total', 'reason', inputs))}",
        f"rule evaluations deferred (another input behind): "
        f"{format_counts(by_label(s, 'churnwatch_evaluations_deferred_total', 'waiting_for'))}; "
        f"run only after the longest wait: "
        f"{format_counts(by_label(s, 'churnwatch_evaluations_deferred_expired_total', 'waiting_for'))}; "
        f"dropped (too many waiting): {total(s, 'churnwatch_evaluations_deferred_dropped_total'):,.0f}; "
        f"rule evaluations run (all rules): {total(s, 'churnwatch_rule_evaluations_total'):,.0f}",
        f"alerts fired: {total(s, 'churnwatch_alerts_fired_total'):,.0f} "
        f"(by rule: {format_counts(by_label(s, 'churnwatch_alerts_fired_total', 'rule'))}; "
        f"by mode: {format_counts(by_label(s, 'churnwatch_alerts_fired_total', 'mode'))}); suppressed: "
        f"{format_counts(by_label(s, 'churnwatch_alerts_suppressed_total', 'reason'))}; "
        f"deliveries: {format_counts(by_label(s, 'churnwatch_alert_deliveries_total', 'outcome'))}",
    ]


def memory_lines(report: MemoryReport, workload: Workload) -> list[str]:
    sizes = report.state_bytes
    customers = len(sizes)
    if not customers:
        return ["no customer state keys found in Redis"]
    per_customer = workload.events_per_customer
    delta = report.used_after - report.used_before
    measured = sum(sizes) + report.seen_bytes + report.sent_bytes
    per_seen = report.seen_bytes / report.seen_count if report.seen_count else 0.0
    dedupe = report.dedupe_bytes
    return [
        f"customers with a state hash: {customers:,} (workload: {workload.customers:,}); events per customer: "
        f"mean {statistics.fmean(per_customer):.0f}, p50 {statistics.median(per_customer):.0f}, "
        f"max {max(per_customer)} over a {BACKFILL_DAYS}-day history",
        f"state hash (MEMORY USAGE SAMPLES 0) per customer: mean {statistics.fmean(sizes):,.0f} B, "
        f"p50 {statistics.median(sizes):,.0f} B, max {max(sizes):,} B, total {sum(sizes) / 1e6:.2f} MB; "
        f"fields mean {statistics.fmean(report.state_fields):.1f}; encodings {format_counts(report.encodings)}; "
        f"TTL (idle) {report.state_ttl / 86400:.0f} d",
        f"of which the bounded dedupe (dd + df, HSTRLEN): mean {statistics.fmean(dedupe):,.0f} B, "
        f"max {max(dedupe):,} B per customer",
        f"old dedupe ':seen:' keys (written by versions before the bounded dedupe): {report.seen_count:,}, "
        f"{report.seen_bytes / 1e6:.2f} MB total, {per_seen:.0f} B each, {report.seen_bytes / customers:,.0f} B "
        f"per customer",
        f"state + dedupe per customer (MEMORY USAGE of the state hash and of the ':seen:' keys): mean "
        f"{(sum(sizes) + report.seen_bytes) / customers:,.0f} B",
        f"alert ':sent:' markers: {report.sent_count:,} keys, {report.sent_bytes:,} B",
        f"INFO used_memory delta: {delta / 1e6:.2f} MB = {delta / customers:,.0f} B per customer "
        f"(state + seen keys + overhead; cross-check of {measured / customers:,.0f} B from MEMORY USAGE)",
    ]


def print_report(
    phases: Sequence[Phase],
    notes: Sequence[str],
    run: WorkerRun | None,
    memory: MemoryReport | None,
    workload: Workload,
    topics: Topics,
    *,
    partitions: int,
    py_spy: float,
    context: str,
    sections: Sequence[Sequence[str]] = (),
) -> None:
    """The report of the phases that ran: ``run`` and ``memory`` are None without the worker phase;
    ``sections`` are the other phases' own lines (two workers, live latency), each printed as a block."""
    kinds = Counter(topics.event_kinds[topic] for topic, _k, _v in workload.messages)
    mean_size = statistics.fmean(len(v) for _t, _k, v in workload.messages)
    ceiling = next((p for p in phases if "ceiling" in p.name), None)
    lines = [
        "",
        f"churnwatch throughput benchmark - {context}",
        f"workload: {len(workload.messages):,} events ({format_counts(kinds)}) for {workload.customers} customers, "
        f"{BACKFILL_DAYS}-day backfill, mean message {mean_size:.0f} B, {partitions} partitions per topic, "
        f"pre-produced before any consumer starts",
    ]
    if phases:
        lines += [
            "",
            *format_table(phases, ceiling),
            "",
            "ceiling = AIOKafkaConsumer (no group, from earliest) counting records and json.loads-ing each value",
            "cpu columns = user+system CPU seconds during the phase of: client (the bench process; the worker "
            "process(es) in the worker rows), kafka (the broker JVM), redis, other (everything else on the machine: "
            "other users' processes, the bench polling /metrics in the worker rows, the kernel); "
            f"machine busy = all CPU time used / (wall time x {os.cpu_count()} CPUs), from /proc/stat",
            *notes,
        ]
    if run is not None:
        lines += worker_lines(run, set(topics.events))
    for section in sections:
        lines += ["", *section]
    if memory is not None:
        lines += ["", "Redis memory after the worker run:", *memory_lines(memory, workload)]
    if py_spy > 0 and run is not None:
        lines += [
            "",
            f"py-spy on the worker ({py_spy:.0f}s from its 1st event; "
            "sampling pauses it, so the worker rows are slower):",
        ]
        lines += run.profile
    print("\n".join(lines), flush=True)
