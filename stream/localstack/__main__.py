"""``python -m stream.localstack up|down|status`` (same commands as ``churnwatch stack``)."""

from __future__ import annotations

from .cli import stack_group

if __name__ == "__main__":
    stack_group(prog_name="python -m stream.localstack")
