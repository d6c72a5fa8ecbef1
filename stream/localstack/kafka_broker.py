"""A real single-node Apache Kafka (KRaft, broker+controller in one JVM) for local work.

The broker comes from Maven Central (the only place we can fetch it from) via
``kafka-pom.xml`` and is cached per version, so only the first ``up`` pays for it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import KAFKA_POM, LOG4J2_CONFIG, file_lock, kafka_home
from .ports import LOOPBACK, port_in_use
from .processes import Log, ensure_apt_tool, pid_alive, spawn, tail

READY_TOPIC = "__churnwatch_localstack_ready"
COMPLETE_MARKER = ".complete"
SECURE_LISTENER = "SASL_SSL"
"""A secure stack's only client listener (the listener's name is its protocol's)."""
SASL_MECHANISMS = ("SCRAM-SHA-512", "PLAIN")

# Lean JVM for a 2-core dev box, measured (cached jars, this machine):
# - SerialGC: fewest GC threads; G1 started no faster (2.6 s vs 2.6 s up).
# - TieredStopAtLevel=1 (C1 only): up 2.0 s instead of 2.6 s, and aiokafka produce/consume
#   throughput was equal or better (the Python client is the bottleneck; C2 compiling
#   just competes for the 2 cores: broker CPU 3 s vs 7 s for 400k messages).
JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
    # Log4j2's own hook would stop logging halfway through Kafka's shutdown hook (the
    # end of the shutdown was missing from broker.log); console output needs no flush.
    "-Dlog4j2.shutdownHookEnabled=false",
)


class KafkaStartError(RuntimeError):
    """The broker did not come up; the message carries the tail of its log."""


def kafka_version() -> str:
    """The version pinned in ``kafka-pom.xml`` (single source of truth)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", KAFKA_POM.read_text())
    if not match:
        raise RuntimeError(f"no <kafka.version> property in {KAFKA_POM}")
    return match.group(1).strip()


def _pom_digest() -> str:
    """Hash of the pom: editing deps (e.g. logging binding) invalidates the jar cache."""
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()


def ensure_kafka_libs(*, log: Log = print) -> Path:
    """Return the dir with Kafka's runtime jars, downloading them once via Maven.

    Jars land in a scratch dir that is renamed into place and a marker is written last,
    so an interrupted download is redone instead of leaving a broken classpath.
    """
    version = kafka_version()
    home = kafka_home(version)
    libs = home / "libs"
    marker = home / COMPLETE_MARKER
    digest = _pom_digest()
    with file_lock(home.parent / f".kafka-{version}.lock"):
        if marker.exists() and marker.read_text().strip() == digest and any(libs.glob("*.jar")):
            return libs
        mvn = ensure_apt_tool("mvn", "maven", log=log)
        ensure_apt_tool("java", "openjdk-17-jre-headless", log=log)
        home.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        scratch = home / f"libs.partial-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        log(f"[localstack] fetching Apache Kafka {version} jars from Maven Central -> {libs}")
        started = time.monotonic()
        cmd = [
            mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={scratch}", "-DincludeScope=runtime",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not any(scratch.glob("kafka_*.jar")):
            shutil.rmtree(scratch, ignore_errors=True)
            raise RuntimeError(
                f"maven failed to fetch Kafka {version} (exit {proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        scratch.rename(libs)
        marker.write_text(digest + "\n")
        count = len(list(libs.glob("*.jar")))
        log(f"[localstack] {count} jars cached in {time.monotonic() - started:.1f}s")
        return libs


@dataclass(frozen=True)
class SecureListener:
    """What a secure stack's SASL_SSL listener needs: its TLS identity and one client user.

    The user logs in with SCRAM-SHA-512 (credentials written at storage format time) or PLAIN (the
    JAAS user list); the broker talks to itself over the same listener with PLAIN as ``broker``."""

    keystore: Path
    truststore: Path
    username: str
    password: str = field(repr=False)
    broker_password: str = field(repr=False)

    def properties(self, port: int, controller_port: int) -> dict[str, str]:
        listener = SECURE_LISTENER.lower()
        plain_users = f'user_broker="{self.broker_password}" user_{self.username}="{self.password}"'
        return {
            # The controller listener stays plaintext on loopback: only the node itself speaks to it.
            "listeners": f"{SECURE_LISTENER}://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
            "advertised.listeners": f"{SECURE_LISTENER}://{LOOPBACK}:{port}",
            "inter.broker.listener.name": SECURE_LISTENER,
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{SECURE_LISTENER}:SASL_SSL",
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            f"listener.name.{listener}.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="broker" password="{self.broker_password}" {plain_users};'
            ),
            f"listener.name.{listener}.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.truststore),
            "ssl.client.auth": "none",
        }


def server_properties(*, data_dir: Path, port: int, controller_port: int, secure: SecureListener | None = None) -> str:
    """Config of a single combined broker+controller with a static one-voter quorum; with ``secure``,
    its client listener is SASL_SSL instead of PLAINTEXT."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        # 50 partitions by default: each is a log to create/load; 1 is plenty locally.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Fewer threads and a small cleaner buffer (heap!) for a 2-core box.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "2",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    }
    if secure is not None:
        props.update(secure.properties(port, controller_port))
    return "".join(f"{key}={value}\n" for key, value in props.items())


def java_cmd(libs: Path, main_class: str, *args: str, stack_marker_dir: Path) -> list[str]:
    """``java -cp libs/* <main>``; ``-Dchurnwatch.stack`` tags the argv with the stack dir."""
    java = shutil.which("java") or "java"
    return [
        java,
        *JVM_OPTS,
        f"-Dchurnwatch.stack={stack_marker_dir.resolve()}{os.sep}",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        "-cp",
        f"{libs}{os.sep}*",
        main_class,
        *args,
    ]


def new_cluster_id() -> str:
    """A Kafka cluster id (22-char base64url UUID), made in Python to skip a JVM start."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_storage(
    libs: Path, config: Path, *, kafka_dir: Path, log_path: Path, scram_user: tuple[str, str] | None = None
) -> None:
    """Write meta.properties / bootstrap checkpoint into log.dirs (KRaft needs this once).

    ``scram_user`` (name, password) gets SCRAM-SHA-512 credentials in the bootstrap metadata (KRaft,
    Kafka 3.5+). StorageTool takes them only on its command line, so the throw-away password is in
    that JVM's argv for the two seconds it runs; the log records it redacted."""
    cluster_id = new_cluster_id()
    scram: list[str] = []
    if scram_user is not None:
        name, password = scram_user
        scram = ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
    cmd = java_cmd(
        # "--cluster-id=<id>", not "-t <id>": an id starting with '-' would read as an option.
        libs, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config), *scram,
        stack_marker_dir=kafka_dir,
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=kafka_dir)
    shown = f" --add-scram SCRAM-SHA-512=[name={scram_user[0]},password=***]" if scram_user else ""
    with open(log_path, "a") as handle:
        handle.write(f"$ kafka.tools.StorageTool format --cluster-id={cluster_id}{shown}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise KafkaStartError(f"kafka storage format failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def start_broker(libs: Path, config: Path, *, kafka_dir: Path, log_path: Path) -> int:
    """Launch the broker JVM detached and return its pid."""
    cmd = java_cmd(libs, "kafka.Kafka", str(config), stack_marker_dir=kafka_dir)
    return spawn(cmd, log_path=log_path, cwd=kafka_dir).pid


async def _probe_once(bootstrap: str, timeout_ms: int, security: Mapping[str, Any]) -> None:
    """Create the readiness topic and get an ack for one message: the broker is usable (and, on a
    secure stack, the TLS handshake and the SASL login work)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms, **security)
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(READY_TOPIC, num_partitions=1, replication_factor=1)],
            timeout_ms=timeout_ms,
        )
        for topic_error in response.topic_errors:
            code = topic_error[1]
            if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS
                raise RuntimeError(f"create_topics({READY_TOPIC}) error code {code}: {topic_error}")
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=timeout_ms, **security)
    try:
        await producer.start()
        await asyncio.wait_for(producer.send_and_wait(READY_TOPIC, b"ready"), timeout=timeout_ms / 1000)
    finally:
        await producer.stop()


async def wait_ready(
    bootstrap: str,
    *,
    timeout: float,
    pid: int | None = None,
    log_path: Path | None = None,
    security: Mapping[str, Any] | None = None,
) -> float:
    """Retry the probe until it passes; return seconds waited. ``security``: aiokafka's TLS/SASL options.

    Fails fast if the JVM died and always attaches the broker log tail, because
    "timed out" alone is useless when the real reason is in the broker log.
    """
    started = time.monotonic()
    deadline = started + timeout
    last_error: BaseException | None = None
    host, _, port = bootstrap.rpartition(":")
    # Cheap TCP wait first: aiokafka logs an error for every refused connection.
    while time.monotonic() < deadline and not port_in_use(int(port), host):
        if pid is not None and not pid_alive(pid):
            break
        await asyncio.sleep(0.1)
    while True:
        if pid is not None and not pid_alive(pid):
            raise KafkaStartError(
                f"kafka broker (pid {pid}) exited during startup.\n"
                f"--- tail of {log_path} ---\n{tail(log_path) if log_path else ''}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            per_try_ms = int(max(1.0, min(10.0, remaining)) * 1000)
            await asyncio.wait_for(_probe_once(bootstrap, per_try_ms, security or {}), timeout=remaining + 1)
            return time.monotonic() - started
        except Exception as exc:
            last_error = exc
        await asyncio.sleep(0.5)
    raise KafkaStartError(
        f"kafka at {bootstrap} not ready after {timeout:.0f}s (last error: {last_error!r}).\n"
        f"--- tail of {log_path} ---\n{tail(log_path) if log_path else ''}"
    )
