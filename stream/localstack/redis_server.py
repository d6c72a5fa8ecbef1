"""A private, throw-away redis-server per stack.

No persistence (``--save ''``, no AOF) because the stack's Kafka data is wiped together
with it; ``noeviction`` so a full Redis fails loudly instead of silently dropping the
workers' state. A secure stack's Redis speaks TLS only (``--port 0``) and wants a password.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ports import LOOPBACK
from .processes import Log, ensure_apt_tool, pid_alive, spawn, tail
from .tls import write_private


@dataclass(frozen=True)
class SecureRedis:
    """TLS (the stack's certificate; clients are not asked for one) and AUTH."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    password: str = field(repr=False)


class RedisStartError(RuntimeError):
    """redis-server did not answer PING; the message carries the tail of its log."""


def ensure_redis_server(*, log: Log = print) -> str:
    """Path of ``redis-server``, installing Debian's package if it is missing.

    Note: Debian's postinst also enables a system redis on 6379; we never touch it.
    """
    return ensure_apt_tool("redis-server", "redis-server", log=log)


def redis_url(port: int, *, tls: bool = False) -> str:
    """Client URL of a stack's redis (db 0); ``rediss://`` for a secure stack's."""
    return f"{'rediss' if tls else 'redis'}://{LOOPBACK}:{port}/0"


def start_redis(binary: str, *, port: int, redis_dir: Path, log_path: Path, secure: SecureRedis | None = None) -> int:
    """Launch redis-server detached; return its pid.

    ``--set-proc-title no`` keeps the real argv in /proc/<pid>/cmdline (redis rewrites
    it otherwise), which is what lets ``down`` prove the pid is ours via ``--dir``. A secure
    Redis reads its password from a config file (mode 0600), not its argv, which anyone may read.
    """
    redis_dir.mkdir(parents=True, exist_ok=True)
    config: list[str] = []
    listen = ["--port", str(port)]
    if secure is not None:
        # A config file must be redis-server's first argument.
        config = [str(write_private(redis_dir / "redis.conf", f"requirepass {secure.password}\n").resolve())]
        listen = [
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(secure.cert_file),
            "--tls-key-file", str(secure.key_file),
            "--tls-ca-cert-file", str(secure.ca_file),
            "--tls-auth-clients", "no",
        ]  # fmt: skip
    argv = [
        binary,
        *config,
        "--bind", LOOPBACK,
        *listen,
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "no",
        "--maxmemory-policy", "noeviction",
        "--dir", str(redis_dir.resolve()),
        "--logfile", str(log_path.resolve()),
        "--set-proc-title", "no",
    ]  # fmt: skip
    return spawn(argv, log_path=log_path, cwd=redis_dir).pid


def wait_ready(
    url: str,
    *,
    timeout: float,
    pid: int | None = None,
    log_path: Path | None = None,
    options: Mapping[str, Any] | None = None,
) -> float:
    """Block until PING is answered; return seconds waited. ``options``: password and CA of a secure one."""
    import redis as redis_py

    started = time.monotonic()
    deadline = started + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if pid is not None and not pid_alive(pid):
            raise RedisStartError(
                f"redis-server (pid {pid}) exited during startup.\n"
                f"--- tail of {log_path} ---\n{tail(log_path) if log_path else ''}"
            )
        client = redis_py.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1, **(options or {}))
        try:
            if client.ping():
                return time.monotonic() - started
        except redis_py.RedisError as exc:
            last_error = exc
        finally:
            client.close()
        time.sleep(0.05)
    raise RedisStartError(
        f"redis at {url} not ready after {timeout:.0f}s (last error: {last_error!r}).\n"
        f"--- tail of {log_path} ---\n{tail(log_path) if log_path else ''}"
    )
