"""What is suspicious: pure warning-rule logic over a customer's window state.

Nothing in this package does I/O beyond reading rule files: no Kafka, Redis or HTTP.
A rule is a pure function of a :class:`~rules.state.CustomerState` and the time given to it.
"""
