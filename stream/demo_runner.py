"""``churnwatch demo`` (``bin/run``): a local stack, a worker and a demo generator, stopped together.

However the run ends, it stops what it started: Ctrl-C (SIGINT), SIGTERM, a closed terminal
(SIGHUP), or an output that went away (``bin/run | head``: EPIPE). The worker runs in its own
session, so a signal meant for the runner reaches only the runner, which stops the worker by pid,
then the stack. The worker is recorded in the stack directory and told the runner's pid, so even
a ``kill -9`` of the runner leaves nothing for long: the worker stops itself, and the next run
(or ``churnwatch stack down --name demo``) stops the stack it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
from collections.abc import Iterator
from types import FrameType

from stream.demo import run_demo
from stream.localstack import StackInfo, stack_down, stack_status, stack_up
from stream.localstack.stack import attach_client
from stream.localstack.worker import WorkerProcess, start_worker
from stream.settings import Settings

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WATCH_SECONDS = 0.5
SENDER_STOP_SECONDS = 3.0


class Console:
    """The runner's output. A write that fails (EPIPE on a closed pipe, EIO on a hung-up terminal)
    is a request to stop, as SIGPIPE would be for a plain program; later messages are dropped."""

    def __init__(self) -> None:
        self.closed = False

    def say(self, message: str) -> None:
        if self.closed:
            return
        try:
            print(f"[churnwatch demo] {message}", flush=True)
        except (OSError, ValueError):
            self.closed = True

    def gone(self) -> bool:
        """True once our output failed, or stdout or stderr is a pipe whose reader has closed it."""
        return self.closed or any(_reader_gone(stream.fileno()) for stream in (sys.stdout, sys.stderr))


def _reader_gone(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


class StopRequested(Exception):
    """A stop signal arrived while the runner was in synchronous code (starting the stack or worker)."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signal.Signals(signum).name)


@contextlib.contextmanager
def _stop_signals_raise() -> Iterator[None]:
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def _generate(
    info: StackInfo, worker: WorkerProcess, console: Console, *, customers: int, seed: int, rate: float
) -> int:
    """Send demo traffic until a stop signal, a closed output or the worker's exit; the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    outcome = 0

    async def watch() -> None:
        nonlocal outcome
        while not stop.is_set():
            if console.gone():
                stop.set()
            elif (code := worker.process.poll()) is not None:
                console.say(f"the worker exited with code {code}; stopping")
                outcome = 1
                stop.set()
            await asyncio.sleep(WATCH_SECONDS)

    watcher = asyncio.create_task(watch())
    sender = asyncio.create_task(
        run_demo(
            info.kafka_bootstrap,
            Settings().topics,
            customers=customers,
            seed=seed,
            rate_per_second=rate,
            stop=stop,
            log=console.say,
        )
    )
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([sender, stopping], return_when=asyncio.FIRST_COMPLETED)
        if sender.done() and sender.exception() is not None:
            console.say(f"sending failed: {sender.exception()!r}; stopping")
            outcome = 1
        else:
            await stopping  # a backfill-only demo (rate 0) keeps the worker alerting until stopped
    finally:
        watcher.cancel()
        stopping.cancel()
        # With the broker gone a send (and the producer's final flush) never returns: give the
        # sender a moment to finish its own way, then cancel it.
        await asyncio.wait([sender], timeout=SENDER_STOP_SECONDS)
        # aiokafka's producer.stop() (in run_demo's finally) waits again on a flush: cancel that too.
        for _ in range(3):
            if sender.done():
                break
            sender.cancel()
            await asyncio.wait([sender], timeout=1.0)
    return outcome


def _stop_stale_stack(name: str, console: Console) -> None:
    """A stack of this name left by a run that was killed: stop it (and its worker) and start afresh."""
    if stack_status(name):
        console.say(f"stopping the stack {name!r} left by an earlier run")
        stack_down(name, purge=True, log=console.say)


def run_demo_session(*, customers: int, seed: int, rate: float, stack_name: str) -> int:
    """Run until stopped; return the process exit code."""
    console = Console()
    worker: WorkerProcess | None = None
    code = 0
    try:
        with _stop_signals_raise():
            _stop_stale_stack(stack_name, console)
            info = stack_up(stack_name, log=console.say)
            # The backfill arrives as one burst on three topics: judge each customer a few seconds
            # after their events, on all of them (see CHURNWATCH_EVALUATION_DELAY).
            worker = start_worker(
                info, env={"CHURNWATCH_EVALUATION_DELAY": os.environ.get("CHURNWATCH_EVALUATION_DELAY", "3s")}
            )
            attach_client(stack_name, worker.process.pid, "worker")
            worker.wait_healthy()
        console.say(f"worker ready (pid {worker.process.pid}): metrics at {worker.base_url}/metrics")
        console.say("sending demo customers; alerts appear below within a minute. Ctrl-C stops everything.")
        if os.environ.get("CHURNWATCH_SLACK_WEBHOOK_URL"):
            console.say("alerts also go to the Slack webhook in CHURNWATCH_SLACK_WEBHOOK_URL")
        code = asyncio.run(_generate(info, worker, console, customers=customers, seed=seed, rate=rate))
    except (KeyboardInterrupt, StopRequested):
        pass
    except RuntimeError as exc:
        console.say(f"error: {exc}")
        code = 1
    finally:
        # Nothing may interrupt the cleanup: it is what leaves the machine as it was.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        console.say("stopping the worker and the local stack")
        if worker is not None:
            worker.stop()
        stack_down(stack_name, purge=True, log=console.say)
        console.say("stopped; nothing left running")
    return code
