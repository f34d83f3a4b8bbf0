"""Values left from the example configuration (bridge.yaml, model-deploy/config/*.json).

The example files ship with made-up values that only look real: account ids of one repeated
digit (``111111111111`` in bridge.yaml, ``222222222222`` / ``333333333333`` in the stage configs),
service connection ids of one repeated digit (``33333333-3333-4333-8333-333333333333``), and the
organization ``contoso``; the READMEs use ``123456789012`` and ``<organization GUID>``-style
markers. A value (any string in the configuration, also inside an ARN, a bucket name or a list)
is a placeholder when :data:`PLACEHOLDER` finds one of:

``account``  a 12-digit run that is one digit repeated, or ``123456789012`` (not part of a longer
             number);
``uuid``     a UUID whose hex digits are all one digit, apart from its version and variant
             positions (``33333333-3333-4333-8333-333333333333``, the nil UUID);
``marker``   an angle-bracket marker: ``<organization GUID>``, ``<account>``;
``replace``  ``REPLACE`` in capitals (``REPLACE_ME``, ``REPLACEME``), or ``replace-me`` /
             ``replace_me`` in any case;
``example``  ``example``, ``contoso`` or ``fabrikam`` (the names Microsoft's documentation
             uses), in any case, not inside a longer word; only in values without whitespace
             (ids, names, ARNs, URLs): a description may say "example".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

PLACEHOLDER = re.compile(
    r"(?P<account>(?<!\d)(?:(?P<digit>\d)(?P=digit){11}|123456789012)(?!\d))"
    r"|(?P<uuid>(?<![0-9A-Fa-f-])(?P<hex>[0-9A-Fa-f])(?P=hex){7}-(?P=hex){4}-[0-9A-Fa-f](?P=hex){3}"
    r"-[0-9A-Fa-f](?P=hex){3}-(?P=hex){12}(?![0-9A-Fa-f-]))"
    r"|(?P<marker><[^<>\s][^<>]*>)"
    r"|(?P<replace>REPLACE|(?i:replace[-_]me))"
    r"|(?P<example>(?i:(?<![a-z])(?:example|contoso|fabrikam)(?![a-z])))"
)
KINDS = {
    "account": "example account id",
    "uuid": "example id",
    "marker": "marker",
    "replace": "REPLACE marker",
    "example": "example name",
}


def placeholder(value: str) -> str | None:
    """Why ``value`` is a placeholder (``"example account id 111111111111"``), or ``None``."""
    for match in PLACEHOLDER.finditer(value):
        kind = match.lastgroup or ""
        if kind in ("digit", "hex"):  # a named group inside another: name the outer one
            kind = next(name for name in KINDS if match.group(name))
        if kind == "example" and any(c.isspace() for c in value):
            continue
        return f"{KINDS[kind]} {match.group(0)}"
    return None


def leaves(document: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, text) of every scalar in a decoded document; list items as ``key[n]``."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(document, list | tuple):
        for n, value in enumerate(document):
            yield from leaves(value, f"{prefix}[{n}]")
    elif isinstance(document, str | int) and not isinstance(document, bool):
        yield prefix, str(document)


def find(document: Any) -> list[tuple[str, str, str]]:
    """(key, value, why) of every placeholder in ``document``."""
    found = []
    for key, value in leaves(document):
        why = placeholder(value)
        if why:
            found.append((key, value, why))
    return found
