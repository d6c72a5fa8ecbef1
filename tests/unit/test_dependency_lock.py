"""uv.lock is the dependency set every install path uses (bin/run, bin/test, CI, the Dockerfile)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pinned_uv() -> str:
    """The uv that bin/bootstrap.sh installed (exported as $UV by it)."""
    uv = os.environ.get("UV") or str(ROOT / ".cache" / "uv" / "bin" / "uv")
    assert Path(uv).is_file(), f"no pinned uv at {uv}: run the tests with bin/test, which installs it"
    return uv


def test_the_lock_matches_pyproject() -> None:
    checked = subprocess.run(
        [pinned_uv(), "lock", "--check", "--offline", "--project", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, (
        "pyproject.toml and uv.lock disagree: run `bin/lock` and commit uv.lock\n" + checked.stderr
    )


def test_every_install_path_installs_from_the_lock() -> None:
    bootstrap = (ROOT / "bin" / "bootstrap.sh").read_text()
    assert "sync --quiet --locked" in bootstrap
    for script in ("run", "test", "lock"):
        assert "bootstrap.sh" in (ROOT / "bin" / script).read_text(), script
    assert "bin/test" in (ROOT / ".ci" / "run").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv.lock" in dockerfile
    assert "--locked" in dockerfile
    assert "--require-hashes -r bin/uv-requirements.txt" in dockerfile
