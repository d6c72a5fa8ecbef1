"""Who is told, how often and how: the alert pipeline, as stages with pure decisions.

In the order an alert meets them (the worker's :class:`stream.processor.EventProcessor` runs the
first, :class:`alerts.dispatch.AlertDispatcher` the rest; Redis stays behind Protocols in ``stream/``):

1. cooldown and episodes, at most one alert per event: :mod:`alerts.cooldown`
2. routing, which receivers: :mod:`alerts.routing`
3. silences: :mod:`alerts.silence` (run by :mod:`alerts.stages`)
4. inhibition by an open critical alert of the customer: :mod:`alerts.inhibition` (run by :mod:`alerts.stages`)
5. the notification log, skipping a receiver that has the alert already: :mod:`alerts.nflog`
6. per receiver, flap damping of resolutions: :mod:`alerts.flapping`
7. per receiver, grouping into digests and the storm limit: :mod:`alerts.grouping`, :mod:`alerts.digests`
8. delivery with retries to the receivers of :mod:`alerts.receivers` (:mod:`alerts.notify`), then the log's mark
"""
