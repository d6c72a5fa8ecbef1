"""``churnwatch demo``: a local stack, a worker and a demo generator, stopped together on Ctrl-C.

The worker runs as a child process in its own session, so Ctrl-C reaches only this runner, which
then stops what it started by PID, in reverse order, and takes the stack down.
"""

from __future__ import annotations

import asyncio
import os
import signal

from stream.demo import run_demo
from stream.localstack import StackInfo, stack_down, stack_up
from stream.localstack.worker import WorkerProcess, start_worker
from stream.settings import Settings


def _say(message: str) -> None:
    print(f"[churnwatch demo] {message}", flush=True)


async def _generate(info: StackInfo, *, customers: int, seed: int, rate: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_demo(
        info.kafka_bootstrap,
        Settings().topics,
        customers=customers,
        seed=seed,
        rate_per_second=rate,
        stop=stop,
        log=_say,
    )


def run_demo_session(*, customers: int, seed: int, rate: float, stack_name: str) -> int:
    """Run until Ctrl-C; return the process exit code."""
    worker: WorkerProcess | None = None
    try:
        info = stack_up(stack_name, log=_say)
        # The backfill arrives as one burst on three topics: judge each customer a few seconds
        # after their events, on all of them (see CHURNWATCH_EVALUATION_DELAY).
        worker = start_worker(
            info, env={"CHURNWATCH_EVALUATION_DELAY": os.environ.get("CHURNWATCH_EVALUATION_DELAY", "3s")}
        )
        worker.wait_healthy()
        _say(f"worker ready: metrics at {worker.base_url}/metrics")
        _say("sending demo customers; alerts appear below within a minute. Ctrl-C stops everything.")
        if os.environ.get("CHURNWATCH_SLACK_WEBHOOK_URL"):
            _say("alerts also go to the Slack webhook in CHURNWATCH_SLACK_WEBHOOK_URL")
        asyncio.run(_generate(info, customers=customers, seed=seed, rate=rate))
        return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        _say(f"error: {exc}")
        return 1
    finally:
        _say("stopping the worker and the local stack")
        if worker is not None:
            worker.stop()
        stack_down(stack_name, purge=True, log=_say)
        _say("stopped; nothing left running")
