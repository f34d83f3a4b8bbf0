"""Tags as SageMaker and CloudFormation accept them.

botocore's SageMaker model: ``Tag.Key`` 1-128 and ``Tag.Value`` 0-256 characters of
``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`` (letters, spaces, digits and ``_.:/=+-@``). CloudFormation
passes stack tags on to the resources it creates (SageMaker endpoints among them) and requires
a value of at least one character. Azure DevOps names are freer: a second pipeline of a
repository is named "<repo> (1)", and names may hold ``&``, ``#``, ``,``. So every tag we write
goes through :func:`clean_tags`: each run of other characters becomes ``_``, keys and values are
cut to their maximum, and a tag whose value is empty is left out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

MAX_KEY, MAX_VALUE = 128, 256
_ALLOWED_PUNCTUATION = frozenset("_.:/=+-@")


def _allowed(char: str) -> bool:
    category = unicodedata.category(char)
    # \p{L} letters, \p{Z} separators (spaces), \p{N} numbers
    return category[0] in "LZN" or char in _ALLOWED_PUNCTUATION


def clean_tag_text(text: str, limit: int) -> str:
    """``text`` with each run of characters outside the tag pattern replaced by ``_``."""
    out: list[str] = []
    for char in text:
        if _allowed(char):
            out.append(char)
        elif not out or out[-1] != "_":
            out.append("_")
    return "".join(out).strip()[:limit]


def clean_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` as SageMaker and CloudFormation accept them (see the module docstring)."""
    cleaned: dict[str, str] = {}
    for key, value in tags.items():
        name = clean_tag_text(str(key), MAX_KEY)
        text = clean_tag_text(str(value), MAX_VALUE)
        if name and text:
            cleaned[name] = text
    return cleaned


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """The ``Tags`` request member, sorted by key (stable requests, stable change sets)."""
    return [{"Key": k, "Value": v} for k, v in sorted(clean_tags(tags).items())]
