#!/usr/bin/env bash
# Sourced by bin/run, bin/test and bin/lock: make sure the project's virtual environment holds exactly
# the locked dependency set (uv.lock). The uv that does it is itself pinned with hashes
# (bin/uv-requirements.txt) and lives in .cache/uv/. Idempotent: when nothing changed, `uv sync`
# only checks and returns in well under a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
UV_HOME="$ROOT/.cache/uv"
UV="$UV_HOME/bin/uv"
UV_WANT="$(sha256sum "$ROOT/bin/uv-requirements.txt" | cut -d' ' -f1)"

if [ ! -x "$UV" ] || [ "$(cat "$UV_HOME/.requirements-sha256" 2>/dev/null)" != "$UV_WANT" ]; then
  echo "churnwatch: installing the pinned uv into .cache/uv"
  rm -rf "$UV_HOME"
  "$PYTHON_BIN" -m venv "$UV_HOME"
  "$UV_HOME/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r "$ROOT/bin/uv-requirements.txt"
  echo "$UV_WANT" > "$UV_HOME/.requirements-sha256"
fi
export UV
export UV_PROJECT_ENVIRONMENT="$VENV"

# CHURNWATCH_EXTRAS="bench backtest": optional extras to install beside dev (the sync is exact: the next
# plain bin/test removes them again).
EXTRAS=(--extra dev)
for extra in ${CHURNWATCH_EXTRAS:-}; do EXTRAS+=(--extra "$extra"); done
if [ "${CHURNWATCH_BOOTSTRAP_SKIP_SYNC:-}" != 1 ]; then
  if ! "$UV" sync --quiet --locked "${EXTRAS[@]}" --python "$PYTHON_BIN" --project "$ROOT"; then
    echo "churnwatch: could not install the locked dependency set." >&2
    echo "  If pyproject.toml changed, refresh the lock with: bin/lock   (then commit uv.lock)" >&2
    exit 1
  fi
fi
export PATH="$VENV/bin:$PATH"
