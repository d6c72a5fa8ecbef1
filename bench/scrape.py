"""Reading the worker's ``/metrics``: Prometheus samples, sums over topics and labels, histogram quantiles.

The worker is a separate process, so its ``/metrics`` page is the only view of how far it got and
what it did; the benchmark polls it to time the run and reads it once more for the report.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable

from prometheus_client.parser import text_string_to_metric_families

from stream.localstack.worker import WorkerProcess

Sample = tuple[str, dict[str, str], float]
"""One Prometheus sample: (name, labels, value)."""


def scrape(worker: WorkerProcess) -> list[Sample]:
    text = worker.get("/metrics")
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: Iterable[Sample], name: str, topics: Collection[str] | None = None, **labels: str) -> float:
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name
        and (topics is None or sample_labels.get("topic") in topics)
        and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def by_label(
    samples: Iterable[Sample], name: str, label: str, topics: Collection[str] | None = None
) -> dict[str, float]:
    found: dict[str, float] = defaultdict(float)
    for sample_name, labels, value in samples:
        if sample_name == name and (topics is None or labels.get("topic") in topics):
            found[labels.get(label, "")] += value
    return {k: v for k, v in sorted(found.items()) if v}


def finished(samples: Iterable[Sample], topics: Collection[str]) -> float:
    """Events the worker is done with: processed (any outcome) or dead-lettered."""
    samples = list(samples)
    return total(samples, "churnwatch_event_processing_seconds_count", topics) + total(
        samples, "churnwatch_deadletters_total", topics
    )


def histogram_quantile(samples: Iterable[Sample], name: str, topics: Collection[str], q: float) -> float | None:
    """Approximate quantile from cumulative buckets summed over ``topics`` (linear within a bucket)."""
    buckets: dict[float, float] = defaultdict(float)
    for sample_name, labels, value in samples:
        if sample_name == f"{name}_bucket" and labels.get("topic") in topics:
            buckets[float(labels["le"])] += value
    count = buckets.get(math.inf, 0.0)
    if not count:
        return None
    rank = q * count
    low, below = 0.0, 0.0
    for bound in sorted(buckets):
        cumulative = buckets[bound]
        if cumulative >= rank:
            if math.isinf(bound):
                return low  # beyond the last finite bucket: report its bound as a floor
            return low + (bound - low) * (rank - below) / (cumulative - below)
        low, below = bound, cumulative
    return None
