"""Rule unit tests: ``churnwatch rules test FILE...``, in the spirit of ``promtool test rules``.

A product team writes, next to its rules, YAML files of customers' events and the alerts they must
(and must not) produce, and runs them in CI without Kafka or Redis. The events are folded into
windows by :mod:`stream.windows.memory`, the in-memory twin of the Redis script, and the rules are
evaluated exactly as the worker evaluates them.

A test file (``rules/defaults/tests/purchases_test.yaml``)::

    rule_files: [..]                     # relative to this file; files or directories (default: ..)
    evaluate_at: 2026-06-30T12:00:00Z    # when every test is evaluated (a test may set its own)
    enable: [purchase-frequency-drop]    # rules shipped off, evaluated here as if switched on (default: none)
    tests:
      - name: a weekly buyer who stopped 40 days ago is flagged
        events:                          # in arrival order
          - {customer: c1, purchase: {every: 7d, from: 119d ago, until: 40d ago, amount: 20}}
          - {customer: c1, interaction: {kind: login, at: 1d ago}}
          - {customer: c2, feedback: {kind: nps, score: 3, at: 2h ago, comment: slow delivery}}
          - {customer: c3, purchase: {at: 2026-06-01T10:00:00Z, amount: 12.5}, segment: vip}
        expect:                          # every alert that must fire; nothing else may fire
          - {rule: purchase-frequency-drop, customer: c1, severity: warning, evidence: {recent_purchases: 0}}
          - {rule: nps-detractor, customer: c2, message_contains: "3/10"}

Each customer named in a test (in its events or expectations) is evaluated once, at ``evaluate_at``,
with every enabled rule (active and shadow) and the disabled ones listed under ``enable`` (an
expectation of any other disabled rule is an error: it never fires). The test passes when the
alerts that fire are exactly the expected ones (rule and customer; severity, the evidence keys
given and ``message_contains`` when given). Cooldowns and once-per-answer episodes are alert
bookkeeping and play no part.
"""

from stream.ruletest.report import main
from stream.ruletest.runner import FileResult, RuleTestResult, run_file, run_files

__all__ = ["FileResult", "RuleTestResult", "main", "run_file", "run_files"]
