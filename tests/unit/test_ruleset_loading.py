from pathlib import Path

import pytest

from rules.ruleset import RuleConfigError, RuleFile, load_rule_set

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"

VALID = """
rules:
  - id: drop
    kind: purchase_frequency_drop
    message: "{{ recent_purchases }} vs {{ expected_purchases }}"
    cooldown: 3d
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(RuleConfigError) as info:
        load_rule_set(path)
    return [str(p) for p in info.value.problems]


def test_shipped_defaults_load() -> None:
    rule_set = load_rule_set(DEFAULTS)
    assert {r.id for r in rule_set.rules} >= {"purchase-frequency-drop", "nps-detractor"}
    assert len(rule_set.version) == 12


def test_valid_file(tmp_path: Path) -> None:
    rule_set = load_rule_set(write(tmp_path, "a.yaml", VALID))
    (rule,) = rule_set.rules
    assert rule.id == "drop" and rule.cooldown.days == 3


def test_typo_in_a_key_names_file_rule_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "typo.yaml", VALID.replace("cooldown:", "cooldwn:"))
    (problem,) = problems(tmp_path)
    assert str(path) in problem and "rule 'drop'" in problem and "field 'cooldwn'" in problem
    assert "unknown field" in problem


def test_wrong_type_and_unknown_kind(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("cooldown: 3d", "recent_days: lots"))
    write(
        tmp_path, "b.yaml", VALID.replace("kind: purchase_frequency_drop", "kind: vibes").replace("id: drop", "id: b")
    )
    found = problems(tmp_path)
    assert any("a.yaml: rule 'drop': field 'recent_days'" in p for p in found)
    assert any("b.yaml: rule 'b'" in p and "vibes" in p for p in found)


def test_bad_duration(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("3d", "three days"))
    (problem,) = problems(tmp_path)
    assert "field 'cooldown'" in problem and "not a duration" in problem


def test_template_with_unknown_variable(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("expected_purchases", "expected_purchase"))
    (problem,) = problems(tmp_path)
    assert "expected_purchase" in problem and "available" in problem


def test_template_syntax_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("{{ recent_purchases }}", "{{ recent_purchases"))
    (problem,) = problems(tmp_path)
    assert "does not parse" in problem


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", VALID)
    (problem,) = problems(tmp_path)
    assert "b.yaml: rule 'drop': field 'id': duplicate rule id (also defined in" in problem


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules: [unclosed")
    write(tmp_path, "b.yml", "- just a list")
    found = problems(tmp_path)
    assert any("a.yaml" in p and "not valid YAML" in p for p in found)
    assert any("b.yml" in p and "'rules:'" in p for p in found)


def test_empty_directory_and_missing_path(tmp_path: Path) -> None:
    assert "no rule files" in problems(tmp_path)[0]
    assert "no such file" in problems(tmp_path / "nope")[0]


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("cooldown: 3d", "cooldown: 3d\n    severty: high\n    max_ratio: 2"))
    found = problems(tmp_path)
    assert any("severty" in p for p in found) and any("max_ratio" in p for p in found)


def test_json_schema_is_generated_from_the_models() -> None:
    schema = RuleFile.model_json_schema()
    text = str(schema)
    assert "purchase_frequency_drop" in text and "detractor" in text and "additionalProperties" in text


def test_owner_and_next_step_are_carried_from_the_rule_to_its_finding(tmp_path: Path) -> None:
    from rules.evaluation import evaluate_rule
    from tests.unit.state_builder import NOW, customer

    text = """
rules:
  - id: silent
    kind: inactivity
    activity: purchase
    silent_for: 30d
    owner: retention
    next_step: >
      Call within 48 h; offer a voucher
    message: "silent {{ days_silent }} days"
"""
    (rule,) = load_rule_set(write(tmp_path, "a.yaml", text)).rules
    assert rule.next_step == "Call within 48 h; offer a voucher"  # a folded scalar's newline is forgiven
    finding = evaluate_rule(rule, customer([40]), NOW)
    assert finding is not None
    assert (finding.owner, finding.next_step) == ("retention", "Call within 48 h; offer a voucher")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('""', "field 'next_step': String should have at least 1 character"),
        ('"   "', "field 'next_step': String should match pattern"),
        ("[call]", "field 'next_step': Input should be a valid string"),
        ('"call\\nthen write"', "field 'next_step': next_step is one line: write it without line breaks"),
        ('"' + "x" * 201 + '"', "field 'next_step': String should have at most 200 characters"),
    ],
)
def test_a_bad_next_step_is_an_error_naming_the_field(tmp_path: Path, value: str, error: str) -> None:
    write(tmp_path, "a.yaml", VALID.replace("cooldown: 3d", f"cooldown: 3d\n    next_step: {value}"))
    (problem,) = problems(tmp_path)
    assert "rule 'drop'" in problem and error in problem, problem
