"""``churnwatch demo``: a local stack, a worker and a demo generator, stopped together on Ctrl-C.

The worker runs as a child process in its own session, so Ctrl-C reaches only this runner, which
then stops what it started by PID, in reverse order, and takes the stack down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request

from stream.demo import run_demo
from stream.localstack import StackInfo, stack_down, stack_up
from stream.localstack.ports import free_ports
from stream.settings import Settings

WORKER_READY_TIMEOUT = 90.0


def _say(message: str) -> None:
    print(f"[churnwatch demo] {message}", flush=True)


def _start_worker(info: StackInfo, web_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHURNWATCH_KAFKA_BOOTSTRAP": info.kafka_bootstrap,
        "CHURNWATCH_REDIS_URL": info.redis_url,
        "CHURNWATCH_WEB_PORT": str(web_port),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "warning"],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_healthy(worker: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode} before it was ready")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"the worker did not answer {url} within {WORKER_READY_TIMEOUT:.0f}s")


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)  # Popen signals its own pid only
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


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
    worker: subprocess.Popen[bytes] | None = None
    try:
        info = stack_up(stack_name, log=_say)
        (web_port,) = free_ports(1)
        worker = _start_worker(info, web_port)
        _wait_healthy(worker, f"http://127.0.0.1:{web_port}/healthz")
        _say(f"worker ready: metrics at http://127.0.0.1:{web_port}/metrics")
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
            _stop_worker(worker)
        stack_down(stack_name, purge=True, log=_say)
        _say("stopped; nothing left running")
