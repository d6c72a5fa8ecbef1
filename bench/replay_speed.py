"""How fast ``churnwatch replay`` is, and where its time goes.

Writes a history of ``--events`` events to a JSON Lines file in the replay's input format (the demo's
personas, 120-day backfills: :mod:`bench.workload`, the workload of ``bench.throughput``), then, in
this one process, with the worker's settings and rules (``--rules``, default the shipped set):

- read: :func:`stream.replay.read_jsonl` over the file (the envelope, then the worker's decoder);
- replay: :meth:`stream.replay.Replay.run` (the worker's ``EventProcessor`` on the in-memory
  adapters, the clock following the events, due scans included);
- the two together: what ``churnwatch replay`` spends, writing its output aside;
- a breakdown over the first ``--breakdown`` events (default all): the processor's stages timed
  alone on the same events (decode, the window fold and its state, the rules' findings, the next
  due moment in the same context); what the processor spends beyond their sum is its own plumbing
  (claims, the retry wrapper around every store call, metrics, the lock, the evaluation queue) and
  the judgements of the due scans (not in the stages). Per event, a stage costs more as the
  customers' windows fill up (up to 150 days of day buckets), so a breakdown of the first events
  only flatters.

Prints the figures; asserts nothing. ``python -m bench.replay_speed --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.console import say
from bench.workload import build_workload
from rules.context import EvaluationContext
from rules.evaluation import findings_in, next_due_in
from rules.ruleset import RuleSet, load_rule_set
from stream.decoding import Rejection, decode_event
from stream.replay import TimedRecord, build_replay, read_jsonl
from stream.settings import Settings
from stream.windows.memory import MemoryWindows


def write_history(path: Path, events: int, seed: int, settings: Settings) -> None:
    workload = build_workload(events, None, seed, settings.topics)
    kinds = settings.topics.event_kinds
    with path.open("wb") as out:
        for topic, _, value in workload.messages:
            out.write(b'{"topic":"' + kinds[topic].encode() + b'","event":' + value + b"}\n")
    say(f"{len(workload.messages):,} events of {workload.customers:,} customers written to {path}")


async def replay_seconds(
    records: list[TimedRecord], rules: RuleSet, settings: Settings
) -> tuple[float, float, int, int]:
    """Wall and CPU seconds of the replay, its due scans and its alerts."""
    replay = build_replay(
        rules,
        topics=settings.topics,
        window_policy=settings.window_policy(),
        decode_policy=settings.decode_policy(),
        max_failures=settings.evaluation_max_failures,
    )
    started, cpu = time.perf_counter(), time.process_time()
    scans = await replay.run(records, until=None)
    return time.perf_counter() - started, time.process_time() - cpu, scans, len(replay.publisher.alerts)


def breakdown(records: list[TimedRecord], rules: RuleSet, settings: Settings) -> dict[str, float]:
    """Seconds per stage over ``records`` (in event-time order), each stage timed on its own. The
    rules' two halves share one context, as in the processor (the next due moment reuses what the
    findings derived)."""
    ordered = sorted(records, key=lambda r: r.at)
    kinds, policy = settings.topics.event_kinds, settings.decode_policy()
    windows = MemoryWindows(settings.window_policy())
    enabled = rules.enabled
    spent = dict.fromkeys(("decode", "fold (its state)", "rules: findings", "rules: next due"), 0.0)
    clock = time.perf_counter
    for timed in ordered:
        record = timed.record
        t0 = clock()
        event = decode_event(kinds[record.topic], record.key, record.value, now=timed.at, policy=policy)
        t1 = clock()
        if isinstance(event, Rejection):
            continue
        update = windows.apply(event)
        if update.watermark is None:
            continue
        ctx = EvaluationContext(update.state, update.watermark)
        t2 = clock()
        findings_in(enabled, ctx)
        t3 = clock()
        next_due_in(enabled, ctx)
        t4 = clock()
        for stage, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[stage] += seconds
    return spent


def run(events: int, seed: int, rules_dir: Path | None, sample: int, keep: Path | None) -> None:
    settings = Settings()
    rules = load_rule_set(rules_dir or settings.rules_dir)
    with tempfile.TemporaryDirectory(prefix="churnwatch-replay-bench-") as scratch:
        path = keep or Path(scratch) / "history.jsonl"
        started = time.perf_counter()
        write_history(path, events, seed, settings)
        say(f"history generated in {time.perf_counter() - started:.1f} s (setup, not counted)")
        started, cpu = time.perf_counter(), time.process_time()
        with path.open("rb") as lines:
            read = read_jsonl(lines, settings.topics, settings.decode_policy())
        read_s, read_cpu = time.perf_counter() - started, time.process_time() - cpu
    n = len(read.records)
    say(f"read {n:,} events in {read_s:.1f} s; replaying")
    replay_s, replay_cpu, scans, alerts = asyncio.run(replay_seconds(read.records, rules, settings))

    print(f"\nreplay benchmark: {n:,} events, rules {rules_dir or settings.rules_dir} ({len(rules.enabled)} enabled)")
    # CPU seconds beside the wall clock: on a shared machine the wall clock also counts other work.
    print(f"  read (envelope + decode):   {read_s:8.1f} s  {n / read_s:10,.0f} events/s  ({read_cpu:.1f} s CPU)")
    print(f"  replay (EventProcessor):    {replay_s:8.1f} s  {n / replay_s:10,.0f} events/s  ({replay_cpu:.1f} s CPU, "
          f"{n / replay_cpu:,.0f} events per CPU second)  {alerts:,} alerts, {scans:,} due scans")  # fmt: skip
    total = read_s + replay_s
    print(f"  churnwatch replay, total:   {total:8.1f} s  {n / total:10,.0f} events/s")
    if sample <= 0:
        return
    head = sorted(read.records, key=lambda r: r.at)[: sample if sample < n else n]
    spent = breakdown(head, rules, settings)
    whole = replay_s if len(head) == n else asyncio.run(replay_seconds(head, rules, settings))[0]
    which = "all" if len(head) == n else f"the first {len(head):,}"
    print(f"\n  where the time goes, {which} events: the processor {whole:.2f} s "
          f"({whole / len(head) * 1e6:,.0f} us/event)")  # fmt: skip
    for stage, seconds in [*spent.items(), ("processor plumbing (the rest)", whole - sum(spent.values()))]:
        print(f"    {stage:<32} {seconds:7.2f} s  {seconds / len(head) * 1e6:7,.0f} us/event  {seconds / whole:6.1%}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_speed", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rules", type=Path, help="Rule file or directory (default: CHURNWATCH_RULES_DIR)")
    parser.add_argument(
        "--breakdown", type=int, default=sys.maxsize, help="Events timed stage by stage (default all, 0 none)"
    )
    parser.add_argument("--keep", type=Path, help="Write the history here and keep it")
    options = parser.parse_args(argv)
    run(options.events, options.seed, options.rules, options.breakdown, options.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
