"""Bad input, part 2: the configurations, fuzzed with hypothesis from valid documents:
- the trigger's routing table (bridge/trigger/routing.py, JSON in SMBRIDGE_ROUTES),
- bridge.yaml (bridge/settings/bridge_config.py): the YAML text, and SMBRIDGE_* overrides,
- the stage configs (bridge/settings/stage.py, model-deploy/config/<stage>.json).

Each document is mutated (a key deleted, replaced by any JSON value, added; a string changed by
a character; numbers at their limits; the text itself broken, too large, nested too deeply, not
UTF-8) and must either load or be refused by a ``ConfigError`` (exit code 2) whose message is one
printable line that starts with where the document came from (the variable, the file) and names
the key that is wrong as the module formats it (``routes.churn-xgb.pipelineId``,
``aws.session_duration_seconds``, ``SMBRIDGE_AWS__ROLE_ARN``, ``inference.realtime.instance_count``)
or, for a problem of the text as a whole, says what it is. What loads keeps the modules'
promises (strict types, group names SageMaker accepts, ASCII account ids and regions).

Reproducible: ``derandomize=True``, no example database (see test_fuzz_events.py).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import ConfigError, shown_key
from bridge.settings.bridge_config import NOT_OVERRIDES, BridgeConfig, load_config
from bridge.settings.stage import StageConfig, load_stage_config
from bridge.trigger.routing import (
    MAX_ROUTES_BYTES,
    RESERVED_PARAMETERS,
    RoutingTable,
    is_group_name,
    parse_routes,
)
from tests.reliability.test_fuzz_events import (
    CHARS,
    FLOATS,
    HUGE_INTS,
    INT_DIGITS,
    all_paths,
    assert_one_line,
    container_paths,
    contains_long_int,
    delete_at,
    encode,
    fuzz_settings,
    get_at,
    json_values,
    mutated_string,
    run_counted,
    set_at,
    texts,
    unlimited_digits,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "routes": 1500,
    "bridge_yaml": 800,
    "bridge_yaml_text": 800,
    "bridge_env": 700,
    "stage": 1500,
}
COUNTS: dict[str, int] = {}
Key = tuple[str | int, ...]


def fmt(path: Key) -> str:
    """A key path as the modules write it in an error line (bridge.errors.first_error)."""
    return ".".join(shown_key(part) for part in path)


def names_path(rest: str, path: Key) -> bool:
    """Whether the error text ``rest`` (after its source) names ``path``, a key above it, or a
    key inside it: ``key: ...``, or ``unknown key 'key'; ...``."""
    rest = rest.removeprefix("unknown key '")
    for end in range(len(path), 0, -1):
        if any(rest.startswith(fmt(path[:end]) + sep) for sep in (": ", "'")):
            return True
    return bool(path) and rest.startswith(fmt(path) + ".")


NUMBERS = st.one_of(
    st.integers(), HUGE_INTS, FLOATS, st.sampled_from([0, -1, 1, True, False, 12.0, "12"])
)


@st.composite
def mutated_document(
    draw: st.DrawFn, seed: dict[str, Any], string_paths: list[Key], number_paths: list[Key]
) -> tuple[dict[str, Any] | Any, str, Key | None]:
    """(document, kind of change, path changed) for one change to ``seed``."""
    doc = copy.deepcopy(seed)
    kind = draw(st.sampled_from(["none", "delete", "replace", "extra", "string", "number"]))
    paths = list(all_paths(doc))
    if kind == "none":
        return doc, kind, None
    if kind == "delete":
        path = draw(st.sampled_from(paths))
        delete_at(doc, path)
    elif kind == "replace":
        path = draw(st.sampled_from(paths))
        set_at(doc, path, draw(json_values()))
    elif kind == "extra":
        parent = draw(st.sampled_from(list(container_paths(doc))))
        path = (*parent, draw(texts(12)))
        set_at(doc, path, draw(json_values()))
    elif kind == "string":
        path = draw(st.sampled_from(string_paths))
        original = get_at(doc, path)
        set_at(doc, path, draw(mutated_string(str(original))))
    else:
        path = draw(st.sampled_from(number_paths))
        set_at(doc, path, draw(NUMBERS))
    return doc, kind, path


def string_and_number_paths(doc: Any) -> tuple[list[Key], list[Key]]:
    strings = [p for p in all_paths(doc) if isinstance(get_at(doc, p), str)]
    numbers = [p for p in all_paths(doc) if isinstance(get_at(doc, p), int | float)]
    return strings, numbers


# -- the routing table ---------------------------------------------------------------------------

SOURCE = "SMBRIDGE_ROUTES"
ROUTES: dict[str, Any] = {
    "routes": {
        "churn-xgb": {"organization": "contoso", "project": "mlops", "pipelineId": 12,
                      "branch": "main"},
        "fraud-lgbm": {"organization": "contoso", "project": "ml ops", "pipelineId": 14,
                       "branch": "refs/heads/release/1.0", "templateParameters": {"stage": "x"}},
    },
    "default": {"organization": "fabrikam", "project": "mlops", "pipelineId": 13},
}  # fmt: skip
ROUTE_STRINGS, ROUTE_NUMBERS = string_and_number_paths(ROUTES)
ROUTES_WHOLE = re.compile(
    rf"{SOURCE}: routes (are not valid JSON|are nested too deeply|must be a JSON object|are \d+ "
    r"bytes|hold a number of \d+ digits)"
)


@st.composite
def routing_cases(draw: st.DrawFn) -> tuple[str, str, Key | None, bool, list[str]]:
    """(JSON text, kind, path changed, whole-text error expected, keys added)."""
    kind = draw(st.sampled_from(["document", "document", "group", "reserved", "text"]))
    path: Key | None
    if kind == "document":
        doc, kind, path = draw(mutated_document(ROUTES, ROUTE_STRINGS, ROUTE_NUMBERS))
    elif kind == "group":  # a key of routes: a group name, or not
        doc = copy.deepcopy(ROUTES)
        name = draw(st.one_of(mutated_string("churn-xgb"), texts(70)))
        doc["routes"][name] = doc["routes"].pop("churn-xgb")
        path = ("routes", name)
    elif kind == "reserved":  # a parameter the trigger sets itself
        doc = copy.deepcopy(ROUTES)
        name = draw(st.sampled_from(sorted(RESERVED_PARAMETERS)))
        doc["routes"]["churn-xgb"]["templateParameters"] = {name: "x"}
        path = ("routes", "churn-xgb", "templateParameters")
    else:
        text = json.dumps(ROUTES)
        change = draw(st.sampled_from(["cut", "insert", "deep", "large", "top", "digits"]))
        at = draw(st.integers(0, len(text)))
        if change == "cut":
            text = text[:at]
        elif change == "insert":
            text = text[:at] + draw(st.sampled_from([",", "}", "]", '"', ":", "\\", "NaN"]))
            text += json.dumps(ROUTES)[at:]
        elif change == "deep":
            depth = draw(st.sampled_from([900, 5000, 50_000]))
            text = '{"routes": ' + "[" * depth + "]" * depth + "}"
        elif change == "large":
            text = json.dumps({**ROUTES, "x": "y" * MAX_ROUTES_BYTES})
        elif change == "top":
            text = encode(draw(json_values().filter(lambda v: not isinstance(v, dict))))
        else:
            text = text[:-1] + ', "x": ' + "9" * draw(st.sampled_from([INT_DIGITS, 5000])) + "}"
        return text, change, None, True, []
    text = encode(doc, ensure_ascii=draw(st.booleans()))
    whole = contains_long_int(doc) or not isinstance(doc, dict)
    added = [path[-1]] if path else []
    if path and kind in ("replace", "extra"):  # the value set may hold keys of its own
        added += [k for k in keys_in(get_at(doc, path)) if isinstance(k, str)]
    return text, kind, path, whole, added


def keys_in(value: Any) -> list[Any]:
    keys, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            keys.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return keys


def check_routing_table(table: RoutingTable) -> None:
    """What a loaded table promises (bridge/trigger/routing.py): strict types, group names
    SageMaker accepts, no control characters in what goes into a URL or a ref, no parameter
    the trigger sets itself."""
    control = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
    for group, route in [*table.routes.items(), ("default", table.default)]:
        if route is None:
            continue
        assert group == "default" or is_group_name(group), group
        assert type(route.pipeline_id) is int and route.pipeline_id >= 1
        for value in (route.organization, route.project, route.branch):
            assert isinstance(value, str) and value and not control.search(value), value
        assert route.ref_name.startswith("refs/")
        assert not RESERVED_PARAMETERS & set(route.template_parameters)
        assert all(isinstance(v, str) for v in route.template_parameters.values())


@fuzz_settings(EXAMPLES["routes"])
@given(routing_cases())
def _routes_property(case: tuple[str, str, Key | None, bool, list[str]]) -> None:
    COUNTS["routes"] += 1
    text, kind, path, whole, added = case
    try:
        table = parse_routes(text, source=SOURCE)
    except ConfigError as error:
        message = str(error)
        assert error.exit_code == 2
        assert_one_line(message)
        assert message.startswith(f"{SOURCE}: "), message
        if ROUTES_WHOLE.match(message):
            assert whole, f"{kind} {path}: {message}"
            return
        if path is None:  # the text was changed: any key may be the one that is wrong now
            assert kind in ("cut", "insert", "deep", "top", "digits"), f"{kind}: {message}"
            return
        rest = message.removeprefix(f"{SOURCE}: ")
        # a key that is no text (a "\ud800" escape) is named on its own: the parser refuses it
        lone = [f"the key {json.dumps(k)} holds a \\u escape of a lone surrogate" for k in added]
        assert names_path(rest, path) or any(map(rest.startswith, lone)), (
            f"{kind} {path}: {message}"
        )
        return
    check_routing_table(table)
    if kind == "none":
        assert table == RoutingTable.model_validate(ROUTES)


def test_routing_tables_load_or_are_refused_in_one_line_naming_the_key():
    run_counted(COUNTS, "routes", EXAMPLES["routes"], _routes_property)


# -- bridge.yaml ---------------------------------------------------------------------------------

BRIDGE_YAML = yaml.safe_load((REPO / "bridge.yaml").read_text(encoding="utf-8"))
YAML_STRINGS, YAML_NUMBERS = string_and_number_paths(BRIDGE_YAML)
# Regions, account ids and role ARNs as AWS writes them: ASCII (botocore's endpoint data, the
# IAM user guide's ARN format); a non-ASCII digit is not one.
REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]", re.ASCII)
ACCOUNT = re.compile(r"[0-9]{12}", re.ASCII)
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+", re.ASCII)
YAML_WHOLE = re.compile(
    r"(line \d+ column \d+: |empty \(no settings\)|expected a mapping of keys at the top level|"
    r"more than \d+ (bytes|values)|nested too deeply)"
)


def check_bridge_config(config: BridgeConfig) -> None:
    regions = [config.region, config.model_registry.region]
    for region in regions:
        assert region is None or REGION.fullmatch(region), f"region {region!r}"
    account = config.model_registry.account_id
    assert account is None or ACCOUNT.fullmatch(account), f"account id {account!r}"
    for arn in (config.aws.role_arn, config.pipeline.execution_role_arn):
        assert arn is None or ROLE_ARN.fullmatch(arn), f"role ARN {arn!r}"


# libyaml's (the module reads with PyYAML's own, pure Python, reader)
CSafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CSafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def yaml_text(doc: Any, draw: st.DrawFn) -> str:
    style = {
        "allow_unicode": draw(st.booleans()),
        "default_flow_style": draw(st.sampled_from([False, None, True])),
        "sort_keys": False,
    }
    with unlimited_digits():
        try:
            return yaml.dump(doc, Dumper=CSafeDumper, **style)
        except UnicodeEncodeError:  # libyaml takes no lone surrogate; PyYAML escapes it
            return yaml.dump(doc, Dumper=yaml.SafeDumper, **style)


def round_trips(doc: Any, text: str) -> bool:
    """Whether YAML reads ``text`` back as ``doc`` (PyYAML writes some characters it then reads
    otherwise: U+0085 in a key is read as a space)."""
    try:
        with unlimited_digits():
            return encode(yaml.load(text, Loader=CSafeLoader)) == encode(doc)
    except Exception:
        return False


def write_text(file: Path, text: str) -> None:
    # a lone surrogate (allowed in a YAML escape, written raw by allow_unicode) is not UTF-8
    file.write_bytes(text.encode("utf-8", errors="surrogatepass"))


def check_config_error(error: ConfigError, source: str) -> str:
    """The message after ``source: ``, once it is checked to be one line from ``source``."""
    message = str(error)
    assert error.exit_code == 2
    assert_one_line(message)
    assert message.startswith(f"{source}: "), f"does not start with {source}: {message}"
    return message.removeprefix(f"{source}: ")


def test_bridge_yaml_documents_load_or_are_refused_in_one_line_naming_the_key(tmp_path):
    file = tmp_path / "bridge.yaml"

    @fuzz_settings(EXAMPLES["bridge_yaml"])
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        COUNTS["bridge_yaml"] += 1
        doc, kind, path = data.draw(mutated_document(BRIDGE_YAML, YAML_STRINGS, YAML_NUMBERS))
        text = yaml_text(doc, data.draw)
        write_text(file, text)
        try:
            config = load_config(file, environ={})
        except ConfigError as error:
            rest = check_config_error(error, str(file))
            if YAML_WHOLE.match(rest):
                # a value YAML cannot build (an integer of 5000 digits), a lone surrogate
                unreadable = contains_long_int(doc) or contains_surrogate(doc)
                assert unreadable or not _utf8(text), f"{kind} {path}: {rest}"
                return
            assert path is not None, f"the repository's bridge.yaml was refused: {rest}"
            if round_trips(doc, text):  # else YAML reads other keys than were written
                assert names_path(rest, path), f"{kind} {path}: {rest}"
            return
        check_bridge_config(config)
        if kind == "none":
            assert config == load_config(REPO / "bridge.yaml", environ={}).model_copy(
                update={"source": str(file)}
            )

    run_counted(COUNTS, "bridge_yaml", EXAMPLES["bridge_yaml"], prop)


def contains_surrogate(value: Any) -> bool:
    """A lone surrogate in a key or a string of ``value`` (no character: JSON and YAML escapes
    can spell one)."""
    surrogate = re.compile("[\ud800-\udfff]")
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and surrogate.search(item):
            return True
    return False


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Pieces of YAML that break a document: syntax, tags, anchors and aliases, directives, tabs.
YAML_PIECES = [
    ":", ": ", "- ", "-", "? ", "{", "}", "[", "]", ",", "&a ", "*a", "*b", "<<: *a", "!!str ",
    "!!binary ", "!!python/object:os.system ", "!!int ", "!!float ", "!!timestamp ", "%YAML 1.1\n",
    "---\n", "...\n", "\t", "\n", "\r", "\x00", "\x85", "\ufeff", "'", '"', "#", "|", ">", "@",
    "`", "2024-13-45", "0o777", "0x1F", "1_000", ".inf", ".nan", "~", "null", "yes", "no", "on",
    "\ud800", "\U0001f600", "9" * (INT_DIGITS + 1),
]  # fmt: skip
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(6)
)


@st.composite
def broken_yaml(draw: st.DrawFn) -> bytes:
    base = (REPO / "bridge.yaml").read_text(encoding="utf-8")
    change = draw(
        st.sampled_from(["insert", "insert", "insert", "cut", "utf16", "bom", "deep", "laughs",
                         "recursive", "large", "empty", "bytes"])
    )  # fmt: skip
    at = draw(st.integers(0, len(base)))
    if change == "insert":
        pieces = draw(
            st.lists(st.one_of(st.sampled_from(YAML_PIECES), CHARS), min_size=1, max_size=3)
        )
        text = base[:at] + "".join(pieces) + base[at:]
    elif change == "cut":
        text = base[:at]
    elif change == "utf16":
        return base.encode("utf-16")
    elif change == "bom":
        text = "\ufeff" + base
    elif change == "deep":  # deeper is refused the same way, in 0.5 s (test_deep_yaml_is_refused)
        depth = draw(st.sampled_from([50, 400]))
        text = "pipeline:\n  tags: " + "[" * depth + "]" * depth + "\n"
    elif change == "laughs":
        text = BILLION_LAUGHS
    elif change == "recursive":
        text = "pipeline: &p\n  tags: *p\n"
    elif change == "large":
        text = base + "#" * 1_000_001
    elif change == "empty":
        text = draw(st.sampled_from(["", "\n", "# only a comment\n", "---\n", "~\n"]))
    else:
        raw = base.encode()
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"]))
        return raw[:at] + bad + raw[at:]
    return text.encode("utf-8", errors="surrogatepass")


def test_bridge_yaml_text_broken_anywhere_is_refused_in_one_line_naming_the_file(tmp_path):
    file = tmp_path / "bridge.yaml"

    @fuzz_settings(EXAMPLES["bridge_yaml_text"])
    @given(broken_yaml())
    def prop(raw: bytes) -> None:
        COUNTS["bridge_yaml_text"] += 1
        file.write_bytes(raw)
        try:
            config = load_config(file, environ={})
        except ConfigError as error:
            check_config_error(error, str(file))
            return
        check_bridge_config(config)

    run_counted(COUNTS, "bridge_yaml_text", EXAMPLES["bridge_yaml_text"], prop)


def printable(name: str) -> str:
    """A variable's name as an error line shows it (non-printable characters escaped)."""
    return name if name.isprintable() else repr(name)[1:-1]


def override_names() -> st.SearchStrategy[tuple[str, Key]]:
    """(variable name, the key path it overrides): bridge.yaml's keys in any case, deeper or
    shallower than they are, unknown ones, and the variables that are no overrides."""
    keys = [p for p in all_paths(BRIDGE_YAML) if all(isinstance(k, str) for k in p)]
    known = st.sampled_from(keys)
    part = st.one_of(st.sampled_from(["region", "aws", "pipeline", "x", ""]), texts(6))
    path = st.one_of(
        known,
        st.builds(lambda p, extra: (*p, extra), known, part),
        st.lists(part, min_size=1, max_size=3).map(tuple),
    )

    def spelt(p: Key, upper: bool) -> tuple[str, Key]:
        name = "SMBRIDGE_" + "__".join(str(k).upper() if upper else str(k) for k in p)
        # the key path as bridge_config reads it ("\u00df".upper() is "SS": key "ss")
        return name, tuple(part.lower() for part in name.removeprefix("SMBRIDGE_").split("__"))

    return st.one_of(
        st.builds(spelt, path, st.booleans()),
        st.sampled_from(sorted(NOT_OVERRIDES)).map(lambda n: (n, ())),
    ).filter(lambda item: "=" not in item[0] and "\x00" not in item[0])


def override_values() -> st.SearchStrategy[str]:
    valid = [v for v in (get_at(BRIDGE_YAML, p) for p in all_paths(BRIDGE_YAML)) if
             isinstance(v, str | int)]  # fmt: skip
    return st.one_of(
        st.sampled_from([str(v) for v in valid]).flatmap(mutated_string),
        st.sampled_from(["", "true", "yes", "0", "-1", "1e400", "nan", "012345678901",
                         "9" * 5000, "eu-west-\u0661", "\u0661" * 12, "null", "{}", "[]"]),
        texts(),
    ).map(lambda v: v.replace("\x00", ""))  # fmt: skip


def test_smbridge_overrides_load_or_are_refused_in_one_line_naming_the_variable(tmp_path):
    file = tmp_path / "bridge.yaml"
    # the repository's bridge.yaml, without its comments (read on every example: faster)
    file.write_text(yaml.safe_dump(BRIDGE_YAML, sort_keys=False), encoding="utf-8")

    @fuzz_settings(EXAMPLES["bridge_env"])
    @given(st.lists(st.tuples(override_names(), override_values()), min_size=1, max_size=3))
    def prop(overrides: list[tuple[tuple[str, Key], str]]) -> None:
        COUNTS["bridge_env"] += 1
        environ = {name: value for (name, _), value in overrides}
        paths = {name: path for (name, path), _ in overrides}
        try:
            config = load_config(file, environ=environ)
        except ConfigError as error:
            message = str(error)
            assert error.exit_code == 2
            assert_one_line(message)
            name = next((n for n in environ if message.startswith(f"{printable(n)}: ")), None)
            assert name is not None, f"names no variable of {sorted(environ)}: {message}"
            assert name not in NOT_OVERRIDES, message
            rest = message.removeprefix(f"{printable(name)}: ")
            if re.search("[\ud800-\udfff]", name):  # a name that is not UTF-8
                assert rest.startswith("the variable's name is not UTF-8"), message
                return
            # the key it sets, or the key above it that is not a mapping ("region is not ...")
            assert names_path(rest, paths[name]) or re.match(r"[^ ]* is not a mapping$", rest), (
                f"{name} ({paths[name]}): {message}"
            )
            return
        check_bridge_config(config)

    run_counted(COUNTS, "bridge_env", EXAMPLES["bridge_env"], prop)


# -- stage configs -------------------------------------------------------------------------------

STAGING = json.loads((REPO / "model-deploy/config/staging.json").read_text(encoding="utf-8"))
PRODUCTION = json.loads((REPO / "model-deploy/config/production.json").read_text(encoding="utf-8"))
STAGE_SEEDS = {
    "staging": STAGING,
    "production": PRODUCTION,
    "serverless": {**STAGING, "inference": {"type": "serverless", "memory_size_mb": 2048,
                                            "max_concurrency": 5}},
    "async": {**STAGING, "external_id": "smbridge-ci:1", "inference": {
        "type": "async", "instance_count": 1, "output_s3_uri": "s3://b/out/",
        "failure_s3_uri": "s3://b/failed/"}},
    "batch": {**STAGING, "inference": {"type": "batch", "input_s3_uri": "s3://b/in/",
                                       "output_s3_uri": "s3://b/out/", "split_type": "Line"}},
}  # fmt: skip
STAGE_PATHS = {name: string_and_number_paths(doc) for name, doc in STAGE_SEEDS.items()}
INFERENCE_TYPES = ("realtime", "serverless", "async", "batch")
# A change to one key may be reported at another that is checked against it (StageConfig's
# validators: the inference type decides which keys exist and what deployment and data capture
# may be; external_id and service_connection_id need deploy_role_arn, whose name gives
# cloudformation_role_arn's default).
STAGE_DEPENDENTS: dict[Key, list[str]] = {
    ("inference", "type"): ["inference", "deployment", "data_capture"],
    ("inference",): ["inference", "deployment", "data_capture"],
    ("deploy_role_arn",): ["deploy_role_arn", "external_id", "service_connection_id",
                           "cloudformation_role_arn"],
    ("deployment", "strategy"): ["deployment"],
    ("data_capture", "enabled"): ["data_capture"],
}  # fmt: skip
STAGE_WHOLE = re.compile(
    r"(not valid JSON|byte 0x[0-9a-f]{2} at offset \d+ is not UTF-8|nested too deeply|holds a "
    r"number of \d+ digits|the key .* holds a \\u escape of a lone surrogate)"
)


def without_tag(rest: str) -> str:
    """``inference.realtime.instance_count: ...`` as ``inference.instance_count: ...`` (pydantic
    names the inference type it tried)."""
    return re.sub(rf"^inference\.({'|'.join(INFERENCE_TYPES)})([.:])", r"inference\2", rest)


@st.composite
def stage_cases(draw: st.DrawFn) -> tuple[str, bytes, str, list[Key], bool]:
    """(seed, file content, kind, paths changed, whole-file error expected)."""
    seed = draw(st.sampled_from(sorted(STAGE_SEEDS)))
    strings, numbers = STAGE_PATHS[seed]
    if draw(st.integers(0, 9)) == 0:  # the text itself broken
        text = json.dumps(STAGE_SEEDS[seed])
        change = draw(st.sampled_from(["cut", "deep", "bytes", "digits", "utf16"]))
        at = draw(st.integers(0, len(text)))
        if change == "cut":
            raw = text[:at].encode()
        elif change == "deep":
            depth = draw(st.sampled_from([900, 5000, 50_000]))
            raw = ('{"tags": ' + "[" * depth + "]" * depth + "}").encode()
        elif change == "bytes":
            raw = text.encode()[:at] + b"\xff" + text.encode()[at:]
        elif change == "digits":
            raw = (text[:-1] + ', "x": ' + "7" * (INT_DIGITS + 1) + "}").encode()
        else:
            raw = text.encode("utf-16")
        return seed, raw, change, [], True
    doc, kind, path = draw(mutated_document(STAGE_SEEDS[seed], strings, numbers))
    paths = [] if path is None else [path]
    # sometimes the inference type changed too
    changed_type = kind != "none" and draw(st.integers(0, 4)) == 0
    if changed_type and isinstance(doc.get("inference"), dict):
        doc["inference"]["type"] = draw(st.sampled_from([*INFERENCE_TYPES, "Realtime", ""]))
        paths.append(("inference",))
    text = encode(doc, ensure_ascii=draw(st.booleans()))
    raw = text.encode("utf-8", errors="surrogatepass")
    # a key that is no text (a "\ud800" escape) is refused by the parser, naming the key alone
    lone_key = any(isinstance(k, str) and contains_surrogate(k) for k in keys_in(doc))
    whole = contains_long_int(doc) or not _utf8(text) or lone_key
    return seed, raw, kind, paths, whole


def test_stage_configs_load_or_are_refused_in_one_line_naming_the_key(tmp_path):
    file = tmp_path / "stage.json"

    @fuzz_settings(EXAMPLES["stage"])
    @given(stage_cases())
    def prop(case: tuple[str, bytes, str, list[Key], bool]) -> None:
        COUNTS["stage"] += 1
        seed, raw, kind, paths, whole = case
        file.write_bytes(raw)
        try:
            config = load_stage_config(file)
        except ConfigError as error:
            rest = without_tag(check_config_error(error, str(file)))
            note = f"{seed} {kind} {paths}: {rest}"
            if STAGE_WHOLE.match(rest):
                assert whole, note
                return
            if kind in ("cut", "deep", "bytes", "digits", "utf16"):
                return  # the text was changed: any key may be the one that is wrong now
            assert paths, f"the stage config {seed} was refused: {rest}"
            names = [n for p in paths for n in STAGE_DEPENDENTS.get(p, [str(p[0])])]
            if rest.startswith(".: "):  # a rule across keys: its message names them
                assert any(name in rest for name in names), note
                return
            assert any(names_path(rest, p) for p in paths) or any(
                rest.startswith(f"{name}.") or rest.startswith(f"{name}: ") for name in names
            ), note
            return
        check_stage_config(config)
        if kind == "none":
            assert config == StageConfig.model_validate(STAGE_SEEDS[seed])

    run_counted(COUNTS, "stage", EXAMPLES["stage"], prop)


def check_stage_config(config: StageConfig) -> None:
    assert ACCOUNT.fullmatch(config.account_id), f"account id {config.account_id!r}"
    assert REGION.fullmatch(config.region), f"region {config.region!r}"
    for arn in (config.deploy_role_arn, config.cloudformation_role_arn, config.execution_role_arn):
        assert arn is None or ROLE_ARN.fullmatch(arn), f"role ARN {arn!r}"
    if config.external_id or config.service_connection_id:
        assert config.deploy_role_arn


@pytest.mark.parametrize("depth", [5000, 50_000])
def test_deep_yaml_is_refused(tmp_path, depth):
    file = tmp_path / "bridge.yaml"
    file.write_text("pipeline:\n  tags: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError, match=r"nested too deeply to read$"):
        load_config(file, environ={})


# -- regressions: bugs the fuzzing found ---------------------------------------------------------


def test_routes_with_a_number_python_cannot_read_are_refused_naming_the_variable():
    # was: ValueError ("Exceeds the limit (4300 digits) for integer string conversion") out of
    # parse_routes, so the trigger failed every message with an unexplained error
    text = '{"default": {"organization": "o", "project": "p", "pipelineId": 1' + "0" * 5000 + "}}"
    with pytest.raises(ConfigError) as info:
        parse_routes(text, source=SOURCE)
    assert str(info.value) == (
        f"{SOURCE}: routes hold a number of 5001 digits, more than the {INT_DIGITS} Python reads"
    )


def test_a_stage_config_with_a_number_python_cannot_read_is_refused_naming_the_file(tmp_path):
    # was: ValueError out of load_stage_config (exit 1, "internal error", from deploy/prepare)
    file = tmp_path / "staging.json"
    file.write_text(json.dumps(STAGING)[:-1] + ', "x": ' + "1" * 5000 + "}")
    with pytest.raises(ConfigError) as info:
        load_stage_config(file)
    assert str(info.value) == (
        f"{file}: holds a number of 5000 digits, more than the {INT_DIGITS} Python reads"
    )


# Non-ASCII digits: ARABIC-INDIC ONE (U+0661), FULLWIDTH ONE (U+FF11). pydantic's Rust regex
# reads \d as any Unicode digit (as Python's re does for str).
@pytest.mark.parametrize("one", ["\u0661", "\uff11"])
@pytest.mark.parametrize(
    ("variable", "template"),
    [
        ("SMBRIDGE_REGION", "eu-west-{}"),
        ("SMBRIDGE_MODEL_REGISTRY__REGION", "eu-west-{}"),
        ("SMBRIDGE_MODEL_REGISTRY__ACCOUNT_ID", "11111111111{}"),
        ("SMBRIDGE_AWS__ROLE_ARN", "arn:aws:iam::11111111111{}:role/ci"),
        ("SMBRIDGE_PIPELINE__EXECUTION_ROLE_ARN", "arn:aws:iam::11111111111{}:role/x"),
    ],
)
def test_region_account_and_role_arn_take_ascii_digits_only(tmp_path, variable, template, one):
    # was: accepted (\d), and later sent to AWS as a region or account no service knows
    file = tmp_path / "bridge.yaml"
    file.write_text("{}\n")
    assert load_config(file, environ={variable: template.format("1")})  # the ASCII one loads
    with pytest.raises(ConfigError) as info:
        load_config(file, environ={variable: template.format(one)})
    assert str(info.value).startswith(f"{variable}: ")


@pytest.mark.parametrize("key", ["account_id", "region", "deploy_role_arn", "execution_role_arn"])
def test_stage_config_ids_take_ascii_digits_only(tmp_path, key):
    original = STAGING[key]
    value = original.replace("2", "\u0662") if key != "region" else "eu-west-\u0661"
    file = tmp_path / "staging.json"
    file.write_text(json.dumps({**STAGING, key: value}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_stage_config(file)
    assert str(info.value).startswith(f"{file}: {key}: ")


@pytest.mark.parametrize(
    ("text", "where"),
    [('"\\ud800": 1\n', "line 1 column 1"), ('pipeline:\n  tags: {"a\\udcff": x}\n', "line 2")],
)
def test_a_yaml_escape_of_a_lone_surrogate_is_refused_where_it_is(tmp_path, text, where):
    # was: a key holding one was refused as "bridge.yaml: : expected a valid string" (pydantic
    # reports such a key at no location), naming no key
    file = tmp_path / "bridge.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file, environ={})
    assert str(info.value).startswith(f"{file}: {where}")
    assert "lone surrogate" in str(info.value)


@pytest.mark.parametrize(
    ("name", "shown_as"),
    [("SMBRIDGE_AWS__X\n", "SMBRIDGE_AWS__X\\n"), ("SMBRIDGE_REGION__\x1b[2J", "\\x1b[2J")],
)
def test_a_variable_name_with_a_control_character_is_shown_escaped(tmp_path, name, shown_as):
    # was: the name printed as it is, so the error line broke (or carried a terminal escape)
    file = tmp_path / "bridge.yaml"
    file.write_text("region: eu-west-1\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, environ={name: "x"})
    assert shown_as in str(info.value)
    assert_one_line(str(info.value))


def test_a_variable_name_that_is_not_utf8_is_refused_naming_it(tmp_path):
    # was: "SMBRIDGE_REGION: : expected a valid string" (another variable named, no key): a
    # name with a byte that is not UTF-8 reaches os.environ as a lone surrogate
    file = tmp_path / "bridge.yaml"
    file.write_text("{}\n")
    with pytest.raises(ConfigError) as info:
        load_config(file, environ={"SMBRIDGE_REGION": "eu-west-1", "SMBRIDGE_\udcff": "1"})
    assert str(info.value) == (
        "SMBRIDGE_\\udcff: the variable's name is not UTF-8; no bridge.yaml key is spelt so"
    )


def test_routes_and_stage_configs_with_a_lone_surrogate_key_name_it(tmp_path):
    # was: "SMBRIDGE_ROUTES: : Input should be a valid string" (no key named)
    with pytest.raises(ConfigError) as info:
        parse_routes('{"routes": {"a\\ud800": {}}}', source=SOURCE)
    assert str(info.value) == (
        f'{SOURCE}: the key "a\\ud800" holds a \\u escape of a lone surrogate, which is not a '
        "character"
    )
    file = tmp_path / "staging.json"
    file.write_text(json.dumps(STAGING)[:-1] + ', "tags": {"\\udcff": "x"}}')
    with pytest.raises(ConfigError) as info:
        load_stage_config(file)
    assert str(info.value).startswith(f'{file}: the key "\\udcff" holds a \\u escape')
