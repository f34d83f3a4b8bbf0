"""``6h``, ``90m``, ``1h30m``, ``45s`` or plain seconds, as seconds."""

from __future__ import annotations

import math
import re

from bridge.errors import UserError, shown

# [0-9], not \d: Python's re reads \d as any Unicode digit (and float() takes them too), so
# "\u0661h" (an Arabic-Indic one) would be an hour.
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([hms])")


def parse_duration(text: str | float | int, *, name: str = "--timeout") -> float:
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        value = text.strip().lower()
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
            seconds = float(value)
        elif value and _PART.sub("", value) == "":
            units = {"h": 3600, "m": 60, "s": 1}
            seconds = sum(float(n) * units[u] for n, u in _PART.findall(value))
        else:
            raise UserError(
                f"{name} {shown(text)}: expected a duration like 6h, 90m, 1h30m or 3600"
            )
    if not math.isfinite(seconds):  # "999…9" of 400 digits is float("inf")
        raise UserError(f"{name} {shown(text)}: too large to be a duration")
    if seconds <= 0:
        raise UserError(f"{name} {shown(text)}: must be greater than zero")
    return seconds
