"""The architecture and static checks are part of the suite, so CI keeps them true."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    executable = BIN / tool if (BIN / tool).exists() else shutil.which(tool)
    if executable is None:
        pytest.skip(f"{tool} is not installed (pip install -e .[dev])")
    return subprocess.run([str(executable), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_layers_stream_alerts_rules_and_pure_rules() -> None:
    """backtest -> stream -> alerts -> rules, and rules import no Kafka, Redis, HTTP or metrics library."""
    result = run("lint-imports")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run("ruff", "check", "backtest", "stream", "rules", "alerts", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = run("mypy", "backtest", "stream", "rules", "alerts")
    assert result.returncode == 0, result.stdout + result.stderr
