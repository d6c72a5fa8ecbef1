"""One part of :mod:`bench.judge_speed`'s work, alone, to be counted in instructions under valgrind.

On a shared machine the wall clock and even the CPU time of a judgement move by tens of percent
with the neighbours' load; the number of instructions executed does not. Run each mode under
cachegrind (without the cache simulation, about 40 times slower than native) and subtract the
``fold`` run, which does everything else (reading the history, the fold, the hashes):

    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python -m bench.judge_instructions MODE --history H --events 3000 [--all]

``fold`` only folds; ``judge`` judges the state after every event (as replay does); ``decode``
decodes each batch's hashes; ``decodejudge`` decodes and judges them (as the worker does, once per
customer and batch of ``--batch`` events). ``PYTHONHASHSEED=0`` keeps the counts repeatable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.judge_speed import fold_states, judge, read_history
from rules.ruleset import load_rule_set
from stream.settings import Settings
from stream.windows.codec import state_from_hash


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.judge_instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("fold", "judge", "decode", "decodejudge"))
    parser.add_argument("--history", type=Path, required=True, help="A JSON Lines history (bench.replay_speed --keep)")
    parser.add_argument("--events", type=int, default=3000, help="Its first N lines (default 3,000)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rules", type=Path, help="Rule file or directory (default: CHURNWATCH_RULES_DIR)")
    parser.add_argument("--all", action="store_true", help="Judge every rule of the set, the disabled ones too")
    options = parser.parse_args(argv)
    settings = Settings()
    rule_set = load_rule_set(options.rules or settings.rules_dir)
    rules = tuple(r.model_copy(update={"enabled": True}) for r in rule_set.rules) if options.all else rule_set.enabled
    events = read_history(options.history, settings, options.events)
    states, hashes = fold_states(events, settings, options.batch)
    if options.mode == "judge":
        for state, now in states:
            judge(rules, state, now)
    elif options.mode in ("decode", "decodejudge"):
        for fields in hashes:
            decoded = state_from_hash("c", fields)
            if options.mode == "decodejudge" and decoded.watermark is not None:
                judge(rules, decoded, decoded.watermark)
    print(f"{options.mode}: {len(states):,} states, {len(hashes):,} hashes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
