"""Named local stacks (Kafka + Redis) that can run side by side.

A stack is a directory ``.cache/stacks/<name>/`` plus a ``stack.json`` saying which
ports and pids belong to it. Everything here is synchronous so the CLI, the demo
runner and pytest fixtures can call it directly; the async Kafka probe runs on its own
event loop (in a worker thread if the caller already has a running loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from . import kafka_broker, redis_server
from .paths import file_lock, stack_dir, stack_lock_path, stacks_dir, validate_name
from .ports import LOOPBACK, free_ports
from .processes import (
    Log,
    StartedProcess,
    StopResult,
    argv_matches,
    cmdline_marker,
    is_ours,
    pid_alive,
    read_cmdline,
    stop_process,
    stop_started,
)
from .tls import make_tls, write_private

STATE_FILE = "stack.json"
CLIENTS_FILE = "clients.json"
"""Processes started against the stack (the demo's worker), stopped with it by ``down``."""
DEFAULT_NAME = "dev"
SECURE_USER = "churnwatch"
SECURE_MECHANISM = "SCRAM-SHA-512"
SECRET_FILES = {"kafka": "churnwatch_kafka_sasl_password", "redis": "churnwatch_redis_password"}
"""A secure stack's secrets dir, named as ``Settings`` reads them from ``CHURNWATCH_SECRETS_DIR``."""
KAFKA_READY_TIMEOUT = 90.0
REDIS_READY_TIMEOUT = 15.0
HEALTH_TIMEOUT = 15.0
STOP_TIMEOUT = 20.0

T = TypeVar("T")


@dataclass(frozen=True)
class StackInfo:
    """What a client needs to use a stack, and what ``down`` needs to stop it."""

    name: str
    kafka_bootstrap: str
    redis_url: str
    kafka_port: int
    kafka_controller_port: int
    redis_port: int
    kafka_pid: int | None
    redis_pid: int | None
    stack_dir: Path
    started_at: str
    kafka_version: str
    state: Literal["starting", "running", "stopped"] = "running"
    # A secure stack (``up --secure``): Kafka's only client listener is SASL_SSL, Redis speaks TLS
    # with a password. Its throw-away secrets are here too (stack.json is then mode 0600).
    secure: bool = False
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    """The one clients are given; the listener takes PLAIN with the same user and password too."""
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    redis_password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    secrets_dir: Path | None = None
    """``churnwatch_kafka_sasl_password`` and ``churnwatch_redis_password``, for CHURNWATCH_SECRETS_DIR."""

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (the ``stack.json`` format)."""
        data = asdict(self)
        for key in ("stack_dir", "ca_file", "secrets_dir"):
            data[key] = None if data[key] is None else str(data[key])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackInfo:
        """Inverse of :meth:`to_json`; ignores unknown keys from newer versions, and a stack.json
        written before the secure stack existed reads as a plaintext stack."""
        known = {field: data[field] for field in cls.__dataclass_fields__ if field in data}
        for key in ("stack_dir", "ca_file", "secrets_dir"):
            if known.get(key) is not None:
                known[key] = Path(known[key])
        return cls(**known)

    def kafka_security(self, mechanism: str | None = None) -> dict[str, Any]:
        """aiokafka's security options for this stack (none for a plaintext one); ``mechanism``
        overrides the recorded one (a secure stack takes PLAIN too)."""
        if not self.secure:
            return {}
        from pydantic import SecretStr

        from stream.connections import aiokafka_security, kafka_ssl_context

        return aiokafka_security(
            self.kafka_security_protocol,
            mechanism=mechanism or self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=SecretStr(self.kafka_sasl_password or ""),
            ssl_context=kafka_ssl_context(cafile=self.ca_file),
        )

    def redis_options(self) -> dict[str, Any]:
        """redis-py options beyond :attr:`redis_url`: a secure stack's password and CA."""
        if not self.secure:
            return {}
        return {"password": self.redis_password, "ssl_ca_certs": str(self.ca_file)}

    def client_env(self) -> dict[str, str]:
        """The ``CHURNWATCH_*`` variables of a worker (or ``churnwatch`` command) using this stack.

        A secure stack's passwords are not among them: they are read from its secrets dir, as a
        deployment would mount them."""
        env = {"CHURNWATCH_KAFKA_BOOTSTRAP": self.kafka_bootstrap, "CHURNWATCH_REDIS_URL": self.redis_url}
        if self.secure:
            env |= {
                "CHURNWATCH_KAFKA_SECURITY_PROTOCOL": self.kafka_security_protocol,
                "CHURNWATCH_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism or "",
                "CHURNWATCH_KAFKA_SASL_USERNAME": self.kafka_sasl_username or "",
                "CHURNWATCH_KAFKA_SSL_CAFILE": str(self.ca_file),
                "CHURNWATCH_REDIS_SSL_CA_FILE": str(self.ca_file),
                "CHURNWATCH_SECRETS_DIR": str(self.secrets_dir),
            }
        return env


@dataclass(frozen=True)
class StackStatus:
    """Liveness of one stack as seen from its pids (cheap: no network)."""

    name: str
    state: Literal["running", "degraded", "stopped"]
    kafka_alive: bool
    redis_alive: bool
    info: StackInfo | None


def _run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even if a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _state_path(sdir: Path) -> Path:
    return sdir / STATE_FILE


def _load(sdir: Path) -> StackInfo | None:
    """The stack's saved info, or None if missing/corrupt (treated as 'nothing running')."""
    try:
        return StackInfo.from_json(json.loads(_state_path(sdir).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _save(info: StackInfo) -> None:
    """Atomic write so a crash mid-write never leaves a half stack.json."""
    path = _state_path(info.stack_dir)
    tmp = path.with_suffix(f".json.tmp-{os.getpid()}")
    text = json.dumps(info.to_json(), indent=2) + "\n"
    if info.secure:  # it holds the stack's (throw-away) passwords
        write_private(tmp, text)
    else:
        tmp.write_text(text)
    os.replace(tmp, path)


KAFKA_EXE, REDIS_EXE = "java", "redis-server"


def _orphan_pids(sdir: Path) -> list[int]:
    """This stack's java/redis processes found by argv (e.g. pids lost by a crashed ``up``)."""
    marker = cmdline_marker(sdir)
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = read_cmdline(int(entry.name))
        if any(argv_matches(argv, marker, exe) for exe in (KAFKA_EXE, REDIS_EXE)):
            found.append(int(entry.name))
    return found


def attach_client(name: str, pid: int, label: str) -> StartedProcess:
    """Record a process that uses stack ``name``, so that ``down`` stops it first, even when the
    program that started it was killed before it could."""
    process = StartedProcess.of(pid)
    with file_lock(stack_lock_path(name)):
        path = stack_dir(name) / CLIENTS_FILE
        clients = _load_clients(path.parent)
        clients.append((label, process))
        tmp = path.with_suffix(f".json.tmp-{os.getpid()}")
        rows = [{"label": lbl, "pid": p.pid, "start_ticks": p.start_ticks} for lbl, p in clients]
        tmp.write_text(json.dumps(rows, indent=2) + "\n")
        os.replace(tmp, path)
    return process


def _load_clients(sdir: Path) -> list[tuple[str, StartedProcess]]:
    try:
        rows = json.loads((sdir / CLIENTS_FILE).read_text())
        return [(str(row["label"]), StartedProcess(int(row["pid"]), int(row["start_ticks"]))) for row in rows]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return []


def _stop_all(sdir: Path, info: StackInfo | None, log: Log, timeout: float) -> None:
    """Stop the stack's clients, then its recorded servers (Kafka first, so it shuts down cleanly),
    then any stray server found by its argv."""
    for label, process in _load_clients(sdir):
        if stop_started(process, timeout=timeout) is StopResult.KILLED:
            log(f"[localstack] {label} pid {process.pid} ignored SIGTERM for {timeout:.0f}s - killed")
    (sdir / CLIENTS_FILE).unlink(missing_ok=True)
    marker = cmdline_marker(sdir)
    recorded = [("kafka", info.kafka_pid, KAFKA_EXE), ("redis", info.redis_pid, REDIS_EXE)] if info else []
    for label, pid, exe in recorded:
        result = stop_process(pid, marker, exe=exe, timeout=timeout)
        if result is StopResult.NOT_OURS:
            log(
                f"[localstack] {label} pid {pid} is alive but is not this stack's process (pid reused?) - not signalled"
            )
        elif result is StopResult.KILLED:
            log(f"[localstack] {label} pid {pid} ignored SIGTERM for {timeout:.0f}s - killed")
    for pid in _orphan_pids(sdir):
        log(f"[localstack] stopping stray process {pid} of stack {sdir.name}")
        argv = read_cmdline(pid)
        if argv:
            stop_process(pid, marker, exe=os.path.basename(argv[0]), timeout=timeout)


def _healthy(info: StackInfo) -> bool:
    """Both servers are ours and actually answer (not just alive)."""
    marker = cmdline_marker(info.stack_dir)
    if not (is_ours(info.kafka_pid, marker, KAFKA_EXE) and is_ours(info.redis_pid, marker, REDIS_EXE)):
        return False
    try:
        redis_server.wait_ready(info.redis_url, timeout=3.0, options=info.redis_options())
        security = info.kafka_security()
        _run_sync(lambda: kafka_broker.wait_ready(info.kafka_bootstrap, timeout=HEALTH_TIMEOUT, security=security))
    except (redis_server.RedisStartError, kafka_broker.KafkaStartError):
        return False
    return True


@dataclass(frozen=True)
class _SecureSetup:
    """A secure stack's certificates and passwords, as each server wants them."""

    kafka: kafka_broker.SecureListener
    redis: redis_server.SecureRedis
    secrets_dir: Path

    def info_fields(self) -> dict[str, Any]:
        return {
            "secure": True,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": SECURE_MECHANISM,
            "kafka_sasl_username": self.kafka.username,
            "kafka_sasl_password": self.kafka.password,
            "redis_password": self.redis.password,
            "ca_file": self.redis.ca_file,
            "secrets_dir": self.secrets_dir,
        }


def _secure_setup(sdir: Path, log: Log) -> _SecureSetup:
    """A new CA and certificate, new passwords, and the secrets dir clients read them from."""
    tls = make_tls(sdir / "tls", log=log)
    kafka_password, broker_password, redis_password = (secrets.token_urlsafe(24) for _ in range(3))
    secrets_dir = sdir / "secrets"
    secrets_dir.mkdir(mode=0o700)
    write_private(secrets_dir / SECRET_FILES["kafka"], kafka_password + "\n")
    write_private(secrets_dir / SECRET_FILES["redis"], redis_password + "\n")
    ca_file = tls.ca_file.resolve()
    return _SecureSetup(
        kafka_broker.SecureListener(
            keystore=tls.keystore_file.resolve(),
            truststore=ca_file,
            username=SECURE_USER,
            password=kafka_password,
            broker_password=broker_password,
        ),
        redis_server.SecureRedis(
            cert_file=tls.cert_file.resolve(), key_file=tls.key_file.resolve(), ca_file=ca_file, password=redis_password
        ),
        secrets_dir.resolve(),
    )


def _start(name: str, sdir: Path, *, log: Log, timeout: float, secure: bool = False) -> StackInfo:
    """Fresh start in an empty stack dir; on any failure stop what was started and re-raise."""
    libs = kafka_broker.ensure_kafka_libs(log=log)
    redis_bin = redis_server.ensure_redis_server(log=log)
    sdir.mkdir(parents=True, exist_ok=True)
    kafka_dir, redis_dir = sdir / "kafka", sdir / "redis"
    kafka_dir.mkdir(exist_ok=True)
    kafka_log, redis_log = kafka_dir / "broker.log", redis_dir / "redis.log"
    kafka_port, controller_port, redis_port = free_ports(3)
    setup = _secure_setup(sdir, log) if secure else None
    config = kafka_dir / "server.properties"
    properties = kafka_broker.server_properties(
        data_dir=(kafka_dir / "data").resolve(),
        port=kafka_port,
        controller_port=controller_port,
        secure=setup.kafka if setup else None,
    )
    if setup is not None:  # the JAAS user list holds the passwords
        write_private(config, properties)
    else:
        config.write_text(properties)
    info = StackInfo(
        name=name,
        kafka_bootstrap=f"{LOOPBACK}:{kafka_port}",
        redis_url=redis_server.redis_url(redis_port, tls=secure),
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        redis_port=redis_port,
        kafka_pid=None,
        redis_pid=None,
        stack_dir=sdir.resolve(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        kafka_version=kafka_broker.kafka_version(),
        state="starting",
        **(setup.info_fields() if setup else {}),
    )
    _save(info)
    try:
        # Redis first: it is up in milliseconds while the storage format JVM runs.
        redis_pid = redis_server.start_redis(
            redis_bin, port=redis_port, redis_dir=redis_dir, log_path=redis_log, secure=setup.redis if setup else None
        )
        info = replace(info, redis_pid=redis_pid)
        _save(info)
        scram_user = (setup.kafka.username, setup.kafka.password) if setup else None
        kafka_broker.format_storage(
            libs, config.resolve(), kafka_dir=kafka_dir, log_path=kafka_log, scram_user=scram_user
        )
        info = replace(
            info,
            kafka_pid=kafka_broker.start_broker(libs, config.resolve(), kafka_dir=kafka_dir, log_path=kafka_log),
        )
        _save(info)
        redis_server.wait_ready(
            info.redis_url,
            timeout=REDIS_READY_TIMEOUT,
            pid=info.redis_pid,
            log_path=redis_log,
            options=info.redis_options(),
        )
        pid, bootstrap, security = info.kafka_pid, info.kafka_bootstrap, info.kafka_security()
        waited = _run_sync(
            lambda: kafka_broker.wait_ready(bootstrap, timeout=timeout, pid=pid, log_path=kafka_log, security=security)
        )
    except BaseException:
        _stop_all(sdir, info, log, STOP_TIMEOUT)
        _save(replace(info, kafka_pid=None, redis_pid=None, state="stopped"))
        raise
    info = replace(info, state="running")
    _save(info)
    log(f"[localstack] kafka answered after {waited:.1f}s of probing")
    return info


def _is_port_clash(exc: BaseException) -> bool:
    """A server lost the race for its pre-picked port; a retry with new ports fixes it."""
    return "already in use" in str(exc).lower()


def stack_up(
    name: str = DEFAULT_NAME, *, log: Log = print, timeout: float = KAFKA_READY_TIMEOUT, secure: bool = False
) -> StackInfo:
    """Start stack ``name`` (Kafka + Redis) and return how to reach it.

    Idempotent: a running, healthy stack is returned as is. A stale or broken one is
    stopped and started from scratch with empty data, so Kafka offsets and the
    (non-persistent) Redis state never get out of step; so is one that is plaintext when
    ``secure`` is asked, or the other way round.

    ``secure``: Kafka's client listener is SASL_SSL (SCRAM-SHA-512 and PLAIN, user
    ``churnwatch``) and Redis takes TLS connections with a password only, all with a new
    throw-away CA and passwords (:class:`StackInfo` says where they are).
    """
    validate_name(name)
    with file_lock(stack_lock_path(name)):
        sdir = stack_dir(name)
        existing = _load(sdir)
        matches = existing is not None and existing.secure == secure
        if existing and matches and existing.state == "running" and _healthy(existing):
            log(f"[localstack] stack {name!r} already running")
            return existing
        if sdir.exists():
            if existing and not matches and existing.state != "stopped":
                wanted = "secure" if secure else "plaintext"
                log(f"[localstack] stack {name!r} is not {wanted} - restarting it fresh as {wanted}")
            elif existing and existing.state != "stopped":
                log(f"[localstack] stack {name!r} is stale or unhealthy - restarting it fresh")
            _stop_all(sdir, existing, log, STOP_TIMEOUT)
            shutil.rmtree(sdir)
        started = time.monotonic()
        log(f"[localstack] starting stack {name!r} in {sdir}")
        for attempt in (1, 2):
            try:
                info = _start(name, sdir, log=log, timeout=timeout, secure=secure)
                break
            except (kafka_broker.KafkaStartError, redis_server.RedisStartError) as exc:
                if attempt == 2 or not _is_port_clash(exc):
                    raise
                log("[localstack] port taken between pick and bind - retrying with new ports")
                shutil.rmtree(sdir, ignore_errors=True)
        log(
            f"[localstack] stack {name!r} up in {time.monotonic() - started:.1f}s: "
            f"kafka={info.kafka_bootstrap} redis={info.redis_url}"
            + (f" (SASL_SSL and Redis TLS + AUTH; secrets in {info.secrets_dir})" if info.secure else "")
        )
        return info


def stack_down(
    name: str = DEFAULT_NAME, *, purge: bool = False, log: Log = print, timeout: float = STOP_TIMEOUT
) -> None:
    """Stop stack ``name``'s servers (only processes we started); ``purge`` deletes its dir.

    The Kafka jar cache is shared and always kept.
    """
    validate_name(name)
    with file_lock(stack_lock_path(name)):
        sdir = stack_dir(name)
        if not sdir.exists():
            return
        info = _load(sdir)
        _stop_all(sdir, info, log, timeout)
        if purge:
            shutil.rmtree(sdir, ignore_errors=True)
        elif info is not None:
            _save(replace(info, kafka_pid=None, redis_pid=None, state="stopped"))


def _status_of(sdir: Path) -> StackStatus:
    info = _load(sdir)
    marker = cmdline_marker(sdir)
    kafka_alive = bool(info and is_ours(info.kafka_pid, marker, KAFKA_EXE))
    redis_alive = bool(info and is_ours(info.redis_pid, marker, REDIS_EXE))
    state: Literal["running", "degraded", "stopped"]
    if kafka_alive and redis_alive and info and info.state == "running":
        state = "running"
    elif kafka_alive or redis_alive:
        state = "degraded"
    else:
        state = "stopped"
    return StackStatus(sdir.name, state, kafka_alive, redis_alive, info)


def stack_status(name: str | None = None) -> list[StackStatus]:
    """Status of one stack, or of every stack that has a directory (sorted by name)."""
    if name is not None:
        sdir = stack_dir(name)
        return [_status_of(sdir)] if sdir.exists() else []
    return [
        _status_of(entry)
        for entry in sorted(stacks_dir().iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    ]


@contextmanager
def running_stack(
    name: str = DEFAULT_NAME, *, purge: bool = True, log: Log = print, secure: bool = False
) -> Iterator[StackInfo]:
    """Up a stack for the duration of a block and always take it down afterwards.

    Meant for the demo runner and tests; note it also downs a stack that was already
    running before the block (use a dedicated name to avoid that).
    """
    info = stack_up(name, log=log, secure=secure)
    try:
        yield info
    finally:
        stack_down(name, purge=purge, log=log)


def stale_pytest_stacks() -> list[str]:
    """Names of ``pytest-<pid>[-…]`` stacks whose pytest process is gone (killed runs)."""
    stale: list[str] = []
    for entry in stacks_dir().iterdir():
        parts = entry.name.split("-")
        if len(parts) >= 2 and parts[0] == "pytest" and parts[1].isdigit() and not pid_alive(int(parts[1])):
            stale.append(entry.name)
    return stale
