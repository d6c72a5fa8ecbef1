"""What one judgement of a customer costs: decoding their state hash, and the rules over it, per rule.

Builds realistic customer states: the demo personas of :mod:`bench.workload` (120-day backfills, the
history ``bench.replay_speed`` writes), or a kept history (``--history``, a file that
``bench.replay_speed --keep`` wrote), folded event by event through the worker's in-memory fold
(:class:`stream.windows.memory.MemoryWindows`, the fold ``churnwatch replay`` uses). Then times:

- **decode**: :func:`stream.windows.codec.state_from_hash` over the hashes the worker decodes with
  batches of ``--batch`` events (after each batch, the hash of every customer it touched, as
  ``HGETALL`` returns it: bytes, the JSON compact as ``update.lua``'s cjson writes it), in order
  (so a series unchanged since the customer's last batch may be decoded already), and cold (the
  codec's cache of decoded series emptied before each hash);
- **judge, fold states**: the judgement as the processor makes it (one
  :class:`rules.context.EvaluationContext`, :func:`rules.evaluation.findings_in` then
  :func:`rules.evaluation.next_due_in`), at every event on the state after it (``now`` = the
  watermark), as ``churnwatch replay`` judges; the fold hands unchanged series over as the same
  objects, so what a rule derived from one carries over to the next state;
- **judge, decoded states**: the same on the decoded hashes' states, as the worker judges a
  customer once per batch;
- **per rule**: each judged rule's share of a judgement of the fold states (its check, its scope
  and its next due moment, timed one by one in the processor's order, by CPU time).

Per judgement in µs, by the wall clock (``time.perf_counter``) and by CPU time
(``time.process_time``), with the CPU seconds of each timed part: the best of ``--repeat`` passes
(each judging pass on a fold of its own, so nothing derived by one pass serves the next). On a
shared machine both move by tens of percent with the neighbours' load: count instructions with
:mod:`bench.judge_instructions` to compare two versions. ``--all`` judges every rule of the set as
if enabled (the shipped set has some off); ``--digest`` prints a hash of every verdict, finding,
next check and due moment (and of every decoded state) instead of timing: the same history and
rules must give the same digest before and after an optimisation. Asserts nothing.
``python -m bench.judge_speed --help``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.console import say
from bench.workload import build_workload
from rules.base import RuleBase
from rules.context import EvaluationContext
from rules.evaluation import explain_rule, findings_in, in_scope, next_due_in
from rules.ruleset import load_rule_set
from rules.state import CustomerState
from stream.decoding import Rejection, decode_event
from stream.events import AnyEvent
from stream.replay import read_jsonl
from stream.settings import Settings
from stream.windows.codec import forget_decoded_series, state_from_hash
from stream.windows.memory import MemoryWindows

Hash = dict[bytes, bytes]


@dataclass
class Sample:
    """One judgement moment: the state after an event, or after a batch with its hash."""

    state: CustomerState
    now: datetime
    fields: Hash | None


def as_redis_hash(fields: dict[str, str]) -> Hash:
    """The fold's hash as ``HGETALL`` gives it from Redis: bytes, the JSON compact as cjson writes it."""
    out: Hash = {}
    for name, value in fields.items():
        if name == "p" or name.startswith(("i:", "f:")):
            value = json.dumps(json.loads(value), separators=(",", ":"))
        out[name.encode()] = value.encode()
    return out


def history_events(path: Path | None, events: int, seed: int, settings: Settings) -> list[AnyEvent]:
    if path is None:
        return build_workload(events, None, seed, settings.topics).events
    return read_history(path, settings)


def read_history(path: Path, settings: Settings, limit: int | None = None) -> list[AnyEvent]:
    """The valid events of a kept history (its first ``limit`` lines), in event-time order."""
    with path.open("rb") as lines:
        read = read_jsonl(itertools.islice(lines, limit), settings.topics, settings.decode_policy())
    kinds, policy = settings.topics.event_kinds, settings.decode_policy()
    decoded = []
    for timed in sorted(read.records, key=lambda r: r.at):
        record = timed.record
        event = decode_event(kinds[record.topic], record.key, record.value, now=timed.at, policy=policy)
        if not isinstance(event, Rejection):
            decoded.append(event)
    return decoded


def fold(events: Sequence[AnyEvent], settings: Settings, batch: int) -> Iterator[Sample]:
    """The state after each event, in event order (each yielded before the next event is folded);
    with ``batch``, after every ``batch`` events also the hash of each customer they touched, as the
    worker decodes (and judges) a customer once per batch, on their state after it."""
    windows = MemoryWindows(settings.window_policy())
    touched: dict[str, datetime] = {}
    for n, event in enumerate(events, start=1):
        update = windows.apply(event)
        if update.watermark is None:
            continue
        yield Sample(update.state, update.watermark, None)
        touched[event.customer_id] = update.watermark
        if batch and (n % batch == 0 or n == len(events)):
            for customer_id, watermark in touched.items():
                yield Sample(windows.read(customer_id), watermark, as_redis_hash(windows.fields(customer_id)))
            touched.clear()


def judge(rules: Sequence[RuleBase], state: CustomerState, now: datetime) -> None:
    """As ``EventProcessor._judge`` does: findings, then the next due moment, in one context."""
    ctx = EvaluationContext(state, now)
    findings_in(rules, ctx)
    next_due_in(rules, ctx)


@dataclass
class Timed:
    count: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def best(self, wall: float, cpu: float, count: int) -> None:
        if not self.count or cpu < self.cpu:
            self.wall, self.cpu, self.count = wall, cpu, count

    def us(self) -> str:
        """µs each, by the wall clock and by the process's CPU time (on a shared machine the wall clock
        also counts the time other processes had the core)."""
        if not self.count:
            return "n/a"
        return f"{self.wall / self.count * 1e6:7.1f} us each ({self.cpu / self.count * 1e6:.1f} us CPU)"


def fold_states(
    events: Sequence[AnyEvent], settings: Settings, batch: int
) -> tuple[list[tuple[CustomerState, datetime]], list[Hash]]:
    """The state after every event (with its ``now``), and the hashes of :func:`fold`'s batches."""
    states: list[tuple[CustomerState, datetime]] = []
    hashes: list[Hash] = []
    for sample in fold(events, settings, batch):
        if sample.fields is None:
            states.append((sample.state, sample.now))
        else:
            hashes.append(sample.fields)
    return states, hashes


def measure(
    events: Sequence[AnyEvent], rules: Sequence[RuleBase], settings: Settings, batch: int, repeat: int
) -> tuple[Timed, Timed, Timed, Timed, dict[str, float], int]:
    clock, cpu = time.perf_counter, time.process_time
    fold_judge = Timed()
    states, hashes = fold_states(events, settings, batch)
    for n in range(repeat):  # each pass on a fold of its own: nothing derived by the pass before
        if n:
            states = fold_states(events, settings, 0)[0]
        t0, c0 = clock(), cpu()
        for state, now in states:
            judge(rules, state, now)
        fold_judge.best(clock() - t0, cpu() - c0, len(states))
    # Per rule, on a fold of its own, by CPU time: a rule's share is a few µs, which the wall clock of
    # a shared machine blurs.
    per_rule = dict.fromkeys((r.id for r in rules), 0.0)
    states = fold_states(events, settings, 0)[0]
    for state, now in states:
        ctx = EvaluationContext(state, now)
        for rule in rules:
            c0 = cpu()
            findings_in((rule,), ctx)
            per_rule[rule.id] += cpu() - c0
        for rule in rules:
            c0 = cpu()
            next_due_in((rule,), ctx)
            per_rule[rule.id] += cpu() - c0
    ruled = len(states)
    decode, cold, decoded_judge = Timed(), Timed(), Timed()
    states: list[CustomerState] = []
    for _ in range(repeat):
        forget_decoded_series()
        t0, c0 = clock(), cpu()
        states = [state_from_hash("c", fields) for fields in hashes]  # in order: the cache as the worker's
        decode.best(clock() - t0, cpu() - c0, len(hashes))
        t0, c0 = clock(), cpu()
        for fields in hashes:
            forget_decoded_series()
            state_from_hash("c", fields)
        cold.best(clock() - t0, cpu() - c0, len(hashes))
        t0, c0 = clock(), cpu()
        for state in states:
            assert state.watermark is not None
            judge(rules, state, state.watermark)
        decoded_judge.best(clock() - t0, cpu() - c0, len(states))
    return decode, cold, fold_judge, decoded_judge, per_rule, ruled


def digest(events: Sequence[AnyEvent], rules: Sequence[RuleBase], settings: Settings, batch: int) -> dict[str, str]:
    """Hashes of everything a judgement decides, and of every decoded state, in order."""
    verdicts, decoded = hashlib.sha256(), hashlib.sha256()

    def judged(state: CustomerState, now: datetime) -> None:
        ctx = EvaluationContext(state, now)
        for rule in rules:
            e = explain_rule(rule, ctx)
            found = e.finding
            verdicts.update(repr((e.rule_id, e.in_scope, e.verdict, found and found.message)).encode())
        for rule in rules:
            verdicts.update(repr(rule.next_check(ctx) if in_scope(rule, ctx) else None).encode())
        verdicts.update(repr(findings_in(rules, ctx)).encode())
        verdicts.update(repr(next_due_in(rules, ctx)).encode())

    for sample in fold(events, settings, batch):
        if sample.fields is None:
            judged(sample.state, sample.now)
        else:
            state = state_from_hash(sample.state.customer_id, sample.fields)
            decoded.update(repr(_plain(state)).encode())
            judged(state, sample.now)
    return {"verdicts": verdicts.hexdigest(), "decoded states": decoded.hexdigest()}


def _plain(state: CustomerState) -> tuple[object, ...]:
    """A state's every value, mappings as lists of items (so their order counts too)."""
    return (
        state.customer_id, state.watermark, list(state.purchases_by_day.items()), list(state.spend_by_day.items()),
        state.first_purchase_at, state.last_purchase_at, state.lifetime_purchases, state.lifetime_purchase_days,
        state.lifetime_spend, [(k, list(v.items())) for k, v in state.interactions_by_kind.items()],
        state.last_interaction_at, list(state.feedback_by_kind.items()), state.segment,
    )  # fmt: skip


def run(options: argparse.Namespace) -> None:
    settings = Settings()
    rule_set = load_rule_set(options.rules or settings.rules_dir)
    rules = tuple(r.model_copy(update={"enabled": True}) for r in rule_set.rules) if options.all else rule_set.enabled
    events = history_events(options.history, options.events, options.seed, settings)
    customers = len({e.customer_id for e in events})
    which = f"rules {options.rules or settings.rules_dir}: {len(rules)} judged ({'all' if options.all else 'enabled'})"
    say(f"{len(events):,} events of {customers:,} customers; {which}")
    if options.digest:
        for name, value in digest(events, rules, settings, options.batch).items():
            print(f"{name:<16} {value}")
        return
    decode, cold, fold_judge, decoded_judge, per_rule, ruled = measure(
        events, rules, settings, options.batch, options.repeat
    )
    print(f"\njudge benchmark: {len(events):,} events, {customers:,} customers, {which}")
    for label, timed, note in (
        ("decode state hash", decode, "in order: series unchanged since the last batch decoded before"),
        ("decode state hash, cold", cold, "nothing decoded before"),
        ("judge, fold states", fold_judge, "as replay: every event"),
        ("judge, decoded states", decoded_judge, "as the worker: once per batch"),
    ):
        print(f"  {label:<24} {timed.count:7,}  {timed.us()}  {timed.cpu:5.2f} s CPU  ({note})")
    whole = sum(per_rule.values())
    print(
        f"  per rule, fold states ({ruled:,} judgements timed rule by rule, {whole / ruled * 1e6:.1f} us CPU in all):"
    )
    for rule_id, seconds in sorted(per_rule.items(), key=lambda item: -item[1]):
        print(f"    {rule_id:<34} {seconds / ruled * 1e6:7.1f} us CPU  {seconds / whole:6.1%}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.judge_speed", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="Events of the generated history (default 20,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history", type=Path, help="A JSON Lines history (bench.replay_speed --keep) instead")
    parser.add_argument("--rules", type=Path, help="Rule file or directory (default: CHURNWATCH_RULES_DIR)")
    parser.add_argument("--all", action="store_true", help="Judge every rule of the set, the disabled ones too")
    parser.add_argument(
        "--batch", type=int, default=100, help="Events per worker batch: the hashes decoded (default 100)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="Passes of each timing, the best kept (default 3)")
    parser.add_argument("--digest", action="store_true", help="Print hashes of every outcome instead of timing")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
