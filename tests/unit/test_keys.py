"""The Redis key layout: one customer's keys never meet another's, and share one Cluster slot."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from stream.windows import keys

PROPERTY = settings(database=None, deadline=None)
IDS = st.text(min_size=1, max_size=40) | st.text(alphabet="{}%(:)7BDbd25a", min_size=1, max_size=12)
SUFFIXES = st.text(max_size=20) | st.text(alphabet="{}%:sentaiv", max_size=10)


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first '{' and the first '}' after it, if any."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start != -1 and end > start + 1 else key


def customer_keys(customer_id: str, event_id: str, alert_id: str, sink: str) -> list[str]:
    return [
        keys.customer_state(customer_id),
        keys.seen_event(customer_id, event_id),
        keys.delivered(customer_id, alert_id, sink),
        keys.open_alerts(customer_id),
    ]


def test_brace_and_paren_ids_no_longer_share_state() -> None:
    # The old escaping mapped both to cw:{br(389fe3ed)}:state: one state, dedupe set and alert ledger.
    assert keys.customer_state("br{389fe3ed}") != keys.customer_state("br(389fe3ed)")
    assert keys.seen_event("br{389fe3ed}", "e1") != keys.seen_event("br(389fe3ed)", "e1")


def test_ids_stay_readable() -> None:
    assert keys.customer_state("cust-0042") == "cw:{cust-0042}:state"
    assert keys.customer_state("br{389fe3ed}") == "cw:{br%7B389fe3ed%7D}:state"
    assert keys.customer_state("100%") == "cw:{100%25}:state"
    assert keys.customer_state("a%7Bb") == "cw:{a%257Bb}:state"  # not the same as "a{b"
    assert keys.seen_event("c:1", "e:2") == "cw:{c:1}:seen:e:2"


def test_an_empty_id_is_refused() -> None:
    # "{}" is no hash tag: Redis would hash the whole key and split the customer's keys over slots.
    with pytest.raises(ValueError, match="empty"):
        keys.customer_state("")


@PROPERTY
@given(IDS, IDS)
@example("br{389fe3ed}", "br(389fe3ed)")
@example("a{b", "a%7Bb")
@example("%", "%25")
def test_distinct_ids_have_distinct_state_keys(a: str, b: str) -> None:
    if a != b:
        assert keys.customer_state(a) != keys.customer_state(b)


@PROPERTY
@given(IDS)
def test_the_tag_is_one_brace_pair_and_decodes_back(customer_id: str) -> None:
    tag = keys.customer_state(customer_id).removeprefix("cw:").removesuffix(":state")
    assert tag.count("{") == 1 and tag.count("}") == 1
    assert tag.startswith("{") and tag.endswith("}")
    assert unquote(tag[1:-1]) == customer_id  # injective: the id can be read back


@PROPERTY
@given(IDS, SUFFIXES, SUFFIXES, SUFFIXES)
def test_all_keys_of_a_customer_hash_to_one_slot(customer_id: str, event_id: str, alert_id: str, sink: str) -> None:
    built = customer_keys(customer_id, event_id, alert_id, sink)
    tags = {hash_tag(key) for key in built}
    assert len(tags) == 1 and "{" not in tags.pop()
    assert len({key_slot(key.encode()) for key in built}) == 1


@PROPERTY
@given(IDS, IDS, SUFFIXES, SUFFIXES, SUFFIXES, SUFFIXES, SUFFIXES, SUFFIXES)
@example("br{389fe3ed}", "br(389fe3ed)", "e", "e", "r", "r", "s", "s")
@example("a", "a}:seen:x{", "x", "e", "r", "s", "r", "s")
@example("a", "b", "x", "x", "e", "e", "s", "s")
def test_keys_of_different_customers_never_meet(
    a: str, b: str, event_a: str, event_b: str, alert_a: str, alert_b: str, sink_a: str, sink_b: str
) -> None:
    if a != b:
        mine = set(customer_keys(a, event_a, alert_a, sink_a))
        theirs = set(customer_keys(b, event_b, alert_b, sink_b))
        assert not mine & theirs
        app_keys = {
            f(app) for app in (a, b, "churnwatch") for f in (keys.pending_index, keys.pending_triggers, keys.quarantine)
        }
        assert not mine & app_keys


@PROPERTY
@given(IDS, SUFFIXES, SUFFIXES, SUFFIXES)
def test_a_customers_kinds_of_key_never_meet(customer_id: str, event_id: str, alert_id: str, sink: str) -> None:
    assert len(set(customer_keys(customer_id, event_id, alert_id, sink))) == 4


def test_lua_scripts_take_every_key_from_python() -> None:
    """Keys built inside a script would bypass this module's escaping (and Cluster's slot check)."""
    scripts = sorted((Path(keys.__file__).parent).glob("*.lua"))
    assert scripts
    for script in scripts:
        code = "\n".join(line.split("--")[0] for line in script.read_text().splitlines())
        calls = re.findall(r"redis\.call\(\s*'[A-Z]+'\s*,\s*([^,)]+)", code)
        assert calls, script.name
        aliases = set(re.findall(r"local (\w+) = KEYS\[\d+\]\n", code))
        for target in (t.strip() for t in calls):
            assert re.fullmatch(r"KEYS\[[\w +*-]+\]", target) or target in aliases, f"{script.name}: key {target!r}"
        assert keys.PREFIX + ":" not in code, f"{script.name} spells a key itself"
