"""Rule files the tests share, as the YAML a team would write."""

OVERDUE_RULES = """
rules:
  - id: purchase-overdue
    kind: overdue
    multiple: 3.0
    min_purchase_days: 4
    min_silence: 14d
    cooldown: 1d
    message: "silent for {{ days_since_last_purchase }} days, usually every {{ typical_gap_days }}"
"""
"""An absence rule judged on time: three times the customer's long gap, at least 14 days."""

OWNED_OVERDUE_RULES = """
rules:
  - id: purchase-overdue
    kind: overdue
    multiple: 3.0
    min_purchase_days: 4
    min_silence: 14d
    owner: retention
    message: "no purchase for {{ days_since_last_purchase }} days; usually every {{ typical_gap_days }} days"
"""
"""purchase-overdue with an owner team, as the live routing and Slack tests route and show it."""
