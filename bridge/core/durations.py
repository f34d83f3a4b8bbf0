"""``6h``, ``90m``, ``1h30m``, ``45s`` or plain seconds, as seconds."""

from __future__ import annotations

import re

from bridge.errors import UserError

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_duration(text: str | float | int, *, name: str = "--timeout") -> float:
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        value = text.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", value):
            seconds = float(value)
        elif value and _PART.sub("", value) == "":
            units = {"h": 3600, "m": 60, "s": 1}
            seconds = sum(float(n) * units[u] for n, u in _PART.findall(value))
        else:
            raise UserError(f"{name} {text!r}: expected a duration like 6h, 90m, 1h30m or 3600")
    if seconds <= 0:
        raise UserError(f"{name} {text!r}: must be greater than zero")
    return seconds
