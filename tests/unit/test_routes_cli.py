"""``churnwatch routes check|test|schema`` and the CHURNWATCH_ROUTES_FILE setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.cli import main
from stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "alerts" / "routes.example.yaml"
DEFAULTS = ROOT / "rules" / "defaults"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["routes", *args])
    return result.exit_code, result.stdout, result.stderr


def test_check_accepts_the_shipped_example() -> None:
    code, out, _ = run("check", str(EXAMPLE))
    assert code == 0
    assert out == f"ok: 5 receivers, 6 routes in {EXAMPLE}\n"


def test_check_prints_every_problem_with_file_and_field_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "routes.yaml"
    bad.write_text(
        "receivers:\n  - {name: default, type: log}\n"
        "route:\n  receiver: default\n  routes:\n    - {receiver: vip, matchers: {sevrity: critical}}\n"
        "    - {receiver: nobody}\n"
    )
    code, out, err = run("check", str(bad))
    assert code == 2 and out == ""
    # The structure comes first: the unknown receiver is reported once the typo is fixed (next test).
    assert err.splitlines() == [
        f"{bad}: field 'route.routes[1].matchers.sevrity': unknown field (misspelt?)",
        f"1 problem(s) in {bad}",
    ]


def test_check_reports_unknown_receivers_once_the_structure_is_valid(tmp_path: Path) -> None:
    bad = tmp_path / "routes.yaml"
    bad.write_text(
        "receivers:\n  - {name: default, type: log}\n"
        "route:\n  receiver: default\n  routes:\n    - {receiver: vip}\n    - {receiver: nobody}\n"
    )
    code, _, err = run("check", str(bad))
    assert code == 2
    assert err.splitlines() == [
        f"{bad}: field 'route.routes[1].receiver': no receiver 'vip' (known: default)",
        f"{bad}: field 'route.routes[2].receiver': no receiver 'nobody' (known: default)",
        f"2 problem(s) in {bad}",
    ]


def test_check_reads_churnwatch_routes_file_when_no_file_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNWATCH_ROUTES_FILE", str(EXAMPLE))
    code, out, _ = run("check")
    assert code == 0 and out.startswith("ok: 5 receivers")


def test_check_without_a_file_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHURNWATCH_ROUTES_FILE", raising=False)
    code, _, err = run("check")
    assert code == 2 and "give FILE or set CHURNWATCH_ROUTES_FILE" in err


def test_test_prints_each_receiver_with_its_route_and_timing() -> None:
    code, out, _ = run(
        "test", str(EXAMPLE), "--rule", "purchase-overdue", "--severity", "warning", "--team", "retention",
        "--lifetime-spend", "1500",
    )  # fmt: skip
    assert code == 0
    assert out.splitlines() == [
        "churn-vip       route.routes[1]  group_wait=0s group_interval=5m repeat_interval=4h "
        "max_alerts_per_hour=none send_resolved=true",
        "retention-team  route.routes[3]  group_wait=30s group_interval=5m repeat_interval=4h "
        "max_alerts_per_hour=60 send_resolved=true",
    ]


def test_test_takes_the_team_from_the_rules_owner() -> None:
    code, out, _ = run(
        "test", str(EXAMPLE), "--rule", "nps-detractor", "--severity", "critical", "--rules", str(DEFAULTS)
    )
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["crm", "route.routes[2].routes[1]"],
        ["support-team", "route.routes[2].routes[2]"],
    ]


def test_test_with_an_unknown_rule_in_the_rule_set_is_a_usage_error() -> None:
    code, _, err = run("test", str(EXAMPLE), "--rule", "nope", "--severity", "critical", "--rules", str(DEFAULTS))
    assert code == 2 and "no rule 'nope'" in err


def test_test_falls_back_to_the_default_route() -> None:
    code, out, _ = run("test", str(EXAMPLE), "--rule", "x", "--severity", "info", "--segment", "smb")
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()] == [["default", "route"]]


def test_expect_pins_the_receivers() -> None:
    args = ["test", str(EXAMPLE), "--rule", "x", "--severity", "warning", "--team", "retention"]
    assert run(*args, "--expect", "retention-team")[0] == 0
    code, _, err = run(*args, "--lifetime-spend", "5000", "--expect", "retention-team")
    assert code == 1
    assert "expected retention-team; reached churn-vip, retention-team" in err


def test_test_refuses_an_invalid_routes_file(tmp_path: Path) -> None:
    bad = tmp_path / "routes.yaml"
    bad.write_text("receivers: [{name: a, type: log}]\nroute: {receiver: b}\n")
    code, out, err = run("test", str(bad), "--rule", "x", "--severity", "info")
    assert code == 2 and out == ""
    assert f"{bad}: field 'route.receiver': no receiver 'b' (known: a)" in err


def test_schema_is_the_routes_files_json_schema() -> None:
    code, out, _ = run("schema")
    assert code == 0
    document = json.loads(out)
    assert set(document["properties"]) == {"receivers", "route", "inhibit_rules"}
    assert "continue" in document["$defs"]["Route"]["properties"]


def test_the_json_schema_for_editors_is_current() -> None:
    committed = json.loads((ROOT / "alerts" / "routes.schema.json").read_text())
    assert committed == json.loads(run("schema")[1]), "regenerate: churnwatch routes schema > alerts/routes.schema.json"


def test_routes_file_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHURNWATCH_ROUTES_FILE", raising=False)
    assert Settings().routes_file is None
    monkeypatch.setenv("CHURNWATCH_ROUTES_FILE", "/etc/churnwatch/routes.yaml")
    assert Settings().routes_file == Path("/etc/churnwatch/routes.yaml")
    monkeypatch.setenv("CHURNWATCH_ROUTES_FILE", "")
    assert Settings().routes_file is None


def test_the_readme_example_prints_what_the_command_prints() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Routing alerts") :]
    block = section[section.index("$ churnwatch routes test") :]
    command, _, rest = block.partition("\n    ")
    flags, _, rest = rest.partition("\n")
    shown = rest[: rest.index("```")].splitlines()
    args = command.removeprefix("$ churnwatch routes ").removesuffix(" \\").split() + flags.split()
    code, out, _ = run(*[str(ROOT / a) if a.endswith(".yaml") else a for a in args])
    assert code == 0
    assert out.splitlines() == shown
