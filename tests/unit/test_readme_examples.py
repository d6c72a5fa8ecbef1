"""The README's 'Adding a warning rule' walk-through really works: its rule checks and its test passes."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

from click.testing import CliRunner

from stream.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_adding_a_warning_rule_walkthrough(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Adding a warning rule") :]
    rule_yaml, test_yaml = (textwrap.dedent(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)[:2])
    rules_dir = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "defaults", rules_dir, ignore=shutil.ignore_patterns("tests"))
    (rules_dir / "enterprise.yaml").write_text(rule_yaml)
    (rules_dir / "tests").mkdir()
    (rules_dir / "tests" / "enterprise_test.yaml").write_text(test_yaml)
    runner = CliRunner()

    checked = runner.invoke(main, ["rules", "check", str(rules_dir)])
    assert checked.exit_code == 0, checked.output
    tested = runner.invoke(main, ["rules", "test", str(rules_dir / "tests" / "enterprise_test.yaml")])
    assert tested.exit_code == 0, tested.output
    assert "2 passed, 0 failed" in tested.output

    (rules_dir / "enterprise.yaml").write_text(rule_yaml.replace("spend_30d <", "spend_30 <"))
    broken = runner.invoke(main, ["rules", "check", str(rules_dir)])
    assert broken.exit_code == 1
    assert "rule 'enterprise-spend-halved': field 'condition': CEL error" in broken.output
    assert "undeclared reference to 'spend_30'" in broken.output
