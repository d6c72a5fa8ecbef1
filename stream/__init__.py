"""Where data and state live: Kafka consumption, Redis windows, metrics and the worker process."""
