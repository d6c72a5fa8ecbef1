"""Links an alert message carries (a CRM record, a dashboard), built from configured URL templates.

``CHURNWATCH_ALERT_LINKS`` holds ``Name=template`` pairs separated by commas, or a JSON object of
name to template (for a template with a literal comma):
``CRM=https://crm.example/customers/{customer_id},Dashboard=https://grafana.example/d/x?var-customer={customer_id}``.

Templates are checked when the settings load, so a typo stops the start instead of sending broken
links: only the :data:`PLACEHOLDERS` may appear, as plain ``{name}`` (no format specs, no
attributes), and the template must be an absolute http(s) URL. Substituted values come from events
(a customer id may hold ``/``, ``?``, ``#`` or ``|``), so each is percent-encoded whole: it can
neither leave its path segment or query value nor break the mrkdwn ``<url|label>`` around it.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from alerts.model import Alert

PLACEHOLDERS = ("customer_id", "rule_id", "alert_id", "severity", "segment", "owner")
"""What a template may name; each comes from the alert (``segment`` from its customer context)."""
NAME_MAX = 40
_UNSAFE_IN_TEMPLATE = set(" \t\r\n<>|\"'`")
"""Characters that would end or break a mrkdwn link, or are never literal in a URL."""


@dataclass(frozen=True)
class LinkTemplate:
    name: str
    template: str

    def render(self, alert: Alert) -> str | None:
        """The URL for ``alert``; None when a placeholder it uses has no value for this alert (a
        customer without a segment), as a link with a hole in it would lead nowhere."""
        values = _values(alert)
        used = _placeholders(self.template)
        if any(not values.get(name) for name in used):
            return None
        return self.template.format_map({name: quote(values[name] or "", safe="") for name in used})


def _values(alert: Alert) -> dict[str, str | None]:
    segment = alert.customer.get("segment")
    return {
        "customer_id": alert.customer_id,
        "rule_id": alert.rule_id,
        "alert_id": alert.alert_id,
        "severity": alert.severity.value,
        "segment": None if segment is None else str(segment),
        "owner": alert.owner,
    }


def _placeholders(template: str) -> list[str]:
    """The names ``template`` substitutes; raises ValueError for anything but plain known ``{name}``s."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone '{' or '}'
        raise ValueError(f"{exc} (write a literal brace as {{{{ or }}}})") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            shown = "{}" if name == "" else f"{{{name}}}"
            raise ValueError(f"unknown placeholder {shown}; known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion")
        names.append(name)
    return names


def link_template(name: str, template: str) -> LinkTemplate:
    """A checked template; raises ValueError naming the link and what is wrong with it."""
    name, template = name.strip(), template.strip()
    if not name or len(name) > NAME_MAX:
        raise ValueError(f"link name {name!r}: 1 to {NAME_MAX} characters")
    try:
        _placeholders(template)
        if bad := sorted(_UNSAFE_IN_TEMPLATE & set(template)):
            raise ValueError(f"characters {''.join(bad)!r} are not allowed in a URL template")
        example = urlsplit(template.format_map(dict.fromkeys(PLACEHOLDERS, "x")))
        if example.scheme not in ("http", "https") or not example.netloc:
            raise ValueError("must be an absolute http:// or https:// URL")
    except ValueError as exc:
        raise ValueError(f"link {name!r}: {exc}") from None
    return LinkTemplate(name, template)


def parse_link_templates(text: str) -> tuple[LinkTemplate, ...]:
    """``Name=template,Name=template`` or a JSON object ``{"Name": "template"}``; empty: no links."""
    text = text.strip()
    if not text:
        return ()
    pairs: Sequence[tuple[str, str]]
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON object of name to URL template: {exc}") from None
        if not isinstance(loaded, Mapping) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError("a JSON object of name to URL template (strings) is expected")
        pairs = list(loaded.items())
    else:
        pairs = []
        for item in text.split(","):
            name, sep, template = item.partition("=")
            if not sep:
                raise ValueError(f"{item.strip()!r} is not Name=template")
            pairs.append((name, template))
    links = tuple(link_template(name, template) for name, template in pairs)
    if len({link.name for link in links}) != len(links):
        raise ValueError("two links have the same name")
    return links
