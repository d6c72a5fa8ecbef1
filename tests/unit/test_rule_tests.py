"""``churnwatch rules test``: the test-file schema, the runner, the report and the CLI, on small temp files."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.cli import main as cli
from stream.ruletest import main, run_file
from stream.ruletest.loader import load_test_file
from stream.ruletest.runner import same, show
from stream.ruletest.schema import RuleTestFile, parse_moment

RULES = """\
rules:
  - id: detractor
    kind: detractor
    severity: critical
    max_score: 6
    max_age: 14d
    message: "NPS {{ score }}"
  - id: buys-less
    kind: purchase_frequency_drop
    recent_days: 30
    baseline_days: 90
    max_ratio: 0.5
    min_baseline_purchases: 4
    min_history_days: 60
    message: "{{ recent_purchases }} purchases"
  - id: quiet-shadow
    kind: expression
    mode: shadow
    severity: info
    condition: "lifetime_purchases >= 20.0"
    message: "many purchases"
  - id: switched-off
    kind: expression
    enabled: false
    condition: "true"
    message: "never"
"""

EVALUATE_AT = datetime(2026, 6, 30, 12, tzinfo=UTC)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "tests").mkdir()
    return tmp_path


def write_test(rules_dir: Path, body: str, name: str = "x_test.yaml") -> Path:
    path = rules_dir / "tests" / name
    path.write_text(textwrap.dedent(body))
    return path


def run(*paths: Path) -> tuple[int, str]:
    lines: list[str] = []
    code = main(list(paths), lines.append)
    return code, "\n".join(lines)


STOPPED_BUYER = """\
    evaluate_at: 2026-06-30T12:00:00Z
    tests:
      - name: stopped buyer
        events:
          - {customer: c1, purchase: {every: 7d, from: 119d ago, until: 40d ago, amount: 20}}
          - {customer: c2, feedback: {kind: nps, score: 3, at: 2h ago}}
        expect:
          - {rule: buys-less, customer: c1, severity: warning, evidence: {recent_purchases: 0, baseline_purchases: 12}}
          - {rule: detractor, customer: c2, message_contains: "NPS 3"}
"""


def test_a_passing_file(rules_dir: Path) -> None:
    code, output = run(write_test(rules_dir, STOPPED_BUYER))
    assert code == 0, output
    assert "  PASS  stopped buyer" in output
    assert output.splitlines()[-1] == "1 passed, 0 failed"


def test_a_missing_alert_shows_what_the_rule_saw(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: new customer
            events:
              - {customer: c1, purchase: {every: 7d, from: 50d ago, until: 40d ago}}
            expect:
              - {rule: buys-less, customer: c1, severity: warning}
        """,
    )
    code, output = run(path)
    assert code == 1
    assert "  FAIL  new customer" in output
    assert "missing: buys-less for customer c1 (warning)" in output
    assert "not fired: less than 60 days of purchase history" in output
    assert output.splitlines()[-1] == "0 passed, 1 failed"


def test_an_unexpected_alert_shows_its_message_and_evidence(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: nothing expected
            events:
              - {customer: c2, feedback: {kind: nps, score: 3, at: 2h ago}}
        """,
    )
    code, output = run(path)
    assert code == 1
    assert "unexpected: detractor for customer c2 (critical)" in output
    assert "message: NPS 3" in output
    assert 'evidence: score=3, previous_score=null, answered_at="2026-06-30T10:00:00+00:00", drop=null' in output


def test_evidence_severity_and_message_mismatches(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: wrong numbers
            events:
              - {customer: c1, purchase: {every: 7d, from: 119d ago, until: 40d ago}}
            expect:
              - rule: buys-less
                customer: c1
                severity: critical
                evidence: {recent_purchases: 2, expected_purchases: 4.0000001, ratio: 0, nope: 1}
                message_contains: "3 purchases"
        """,
    )
    code, output = run(path)
    assert code == 1
    assert "mismatch: buys-less for customer c1 (warning)" in output
    assert "severity: expected critical, got warning" in output
    assert "evidence.recent_purchases: expected 2, got 0" in output
    assert "evidence.expected_purchases:" not in output  # within the tolerance
    assert "evidence.nope: expected 1, but the alert has no such evidence (recent_purchases, " in output
    assert 'message: expected to contain "3 purchases", got "0 purchases"' in output


def test_a_typo_in_a_test_file_names_file_line_test_and_field(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: typo
            events:
              - {customer: c1, purchase: {at: 1d ago, amout: 20}}
            expect:
              - {rule: detractor, customer: c1, sevrity: critical}
        """,
    )
    code, output = run(path)
    assert code == 1
    assert f"{path}: ERROR, no test ran" in output
    assert f"{path}:5: test 'typo': field 'events[1].purchase.amout': unknown field (misspelt?)" in output
    assert f"{path}:7: test 'typo': field 'expect[1].sevrity': unknown field (misspelt?)" in output
    assert output.splitlines()[-1] == "0 passed, 1 failed"


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ("{customer: c1, feedback: {kind: nps, score: 11, at: 1d ago}}", "events[1].feedback", "between 0 and 10"),
        ("{customer: c1, feedback: {kind: nsp, score: 1, at: 1d ago}}", "events[1].feedback.kind", "'nps'"),
        ("{customer: c1, interaction: {kind: logn, at: 1d ago}}", "events[1].interaction.kind", "'login'"),
        ("{customer: c1, purchase: {at: yesterday}}", "events[1].purchase.at", "'3d ago'"),
        ("{customer: c1, purchase: {at: 3 days ago}}", "events[1].purchase.at", "a number and a unit"),
        ("{customer: c1, purchase: {at: 2026-06-01T10:00:00}}", "events[1].purchase.at", "no timezone"),
        ("{customer: c1, purchase: {every: 7d}}", "events[1].purchase", "both 'every' and 'from'"),
        ("{customer: c1, purchase: {amount: 3}}", "events[1].purchase", "say when"),
        ("{customer: c1}", "events[1]", "exactly one of"),
        ("{customer: c1, purchase: {at: now}, feedback: {kind: nps, score: 1, at: now}}", "events[1]", "exactly one"),
        ("{customer: c1, purchase: {at: 1d ago, amount: -1}}", "events[1].purchase.amount", "greater than or equal"),
        ("{customer: c1, purchase: {every: 1s, from: 30d ago}}", "events[1].purchase", "at most 10000"),
        ("{customer: c1, purchase: {every: 1d, from: 3d ago, until: 5d ago}}", "events[1].purchase", "before 'from'"),
        ("{customer: c1, purchase: {at: 2026-07-01T00:00:00Z}}", "events[1].purchase", "after evaluate_at"),
        ("{customer: c1, id: x, purchase: {every: 1d, from: 3d ago}}", "events[1]", "cannot be used with 'every'"),
    ],
)
def test_invalid_events_are_errors_with_the_field(rules_dir: Path, entry: str, field: str, message: str) -> None:
    path = write_test(
        rules_dir,
        f"""\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: bad event
            events:
              - {entry}
        """,
    )
    code, output = run(path)
    assert code == 1, output
    problem = next(line for line in output.splitlines() if f"field '{field}'" in line)
    assert f"{path}:5: test 'bad event': field '{field}': " in problem
    assert message in problem


def test_an_expectation_of_an_unknown_or_disabled_rule_is_an_error(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: typo in a rule id
            expect:
              - {rule: detracter, customer: c1}
              - {rule: switched-off, customer: c1}
          - name: fine
            events:
              - {customer: c1, feedback: {kind: nps, score: 9, at: 1d ago}}
        """,
    )
    code, output = run(path)
    assert code == 1
    assert "  ERROR typo in a rule id" in output
    assert "field 'expect[1].rule': no rule 'detracter' in the rules under test (buys-less, detractor, " in output
    assert "field 'expect[2].rule': rule 'switched-off' is disabled (enabled: false): it never fires" in output
    assert "(list it under 'enable' at the top of the file to test it as if switched on)" in output
    assert "  PASS  fine" in output
    assert output.splitlines()[-1] == "1 passed, 1 failed"


def test_enable_evaluates_a_disabled_rule_in_every_test_of_the_file_only(rules_dir: Path) -> None:
    """A rule shipped off is tested as if switched on, where it must fire and where it must not; the
    same rules in another file (sharing the loaded set) stay as they are."""
    enabling = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        enable: [switched-off]
        tests:
          - name: it fires once switched on
            events:
              - {customer: c1, feedback: {kind: nps, score: 9, at: 1d ago}}
            expect:
              - {rule: switched-off, customer: c1, message_contains: never}
          - name: and is judged where it is not expected
            events:
              - {customer: c2, feedback: {kind: nps, score: 9, at: 1d ago}}
        """,
        "a_test.yaml",
    )
    plain = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: without enable it stays off
            events:
              - {customer: c3, feedback: {kind: nps, score: 9, at: 1d ago}}
        """,
        "b_test.yaml",
    )
    code, output = run(enabling, plain)
    assert code == 1
    assert "  PASS  it fires once switched on" in output
    assert "  FAIL  and is judged where it is not expected" in output
    assert "unexpected: switched-off for customer c2" in output
    assert "  PASS  without enable it stays off" in output
    assert output.splitlines()[-1] == "2 passed, 1 failed"


def test_enable_names_only_disabled_rules_of_the_set(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        enable: [switched-of, detractor]
        tests:
          - name: any
            events:
              - {customer: c1, feedback: {kind: nps, score: 9, at: 1d ago}}
        """,
    )
    code, output = run(path)
    assert code == 1
    assert f"{path}: ERROR, no test ran" in output
    unknown = "no rule 'switched-of' in the rules under test (the disabled ones: switched-off)"
    assert f"{path}:2: field 'enable[1]': {unknown}" in output
    assert f"{path}:2: field 'enable[2]': rule 'detractor' is enabled already: remove it from 'enable'" in output

    twice = "evaluate_at: 2026-06-30T12:00:00Z\nenable: [switched-off, switched-off]\ntests: [{name: a}]\n"
    write_test(rules_dir, twice)
    _, output = run(path)
    assert "'enable' names a rule twice: switched-off" in output


def test_an_invalid_rule_file_is_reported_with_its_file_rule_and_field(rules_dir: Path) -> None:
    (rules_dir / "rules.yaml").write_text("rules:\n  - id: x\n    kind: detractor\n    message: hi\n    max_scor: 5\n")
    path = write_test(rules_dir, STOPPED_BUYER)
    code, output = run(path)
    assert code == 1
    assert f"{path}: ERROR, no test ran" in output
    assert f"{rules_dir / 'rules.yaml'}: rule 'x': field 'max_scor': unknown field (misspelt?)" in output
    assert output.splitlines()[-1] == "0 passed, 1 failed"


def test_the_test_directory_is_not_read_as_rules(rules_dir: Path) -> None:
    """``load_rule_set(dir)`` reads only the directory's own *.yaml, so tests/ next to the rules is safe."""
    write_test(rules_dir, STOPPED_BUYER)
    write_test(rules_dir, "not: [a, rule, file]\n", name="helper.yaml")
    code, output = run(rules_dir / "tests" / "x_test.yaml")
    assert code == 0, output


def test_relative_times_count_back_from_evaluate_at_and_a_test_may_override_it(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: file time
            events:
              - {customer: c1, feedback: {kind: nps, score: 2, at: 90m ago}}
            expect:
              - {rule: detractor, customer: c1, evidence: {answered_at: 2026-06-30T10:30:00Z}}
          - name: own time
            evaluate_at: 2026-01-10T00:00:00+01:00
            events:
              - {customer: c1, feedback: {kind: nps, score: 2, at: 1w ago}}
              - {customer: c2, feedback: {kind: nps, score: 2, at: 2025-12-01}}
            expect:
              - {rule: detractor, customer: c1, evidence: {answered_at: "2026-01-02T23:00:00+00:00"}}
        """,
    )
    code, output = run(path)
    assert code == 0, output
    assert output.splitlines()[-1] == "2 passed, 0 failed"


def test_repetition_is_inclusive_and_ends_at_evaluate_at_by_default(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: t
            events:
              - {customer: c1, purchase: {every: 7d, from: 28d ago, until: 7d ago}}
              - {customer: c1, interaction: {kind: login, every: 12h, from: 2d ago}}
              - {customer: c1, feedback: {kind: csat, score: 4, every: 1d, from: 2026-06-20T00:00:00Z, until: 3d ago}}
        """,
    )
    loaded = load_test_file(path)
    assert loaded.model is not None
    entries = loaded.model.tests[0].events
    purchases = entries[0].spec.times(EVALUATE_AT)
    assert purchases == [EVALUATE_AT - timedelta(days=d) for d in (28, 21, 14, 7)]
    assert len(entries[1].spec.times(EVALUATE_AT)) == 5  # 2d ago ... now, every 12 hours
    assert entries[2].spec.times(EVALUATE_AT)[-1] == datetime(2026, 6, 27, tzinfo=UTC)


def test_events_arrive_in_the_listed_order_late_and_redelivered_events_are_noted(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: late history
            events:
              - {customer: c1, purchase: {at: 1d ago}}
              - {customer: c1, purchase: {every: 7d, from: 200d ago, until: 152d ago}}
              - {customer: c1, id: p-1, purchase: {at: 2d ago}}
              - {customer: c1, id: p-1, purchase: {at: 2d ago}}
            expect:
              - {rule: buys-less, customer: c1}
        """,
    )
    code, output = run(path)
    assert code == 1
    assert "note: 7 events of c1 dropped as late: more than 150 days older" in output
    assert "note: 1 event of c1 counted once: an event id given again is a redelivery" in output


def test_shadow_rules_are_evaluated_and_marked(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: daily buyer
            events:
              - {customer: c1, purchase: {every: 1d, from: 20d ago}}
        """,
    )
    code, output = run(path)
    assert code == 1
    assert "unexpected: quiet-shadow for customer c1 (info, shadow)" in output


def test_evaluate_at_is_required_somewhere(rules_dir: Path) -> None:
    path = write_test(rules_dir, "tests:\n  - name: when?\n    events: []\n")
    code, output = run(path)
    assert code == 1
    assert "test 'when?': field 'evaluate_at': no evaluation time" in output


def test_file_level_problems(rules_dir: Path, tmp_path: Path) -> None:
    dup = write_test(
        rules_dir, "evaluate_at: 2026-06-30T12:00:00Z\ntests:\n  - name: a\n  - name: a\n", "dup_test.yaml"
    )
    assert "test names must be unique; repeated: a" in run(dup)[1]
    assert "expected a mapping with a 'tests:' list" in run(write_test(rules_dir, "- a\n", "list_test.yaml"))[1]
    assert "not valid YAML" in run(write_test(rules_dir, "tests: [\n", "yaml_test.yaml"))[1]
    assert (
        "field 'tests': required field is missing" in run(write_test(rules_dir, "rule_files: [..]\n", "e_test.yaml"))[1]
    )
    assert "no such file or directory" in run(tmp_path / "nowhere_test.yaml")[1]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no rule test files (*_test.yaml) in this directory" in run(empty)[1]


def test_rule_files_relative_to_the_test_file_and_several_of_them(rules_dir: Path) -> None:
    (rules_dir / "more").mkdir()
    (rules_dir / "more" / "extra.yaml").write_text(
        "rules:\n  - id: any-csat\n    kind: low_score\n    survey: csat\n    threshold: 4\n    message: x\n"
    )
    path = write_test(
        rules_dir,
        """\
        rule_files: [../rules.yaml, ../more]
        evaluate_at: 2026-06-30T12:00:00Z
        tests:
          - name: both sets
            events:
              - {customer: c1, feedback: {kind: csat, score: 1, at: 1d ago}}
              - {customer: c1, feedback: {kind: nps, score: 1, at: 1d ago}}
            expect:
              - {rule: any-csat, customer: c1}
              - {rule: detractor, customer: c1}
        """,
    )
    code, output = run(path)
    assert code == 0, output
    (rules_dir / "more" / "extra.yaml").write_text(RULES)
    code, output = run(path)
    assert code == 1 and "duplicate rule id (also defined in" in output


def test_window_settings_can_be_given(rules_dir: Path) -> None:
    path = write_test(
        rules_dir,
        """\
        evaluate_at: 2026-06-30T12:00:00Z
        window: {retention: 10d, feedback_history: 2}
        tests:
          - name: short horizon
            events:
              - {customer: c1, purchase: {at: 1d ago}}
              - {customer: c1, purchase: {at: 20d ago}}
            expect:
              - {rule: buys-less, customer: c1}
        """,
    )
    _, output = run(path)
    assert "dropped as late: more than 10 days older" in output


def test_moments_and_values() -> None:
    assert parse_moment("now").resolve(EVALUATE_AT) == EVALUATE_AT
    assert parse_moment("1.5h ago").resolve(EVALUATE_AT) == EVALUATE_AT - timedelta(minutes=90)
    assert parse_moment("2026-06-01T10:00:00+02:00").resolve(EVALUATE_AT) == datetime(2026, 6, 1, 8, tzinfo=UTC)
    assert same(0, 0.0) and same(4.33, 4.330000001) and not same(4.33, 4.331)
    assert same(None, None) and not same(0, None) and not same(1, True) and same(True, True)
    assert same(datetime(2026, 6, 30, 10, tzinfo=UTC), "2026-06-30T12:00:00+02:00")
    assert show(None) == "null" and show(4.0) == "4" and show("a") == '"a"' and show(False) == "false"


def test_the_schema_is_documented_json_schema() -> None:
    schema = RuleTestFile.model_json_schema()
    assert "tests" in schema["properties"]


def test_cli_exit_codes_and_summary(rules_dir: Path) -> None:
    good = write_test(rules_dir, STOPPED_BUYER, "good_test.yaml")
    result = CliRunner().invoke(cli, ["rules", "test", str(good)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "1 passed, 0 failed"

    write_test(rules_dir, STOPPED_BUYER.replace("score: 3", "score: 8"), "bad_test.yaml")
    result = CliRunner().invoke(cli, ["rules", "test", str(rules_dir / "tests")])
    assert result.exit_code == 1
    assert "missing: detractor for customer c2" in result.output
    assert result.output.splitlines()[-1] == "1 passed, 1 failed"

    assert CliRunner().invoke(cli, ["rules", "test"]).exit_code == 2  # FILES is required


def test_run_file_gives_structured_results(rules_dir: Path) -> None:
    result = run_file(write_test(rules_dir, STOPPED_BUYER))
    assert (result.passed, result.failed) == (1, 0)
    assert [t.name for t in result.tests] == ["stopped buyer"]
