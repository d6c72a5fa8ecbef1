"""The worker process's life: a shutdown that ends within a bound, and no life after its parent.

faust's graceful shutdown waits for the consumer to leave its group and the producer to flush; with
the broker or Redis unreachable it waits for ever. An SRE's SIGTERM (or Kubernetes') must still end
the process, so the first stop signal arms a deadline after which the process exits hard, losing
nothing that at-least-once delivery does not redo (offsets are committed only behind finished work).

A worker started by another program (``bin/run``) is told its parent's pid; when that parent is
gone (killed, its terminal closed) the worker stops itself instead of retrying a vanished broker
for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import faust

log = logging.getLogger("churnwatch.lifecycle")

EXIT_SHUTDOWN_TIMEOUT = 70
"""Exit code of a worker whose graceful shutdown did not finish within its bound (EX_SOFTWARE)."""


class ShutdownDeadline:
    """Once armed, ends the process with :data:`EXIT_SHUTDOWN_TIMEOUT` after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._timer: threading.Timer | None = None

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def arm(self) -> None:
        """Safe to call from a signal handler: no lock, no logging, no I/O that could block."""
        if self._timer is not None:
            return
        self._timer = threading.Timer(self._seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        message = (
            f"churnwatch worker: graceful shutdown did not finish within {self._seconds:.0f} s "
            f"(broker or Redis unreachable?); exiting with code {EXIT_SHUTDOWN_TIMEOUT}\n"
        ).encode()
        # A blocked or closed stderr must not keep the process alive: say it if we can, then go.
        speaker = threading.Thread(target=_write_quietly, args=(2, message), daemon=True)
        speaker.start()
        speaker.join(0.5)
        os._exit(EXIT_SHUTDOWN_TIMEOUT)


def _write_quietly(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, data)


class BoundedWorker(faust.Worker):
    """faust's worker, with every way of stopping (SIGTERM, SIGINT, a crash) bounded in time."""

    def __init__(self, *args: Any, shutdown_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = ShutdownDeadline(shutdown_timeout)

    def install_signal_handlers(self) -> None:
        """faust's handlers run on the event loop, which a blocked main thread never reaches (a
        write to a full pipe, say). The Python-level handler runs in the main thread as soon as
        the signal interrupts it, and the loop still gets the signal through its wakeup fd."""
        super().install_signal_handlers()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._arm_deadline)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """No terminal spinner: faust's spins on every log record, so it sets the root logger to DEBUG,
        and every debug call of aiokafka, faust and redis-py then built a record that no handler
        wrote (6 % of a core with live traffic, by py-spy). The root keeps ``--loglevel``."""
        self.spinner = None
        super().on_setup_root_logger(logger, level)

    def _arm_deadline(self, signum: int, frame: FrameType | None) -> None:
        self.deadline.arm()

    def on_worker_shutdown(self) -> None:
        self.deadline.arm()
        super().on_worker_shutdown()


def exit_with_parent(parent_pid: int, *, poll_seconds: float = 0.5) -> threading.Thread:
    """Send this process SIGTERM once ``parent_pid`` is no longer its parent (it died; we were re-parented).

    Polling ``getppid`` works from any thread and for any way the parent ends, SIGKILL included,
    where ``PR_SET_PDEATHSIG`` would fire when the *thread* that forked us exits.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        log.warning("parent process %d is gone; stopping", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread
