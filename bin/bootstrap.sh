#!/usr/bin/env bash
# Sourced by bin/run and bin/test: make sure the project's virtual environment exists and is current.
# Idempotent: a second run only compares a stamp of pyproject.toml and does nothing else.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "churnwatch: creating virtual environment in .venv"
  "$PYTHON_BIN" -m venv "$VENV"
fi
STAMP="$VENV/.churnwatch-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "churnwatch: installing the project and its dev dependencies (pip install -e .[dev])"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
