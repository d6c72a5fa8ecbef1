"""Where the local stack keeps jars, stack dirs and locks.

Everything lives under one cache dir (``<repo>/.cache`` unless ``CHURNWATCH_CACHE_DIR``
says otherwise) so a ``rm -rf .cache`` resets the whole thing and nothing leaks into
the source tree. Paths are resolved at call time (not import time) so tests can point
the cache elsewhere with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "CHURNWATCH_CACHE_DIR"
PACKAGE_DIR = Path(__file__).resolve().parent
KAFKA_POM = PACKAGE_DIR / "kafka-pom.xml"
LOG4J2_CONFIG = PACKAGE_DIR / "log4j2.properties"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def repo_root() -> Path:
    """The checkout root: this file is ``<root>/stream/localstack/paths.py``."""
    return PACKAGE_DIR.parents[1]


def cache_dir() -> Path:
    """Root of all cached/generated state; created on first use and git-ignored."""
    override = os.environ.get(CACHE_ENV)
    root = Path(override).expanduser().resolve() if override else repo_root() / ".cache"
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        # Belt and braces: keep the cache out of git even if the repo's .gitignore misses it.
        ignore.write_text("*\n")
    return root


def validate_name(name: str) -> str:
    """Stack names become directory names and cmdline markers, so keep them boring."""
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid stack name {name!r}: use letters, digits, '.', '_' or '-' (max 64 chars)")
    return name


def stacks_dir() -> Path:
    """Parent of every stack's private directory."""
    path = cache_dir() / "stacks"
    path.mkdir(parents=True, exist_ok=True)
    return path


def stack_dir(name: str) -> Path:
    """A stack's private directory (data, logs, configs, ``stack.json``); not created here."""
    return stacks_dir() / validate_name(name)


def kafka_home(version: str) -> Path:
    """Cache dir for one Kafka version's runtime jars (shared by all stacks)."""
    return cache_dir() / f"kafka-{version}"


@contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Exclusive advisory lock, so two processes don't up/down one stack or download at once.

    Lock files live outside the directories they protect and are never deleted, so a
    ``--purge`` cannot pull the lock from under a waiting process.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def stack_lock_path(name: str) -> Path:
    """Per-stack lock file (kept beside, not inside, the stack dir)."""
    return stacks_dir() / ".locks" / f"{validate_name(name)}.lock"
