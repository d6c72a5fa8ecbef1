import json
from pathlib import Path

from click.testing import CliRunner

from stream.cli import main

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"


def test_rules_check_ok_on_the_shipped_defaults() -> None:
    result = CliRunner().invoke(main, ["rules", "check", str(DEFAULTS)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_rules_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "rules:\n  - id: x\n    kind: detractor\n    message: hi\n    max_scor: 5\n    cooldown: soon\n"
    )
    result = CliRunner().invoke(main, ["rules", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "bad.yaml: rule 'x': field 'max_scor': unknown field" in result.output
    assert "field 'cooldown'" in result.output
    assert "2 problem(s)" in result.output


def test_worker_refuses_to_start_on_an_invalid_rule_set(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules:\n  - id: x\n    kind: nope\n    message: hi\n")
    result = CliRunner().invoke(main, ["worker", "--rules", str(tmp_path)])
    assert result.exit_code == 2
    assert "refusing to start" in result.output and "bad.yaml: rule 'x'" in result.output


def test_schemas_are_json() -> None:
    for what in ("events", "rules"):
        result = CliRunner().invoke(main, ["schema", what])
        assert result.exit_code == 0
        assert json.loads(result.output)
