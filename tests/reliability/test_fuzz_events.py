"""Bad input, part 1: the trigger's event parser (bridge/trigger/events.py) under property-based
fuzzing (hypothesis), seeded from the events in reference/sagemaker-events/ and mutated: fields
missing, added, of the wrong type; weird timestamps; unicode; huge and deeply nested values; the
event as a dict (as Lambda hands it over), as JSON text (an SQS body) and as bytes.

Properties, for every example:
- ``parse_event`` returns a ``ModelPackageStateChange`` or raises ``InvalidEvent`` (a
  ``UserError``, exit code 2), nothing else;
- a rejection is one printable line that names the event field that is wrong, as the module
  formats it (``event field detail.ModelPackageArn: ...``, ``event source is ...``), or, for a
  problem of the event as a whole (not JSON, not UTF-8, over 256 KB, nested too deeply), says so;
- a change to a field the trigger does not read changes nothing;
- what is accepted keeps the module's promises (README, "Only real events"): identifiers ASCII
  without whitespace, the ARN the event's own, the time of the change a UTC time in 2010-2199.

Reproducible: ``derandomize=True``, no example database, and the examples do not depend on
which other modules are loaded (see ``module_independent_examples``).
This module also holds the helpers test_fuzz_configs.py and test_fuzz_cli.py share.
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import UserError
from bridge.sandbox.ado_contract import REFERENCE_DIR
from bridge.trigger.events import (
    EARLIEST,
    LATEST,
    MAX_EVENT_BYTES,
    MODEL_PACKAGE_ARN,
    InvalidEvent,
    ModelPackageStateChange,
    parse_event,
)

# -- shared: settings, counting, strategies, paths --------------------------------------------

# Examples per property (the total over the three files is checked in test_fuzz_cli.py).
EXAMPLES = {"events": 2800, "events_unchanged_by_ignored_fields": 600}
# Python refuses to convert integers of more digits than this (sys.get_int_max_str_digits()).
INT_DIGITS = sys.get_int_max_str_digits()
COUNTS: dict[str, int] = {}


def fuzz_settings(examples: int) -> settings:
    """Reproducible settings: examples derived from the test's name, no example database."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


@contextmanager
def module_independent_examples() -> Iterator[None]:
    """Hypothesis (6.1xx) also draws literal constants found in every local module imported so
    far, so the examples of a derandomized test would depend on which other test files (and
    which bridge modules) were loaded before it. Without them, one file run alone draws the
    examples it draws in the whole folder (hypothesis is pinned: this is its internal API; if it
    is gone, the examples are only as stable as hypothesis makes them)."""
    from hypothesis.internal.conjecture import providers

    original = getattr(providers, "_get_local_constants", None)
    empty = getattr(providers, "Constants", None)
    if original is None or empty is None:
        yield
        return
    providers._get_local_constants = empty
    providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()


def run_counted(counts: dict[str, int], name: str, budget: int, prop: Callable[[], None]) -> None:
    """Run the hypothesis property ``prop`` and check that it saw at least ``budget`` examples."""
    counts[name] = 0
    with module_independent_examples():
        prop()
    print(f"fuzz {name}: {counts[name]} examples (derandomized)")
    assert counts[name] >= budget, f"{name}: only {counts[name]} of {budget} examples ran"


# Characters that break things: line breaks of every kind, NUL and other controls, a BOM, zero
# width, bidi overrides, non-ASCII digits and letters that look ASCII, a lone surrogate (JSON
# allows "\ud800"), an agent logging command, quotes and escapes.
SPECIAL_CHARS = [
    "\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff", "\u200b",
    "\u202e", "\ud800", "\udfff", "\u0661", "\u0663", "\uff12", "\u00e9", "\u0130", "\u00df",
    "\u216b", "\U0001d7d9", "\u0430", " ", "\xa0", "$", "'", '"', "\\", "/", ":", "#",
    "##vso[", "%", "{", "}", "*", "=", ",",
]  # fmt: skip
CHARS = st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARS))


@cache
def texts(max_size: int = 20) -> st.SearchStrategy[str]:
    """Text of up to ``max_size`` pieces (characters, or one of SPECIAL_CHARS)."""
    return st.lists(CHARS, max_size=max_size).map("".join)


@cache
def long_texts() -> st.SearchStrategy[str]:
    """Strings longer than any error line may echo (80) or a field may hold (1024, 2048)."""
    return st.builds(
        lambda chunk, times: chunk * times,
        st.lists(CHARS, min_size=1, max_size=4).map("".join),
        st.sampled_from([81, 300, 1025, 2049, 5000]),
    )


# 2**31, 2**63, ... and integers of as many digits as Python converts, and more (built on draw:
# hypothesis prints the elements of a sampled_from, and such an integer cannot be printed).
HUGE_INTS = st.sampled_from(
    [(1, 31, 2), (1, 63, 2), (-1, 63, 2), (1, 20, 10), (1, 400, 10), (1, INT_DIGITS - 1, 10),
     (1, INT_DIGITS, 10), (-1, INT_DIGITS + 700, 10)]
).map(lambda spec: spec[0] * spec[2] ** spec[1])  # fmt: skip
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), HUGE_INTS, FLOATS, texts(), long_texts()
)


@cache
def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(texts(8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def deeply_nested() -> st.SearchStrategy[Any]:
    """Lists or objects nested up to 5000 deep (a recursive parser or printer breaks at about
    1000, the recursion limit)."""

    def build(depth: int, as_dict: bool) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = {"a": value} if as_dict else [value]
        return value

    return st.builds(build, st.sampled_from([10, 200, 990, 1500, 5000]), st.booleans())


def mutated_string(original: str) -> st.SearchStrategy[str]:
    """``original`` with a small change: a character inserted, replaced or dropped, whitespace
    around it, its case changed, its digits made non-ASCII, or repeated past every limit."""
    n = len(original)
    index = st.integers(0, n)

    def digits(text: str, digit: str) -> str:
        return re.sub(r"[0-9]", digit, text, count=1)

    return st.one_of(
        st.builds(lambda i, c: original[:i] + c + original[i:], index, CHARS),
        st.builds(lambda i, c: original[:i] + c + original[i + 1 :], index, CHARS),
        st.builds(lambda i: original[:i] + original[i + 1 :], index),
        st.builds(lambda s: s + original, st.sampled_from([" ", "\n", "\t", "\u2028"])),
        st.builds(lambda s: original + s, st.sampled_from([" ", "\n", "\r\n", "\x00"])),
        st.just(original.upper()),
        st.just(original.lower()),
        st.builds(
            lambda d: digits(original, d),
            st.sampled_from(["\u0661", "\uff12", "\U0001d7d9", "\u216b"]),
        ),
        st.builds(lambda t: original * t, st.sampled_from([2, 40, 300])),
        st.just(""),
        texts(),
    )


Path = tuple[str | int, ...]


def all_paths(doc: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every key and list index in ``doc``, depth first (the root not included)."""
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        yield (*prefix, key)
        yield from all_paths(value, (*prefix, key))


def container_paths(doc: Any, prefix: Path = ()) -> Iterator[Path]:
    """The paths of every object in ``doc``, the root ``()`` included."""
    if isinstance(doc, dict):
        yield prefix
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        yield from container_paths(value, (*prefix, key))


def get_at(doc: Any, path: Path) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def set_at(doc: Any, path: Path, value: Any) -> None:
    if not path:
        raise ValueError("the root is replaced, not set")
    get_at(doc, path[:-1])[path[-1]] = value


def delete_at(doc: Any, path: Path) -> None:
    del get_at(doc, path[:-1])[path[-1]]


def related(a: Path, b: Path) -> bool:
    """One path is the other or inside it."""
    return a[: len(b)] == b or b[: len(a)] == a


def leaves(value: Any) -> Iterator[Any]:
    """Every scalar in ``value``, at any depth (no recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            yield item


def contains_nonfinite(value: Any) -> bool:
    """NaN or an infinity somewhere (``json.dumps`` writes them; they are not JSON)."""
    return any(isinstance(v, float) and not math.isfinite(v) for v in leaves(value))


TOO_MANY_DIGITS = 10**INT_DIGITS


def contains_long_int(value: Any) -> bool:
    """An integer of more than INT_DIGITS digits (what Python's json neither reads nor writes)."""
    return any(
        isinstance(v, int) and not isinstance(v, bool) and abs(v) >= TOO_MANY_DIGITS
        for v in leaves(value)
    )


@contextmanager
def unlimited_digits() -> Iterator[None]:
    """Let Python write integers of any length (to write the input the parser must refuse)."""
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(INT_DIGITS)


def encode(value: Any, *, ensure_ascii: bool = True) -> str:
    """JSON text of ``value`` as ``json.dumps`` writes it, for any depth and any integer (no
    recursion, no digit limit), so that the parser gets what ``json.dumps`` could not write."""
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii)
    except (RecursionError, ValueError):
        pass
    parts: list[str] = []
    stack: list[Any] = [value]
    literal = object()  # marks a piece of text already made
    while stack:
        item = stack.pop()
        if isinstance(item, tuple) and item and item[0] is literal:
            parts.append(item[1])
        elif isinstance(item, dict):
            pieces: list[Any] = [(literal, "}")]
            for index, (key, child) in enumerate(reversed(list(item.items()))):
                pieces.append(child)
                comma = ", " if index < len(item) - 1 else ""
                pieces.append(
                    (literal, comma + json.dumps(str(key), ensure_ascii=ensure_ascii) + ": ")
                )
            pieces.append((literal, "{"))
            stack.extend(pieces)
        elif isinstance(item, list):
            pieces = [(literal, "]")]
            for index, child in enumerate(reversed(item)):
                pieces.append(child)
                if index < len(item) - 1:
                    pieces.append((literal, ", "))
            pieces.append((literal, "["))
            stack.extend(pieces)
        elif isinstance(item, int) and not isinstance(item, bool):
            with unlimited_digits():
                parts.append(str(item))
        else:
            parts.append(json.dumps(item, ensure_ascii=ensure_ascii))
    return "".join(parts)


def assert_one_line(message: str, *, limit: int = 2000) -> None:
    """An error line: one printable line (no line break, control character or lone surrogate),
    that echoes no value whole (bridge.errors cuts a value at 80 characters, which escaped may
    take ten times as many)."""
    assert message, "empty error message"
    assert message.isprintable(), f"not one printable line: {message!r}"
    assert len(message) <= limit, f"{len(message)} characters: {message[:200]!r}\u2026"


# -- events: seeds and mutations ---------------------------------------------------------------

SEEDS = {
    path.name: json.loads(path.read_text(encoding="utf-8"))
    for path in sorted((REFERENCE_DIR / "sagemaker-events").glob("*.json"))
}
SEED_NAMES = sorted(SEEDS)
PARSED_SEEDS = {name: parse_event(event) for name, event in SEEDS.items()}

DETAIL = "detail"
ARN = (DETAIL, "ModelPackageArn")
# Every field the parser reads: (path in the event) as its errors name them.
MODEL_FIELDS: list[Path] = [
    ("id",), ("source",), ("detail-type",), ("account",), ("region",), ("time",), (DETAIL,),
    (DETAIL, "ModelPackageGroupName"), (DETAIL, "ModelPackageVersion"), ARN,
    (DETAIL, "ModelApprovalStatus"), (DETAIL, "LastModifiedTime"), (DETAIL, "CreationTime"),
    (DETAIL, "ApprovalDescription"),
]  # fmt: skip
# A change to one field may be reported at another that is checked against it.
DEPENDENTS: dict[Path, list[Path]] = {
    (DETAIL, "ModelPackageGroupName"): [ARN],
    (DETAIL, "ModelPackageVersion"): [ARN],
    ("region",): [ARN],
    ("account",): [ARN],
    ("time",): [(DETAIL, "LastModifiedTime")],  # "missing, and the event has no time either"
}
TIMESTAMP_FIELDS: list[Path] = [("time",), (DETAIL, "LastModifiedTime"), (DETAIL, "CreationTime")]
STRING_FIELDS: list[Path] = [
    ("id",), ("source",), ("detail-type",), ("account",), ("region",),
    (DETAIL, "ModelPackageGroupName"), ARN, (DETAIL, "ModelApprovalStatus"),
    (DETAIL, "ApprovalDescription"),
]  # fmt: skip
EARLIEST_MS = int(EARLIEST.timestamp() * 1000)
LATEST_MS = int(LATEST.timestamp() * 1000)
ISO_TIMESTAMPS = [
    "2026-11-20T09:15:41Z", "2026-11-20T09:15:41", "2026-11-20", "2026-11-20T09:15:41+05:30",
    "2026-11-20T09:15:41.123456Z", "2026-11-20T09:15:41.1234567Z", "2026-02-30T00:00:00Z",
    "2026-11-20T24:00:00Z", "2026-11-20T23:59:60Z", "2009-12-31T23:59:59.999999Z",
    "2010-01-01T00:00:00Z", "2010-01-01T00:00:00+00:01", "2199-12-31T23:59:59.999999Z",
    "2200-01-01T00:00:00Z", "2199-12-31T23:59:59-00:01", "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59", "2026-W47-5T09:15:41Z", "20261120T091541Z",
    "2026-11-20 09:15:41Z", " 2026-11-20T09:15:41Z", "2026-11-20T09:15:41Z ",
    "\uff12\uff10\uff12\uff16-11-20T09:15:41Z", "\u0662\u0660\u0662\u0666-11-20T09:15:41Z",
    "2026-11-20T09:15:41ZZ",
    "2026-11-20T09:15:41+24:00", "2026-11-20T09:15:41+99:99", "", "now", "1795168321417",
]  # fmt: skip
EPOCH_MS = [
    EARLIEST_MS - 1, EARLIEST_MS, LATEST_MS - 1, LATEST_MS, 0, -1, 1795168321417,
    1795168321417.5, 1.7e12, 1e308, -1e308, 5e-324, float("nan"), float("inf"), True, False,
    10**400, 2**63,
]  # fmt: skip
TIMESTAMPS = st.one_of(
    st.sampled_from(ISO_TIMESTAMPS),
    st.sampled_from(EPOCH_MS),
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(datetime.isoformat),
    st.integers(),
    FLOATS,
    json_values(4),
)
# Regions the ARN or the envelope may carry: known ones, unknown ones of the right shape, wrong
# shapes. A short list: an unknown region costs a botocore session (see events.partition_of).
REGIONS = [
    "eu-west-1", "us-east-2", "cn-north-1", "us-gov-west-1", "xx-nowhere-1", "eu-west-99",
    "eu-west", "EU-WEST-1", "eu-west-\u0661", "", "eu_west_1",
]  # fmt: skip
ACCOUNTS = ["111122223333", "123456789012", "000000000000", "11112222333", "1111222233334",
            "\u0661" * 12, "\uff11" * 12, "abcdefghijkl", ""]  # fmt: skip
GROUPS = ["churn-xgb", "a", "A" * 63, "A" * 64, "churn--xgb", "-churn", "churn-", "churn_xgb",
          "churn xgb", "ch\u00fcrn", "churn/xgb", ""]  # fmt: skip
VERSIONS = [1, 2, 99, 0, -1, 2**31, 10**30, "5", 5.0, True, None]
PARTITIONS = ["aws", "aws-cn", "aws-us-gov", "aws-iso", "awsx", "AWS", ""]


class Case:
    """One example: what is given to parse_event and what was changed."""

    def __init__(
        self,
        seed: str,
        kind: str,
        event: Any,  # a dict, or the same event as str / bytes
        form: str,
        path: Path | None = None,
        also: list[Path] | None = None,  # other fields this change touched
        whole: bool = False,  # a problem of the event as a whole is an expected answer
    ) -> None:
        self.seed, self.kind, self.event, self.form = seed, kind, event, form
        self.path, self.also, self.whole = path, also or [], whole

    def note(self) -> str:
        return f"seed {self.seed}, {self.kind} at {self.path}, as {self.form}"

    def __repr__(self) -> str:
        # the event may be nested 5000 deep or hold a 5000-digit integer: not repr'd whole
        shown = encode(self.event) if isinstance(self.event, dict | list) else self.event
        return f"Case({self.note()}, {len(shown)} long: {shown[:300]!r})"


MUTATIONS = ["none", "delete", "replace", "extra", "timestamp", "string", "number", "consistent",
             "huge", "deep", "not-an-object"]  # fmt: skip
# Keys one letter or one spelling away from a field the parser reads (pydantic's
# populate_by_name would take "detail_type" for "detail-type" at the top level).
NEAR_KEYS = ["detail_type", "Source", "modelPackageArn", "model_package_arn", "ModelPackageArn ",
             "LastModifiedtime", "__proto__", ""]  # fmt: skip


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, dict[str, Any], str, Path | None, list[Path], bool]:
    """(seed name, mutated event, kind, path changed, other paths changed, whole-event ok)."""
    seed = draw(st.sampled_from(SEED_NAMES))
    event = copy.deepcopy(SEEDS[seed])
    kind = draw(st.sampled_from(MUTATIONS))
    path: Path | None = None
    also: list[Path] = []
    whole = False
    if kind == "delete":
        path = draw(st.sampled_from([*MODEL_FIELDS, *all_paths(event)]))
        if path in all_paths(event):
            delete_at(event, path)
    elif kind == "replace":
        path = draw(st.sampled_from([*MODEL_FIELDS, *all_paths(event)]))
        set_at(event, path, draw(json_values()))
    elif kind == "extra":
        parent = draw(st.sampled_from(list(container_paths(event))))
        key = draw(st.one_of(texts(12), st.sampled_from(NEAR_KEYS)))
        path = (*parent, key)
        get_at(event, parent)[key] = draw(json_values())
    elif kind == "timestamp":
        path = draw(st.sampled_from(TIMESTAMP_FIELDS))
        set_at(event, path, draw(TIMESTAMPS))
    elif kind == "string":
        path = draw(st.sampled_from(STRING_FIELDS))
        original = get_at(event, path) if path in all_paths(event) else ""
        set_at(event, path, draw(mutated_string(str(original))))
    elif kind == "number":
        path = draw(st.sampled_from([*MODEL_FIELDS, *all_paths(event)]))
        value = draw(st.one_of(st.integers(), HUGE_INTS, FLOATS, st.sampled_from(EPOCH_MS)))
        set_at(event, path, value)
    elif kind == "consistent":
        # group, version, region, account and partition changed in the ARN and the event alike:
        # accepted exactly when each is valid on its own (and the region is in the partition)
        detail = event[DETAIL]
        group = draw(st.sampled_from(GROUPS))
        version = draw(st.sampled_from(VERSIONS))
        region = draw(st.sampled_from(REGIONS))
        account = draw(st.sampled_from(ACCOUNTS))
        partition = draw(st.sampled_from(PARTITIONS))
        detail["ModelPackageGroupName"] = group
        detail["ModelPackageVersion"] = version
        event["region"], event["account"] = region, account
        detail["ModelPackageArn"] = (
            f"arn:{partition}:sagemaker:{region}:{account}:model-package/{group}/{version}"
        )
        path = ARN
        also = [(DETAIL, "ModelPackageGroupName"), (DETAIL, "ModelPackageVersion"), ("region",),
                ("account",)]  # fmt: skip
    elif kind == "huge":
        path = (DETAIL, "Huge")
        size = draw(st.sampled_from([MAX_EVENT_BYTES // 2, MAX_EVENT_BYTES, MAX_EVENT_BYTES * 4]))
        shape = draw(st.sampled_from(["string", "list", "object"]))
        if shape == "string" or size > MAX_EVENT_BYTES:
            event[DETAIL]["Huge"] = "x" * size
        elif shape == "list":
            event[DETAIL]["Huge"] = ["ab"] * (size // 5)
        else:
            event[DETAIL]["Huge"] = {str(i): i for i in range(size // 8)}
        whole = True
    elif kind == "deep":
        path = draw(st.sampled_from([(DETAIL, "Deep"), ("resources",), ARN, (DETAIL,)]))
        set_at(event, path, draw(deeply_nested()))
        whole = True
    elif kind == "not-an-object":
        return (
            seed,
            draw(json_values().filter(lambda v: not isinstance(v, dict))),
            kind,
            (),
            [],
            True,
        )
    return seed, event, kind, path, also, whole


@st.composite
def cases(draw: st.DrawFn) -> Case:
    seed, event, kind, path, also, whole = draw(mutations())
    form = draw(st.sampled_from(["dict", "dict", "text", "bytes", "bytes-broken"]))
    whole = whole or contains_long_int(event)  # Python's json neither reads nor writes it
    given: Any = event
    if form == "text":
        ascii_only = draw(st.booleans())
        given = encode(event, ensure_ascii=ascii_only)
        # NaN/Infinity are not JSON; a lone surrogate cannot be UTF-8
        whole = whole or contains_nonfinite(event) or (not ascii_only and not _utf8(given))
    elif form.startswith("bytes"):
        text = encode(event, ensure_ascii=draw(st.booleans()))
        given = text.encode("utf-8", errors="surrogatepass")
        whole = whole or contains_nonfinite(event) or not _utf8(text)
        if form == "bytes-broken":
            at = draw(st.integers(0, len(given)))
            bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]))
            given = given[:at] + bad + given[at:]
            whole = True
    return Case(seed, kind, given, form, path, also, whole)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# What an error line says it is about.
FIELD_ERROR = re.compile(r"event field (?P<field>[^:]*): ")
WHOLE_EVENT = re.compile(
    r"event (is not JSON|is not UTF-8 text|is not a JSON object|is \d+ bytes, over|is nested too"
    r" deeply|holds a number of)"
)


def named_field(message: str) -> Path | None:
    """The event field an error line names (``None``: the event as a whole)."""
    if message.startswith("event source is "):
        return ("source",)
    if message.startswith("detail-type is "):
        return ("detail-type",)
    match = FIELD_ERROR.match(message)
    if match:
        return tuple(match["field"].split("."))
    assert WHOLE_EVENT.match(message), f"names no field and not the event: {message!r}"
    return None


def check_success(case: Case, change: ModelPackageStateChange) -> None:
    """What an accepted event promises (README, "Only real events")."""
    detail = change.detail
    for name, value in (("id", change.id), ("group", detail.model_package_group_name),
                        ("ARN", detail.model_package_arn)):  # fmt: skip
        assert value.isascii() and not any(c.isspace() for c in value), f"{name} {value!r}"
    arn = MODEL_PACKAGE_ARN.fullmatch(detail.model_package_arn)
    assert arn is not None
    assert arn["group"] == detail.model_package_group_name
    assert int(arn["version"]) == detail.model_package_version >= 1
    for part in ("region", "account"):
        if getattr(change, part) is not None:
            assert arn[part] == getattr(change, part)
    when = change.changed_at
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0
    assert EARLIEST <= when < LATEST
    assert change.approved == (detail.model_approval_status == "Approved")


def check_rejection(case: Case, error: InvalidEvent) -> None:
    message = str(error)
    assert isinstance(error, UserError) and error.exit_code == 2
    assert_one_line(message)
    named = named_field(message)
    if named is None:
        assert case.whole, f"a whole-event error for {case.note()}: {message}"
        return
    assert case.path is not None, f"the unchanged seed was refused: {message}"
    touched = [case.path, *case.also]
    allowed = touched + [dep for p in touched for dep in DEPENDENTS.get(p, [])]
    assert any(related(named, p) for p in allowed), (
        f"names {'.'.join(map(str, named))} for {case.note()}: {message}"
    )


def reads_nothing_at(path: Path | None) -> bool:
    """Whether ``path`` is outside every field the parser reads (``detail`` holds some, and many
    more it does not read)."""
    leaves = [f for f in MODEL_FIELDS if f != (DETAIL,)]
    return path not in (None, (), (DETAIL,)) and not any(related(path, f) for f in leaves)


@fuzz_settings(EXAMPLES["events"])
@given(cases())
def _events_property(case: Case) -> None:
    COUNTS["events"] += 1
    try:
        change = parse_event(case.event)
    except InvalidEvent as error:
        check_rejection(case, error)
        if case.kind == "none":
            assert case.whole, f"the unchanged seed {case.seed} was refused: {error}"
        if reads_nothing_at(case.path):
            assert case.whole, f"{case.note()} changed a field nothing reads, refused: {error}"
        return
    check_success(case, change)
    if case.kind == "none" or reads_nothing_at(case.path):
        assert change == PARSED_SEEDS[case.seed], case.note()


def test_mutated_events_parse_or_are_refused_in_one_line_naming_the_field():
    run_counted(COUNTS, "events", EXAMPLES["events"], _events_property)


@st.composite
def ignored_changes(draw: st.DrawFn) -> Case:
    """A seed with several changes, all outside what the parser reads."""
    seed = draw(st.sampled_from(SEED_NAMES))
    event = copy.deepcopy(SEEDS[seed])
    for _ in range(draw(st.integers(1, 6))):
        ignored = [p for p in all_paths(event) if reads_nothing_at(p)]
        parents = [p for p in container_paths(event) if not p or reads_nothing_at(p)]
        parents += [(), (DETAIL,)]
        if ignored and draw(st.booleans()):
            path = draw(st.sampled_from(ignored))
            if draw(st.booleans()):
                delete_at(event, path)
            else:
                set_at(event, path, draw(json_values().filter(lambda v: not contains_long_int(v))))
        else:
            parent = draw(st.sampled_from(parents))
            key = draw(texts(10))
            if reads_nothing_at((*parent, key)):
                value = draw(json_values().filter(lambda v: not contains_long_int(v)))
                get_at(event, parent)[key] = value
    return Case(seed, "ignored", event, "dict")


@fuzz_settings(EXAMPLES["events_unchanged_by_ignored_fields"])
@given(ignored_changes(), st.sampled_from(["dict", "text"]))
def _ignored_property(case: Case, form: str) -> None:
    COUNTS["events_unchanged_by_ignored_fields"] += 1
    event = case.event
    given_event = encode(event) if form == "text" and not contains_nonfinite(event) else event
    size = len((given_event if isinstance(given_event, str) else encode(event)).encode())
    if size > MAX_EVENT_BYTES:  # what the fields added weigh is still the event's size
        with pytest.raises(InvalidEvent, match="over EventBridge's 256 KB limit"):
            parse_event(given_event)
        return
    assert parse_event(given_event) == PARSED_SEEDS[case.seed]


def test_changes_to_fields_the_trigger_does_not_read_change_nothing():
    name = "events_unchanged_by_ignored_fields"
    run_counted(COUNTS, name, EXAMPLES[name], _ignored_property)


# -- regressions: bugs the fuzzing found ---------------------------------------------------------

APPROVED = SEEDS["model-package-approved.json"]


def with_detail(**changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(APPROVED)
    event[DETAIL].update(changes)
    return event


@pytest.mark.parametrize("field_name", ["LastModifiedTime", "CreationTime"])
@pytest.mark.parametrize(
    "value", [10**400, -(10**309), 10**4000], ids=["1e400", "-1e309", "1e4000"]
)
def test_epoch_milliseconds_too_large_for_a_float_are_refused_naming_the_field(field_name, value):
    # was: OverflowError ("int too large to convert to float") out of parse_event
    with pytest.raises(InvalidEvent) as info:
        parse_event(with_detail(**{field_name: value}))
    message = str(info.value)
    assert message.startswith(f"event field detail.{field_name}: ")
    assert "outside 2010-2199" in message
    assert_one_line(message)


def test_json_with_a_number_python_cannot_read_is_refused_as_the_event():
    # was: ValueError ("Exceeds the limit (4300 digits) for integer string conversion") out of
    # parse_event, for an SQS body holding such a number anywhere
    text = json.dumps(APPROVED)[:-1] + ', "x": ' + "1" * (INT_DIGITS + 1) + "}"
    for given_event in (text, text.encode()):
        with pytest.raises(InvalidEvent) as info:
            parse_event(given_event)
        assert str(info.value) == (
            f"event holds a number of {INT_DIGITS + 1} digits, more than the {INT_DIGITS} "
            "Python reads"
        )


def test_a_dict_with_a_number_python_cannot_write_is_not_called_nested_too_deeply():
    # was: "event is nested too deeply" for an event (a dict) holding a 5000-digit integer
    with pytest.raises(InvalidEvent) as info:
        parse_event(with_detail(ModelPackageVersion=10**5000))
    assert str(info.value).startswith("event holds a number of 5001 digits")


def test_an_arn_of_another_version_is_refused_without_echoing_a_huge_one():
    # was: "its version '5' is not the event's '3098...'" with all 400 digits
    version = 10**400 + 7
    with pytest.raises(InvalidEvent) as info:
        parse_event(with_detail(ModelPackageVersion=version))
    message = str(info.value)
    assert message.startswith("event field detail.ModelPackageArn: its version '4' is not the ")
    assert "…(401 chars)" in message
    assert_one_line(message, limit=300)
