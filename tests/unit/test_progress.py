from datetime import UTC, datetime, timedelta

from stream.progress import InputProgress

T0 = datetime(2026, 6, 1, tzinfo=UTC)
TOPICS = ("purchases", "interactions", "feedback")


def tracker(highwaters: dict[tuple[str, int], int | None]) -> InputProgress:
    return InputProgress(TOPICS, tolerance=timedelta(minutes=10), highwater=lambda t, p: highwaters.get((t, p), 0))


def test_nothing_lags_when_every_input_is_read_to_its_end() -> None:
    progress = tracker({("purchases", 0): 3, ("interactions", 0): 1, ("feedback", 0): 0})
    for offset in range(3):
        progress.observe("purchases", 0, offset, T0)
    progress.observe("interactions", 0, 0, T0)
    assert progress.lagging(0, T0 + timedelta(days=1)) == []


def test_an_input_with_unread_events_from_long_ago_holds_evaluation() -> None:
    # Feedback from today is read while three months of purchases are still unread.
    progress = tracker({("purchases", 0): 100, ("feedback", 0): 1})
    progress.observe("purchases", 0, 10, T0 - timedelta(days=90))
    progress.observe("feedback", 0, 0, T0)
    assert progress.lagging(0, T0) == ["purchases"]
    progress.observe("purchases", 0, 99, T0 - timedelta(days=40))  # read to the end
    assert progress.lagging(0, T0) == []


def test_an_input_behind_only_by_the_tolerance_does_not_hold() -> None:
    progress = tracker({("purchases", 0): 100})
    progress.observe("purchases", 0, 10, T0 - timedelta(minutes=5))
    assert progress.lagging(0, T0) == []


def test_an_input_not_fetched_yet_holds_and_partitions_are_independent() -> None:
    progress = tracker({("interactions", 1): None})
    assert progress.lagging(1, T0) == ["interactions"]
    assert progress.lagging(0, T0) == []


def test_invalid_messages_still_advance_the_offset() -> None:
    progress = tracker({("feedback", 2): 2})
    progress.observe("feedback", 2, 0, T0 - timedelta(days=9))
    progress.observe("feedback", 2, 1, None)  # dead-lettered: no event time, but read
    assert progress.lagging(2, T0) == []


def test_complete_until_agrees_with_lagging() -> None:
    progress = tracker({("purchases", 0): 100, ("interactions", 0): 5, ("feedback", 0): 0})
    progress.observe("purchases", 0, 10, T0 - timedelta(days=3))
    progress.observe("interactions", 0, 4, T0)
    until = progress.complete_until(0)
    assert until == T0 - timedelta(days=3) + timedelta(minutes=10)
    for at in (until - timedelta(seconds=1), until, until + timedelta(seconds=1)):
        assert (progress.lagging(0, at) == []) is (at <= until)
    assert tracker({("feedback", 1): None}).complete_until(1) is None
    assert tracker({}).complete_until(3) is not None  # nothing unread anywhere
