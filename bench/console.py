"""How a benchmark run talks to the person running it: progress lines, and the error that stops a run.

Progress goes to stdout with a ``[bench]`` prefix, flushed at once, so a long phase shows it is alive
and the lines interleave in order with the report printed at the end.
"""

from __future__ import annotations


class BenchError(RuntimeError):
    """A phase could not finish (timeout, worker died); the run stops and cleans up."""


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)
