"""``bridge.yaml``: pydantic models, ``SMBRIDGE_*`` environment overrides, one-line errors.

This is the only module that parses configuration. Environment variables override the file:
``SMBRIDGE_REGION``, ``SMBRIDGE_PIPELINE__NAME``, ``SMBRIDGE_AWS__ROLE_ARN`` (``__`` nests).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bridge.errors import ConfigError, cut, first_error, shown, shown_key
from bridge.settings.ado import EnvironmentsSettings

DEFAULT_CONFIG_FILE = "bridge.yaml"
# A bridge.yaml is a few hundred bytes; these bound what a broken or hostile one can cost.
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_VALUES = 10_000  # YAML nodes, each use of an alias counted again ("billion laughs")
ENV_PREFIX = "SMBRIDGE_"
# SMBRIDGE_* variables that are not bridge.yaml overrides: the config file's path and the
# trigger Lambda's settings (bridge/trigger/settings.py).
NOT_OVERRIDES = frozenset(
    {
        "SMBRIDGE_CONFIG",
        "SMBRIDGE_ROUTES",
        "SMBRIDGE_ROUTES_PARAMETER",
        "SMBRIDGE_ADO_SECRET_ARN",
        "SMBRIDGE_ADO_PAT",
        "SMBRIDGE_IDEMPOTENCY_TABLE",
        "SMBRIDGE_IDEMPOTENCY_TTL_SECONDS",
        "SMBRIDGE_REGISTRY_ACCOUNTS",
        "SMBRIDGE_MAX_ATTEMPTS",
    }
)

# [0-9], not \d: pydantic's regex engine (like Python's re) reads \d as any Unicode digit, and
# no AWS account id or region has an Arabic-Indic or a fullwidth one.
RoleArn = Annotated[
    str,
    StringConstraints(
        max_length=2048, pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$"
    ),
]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")]
AccountId = Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]
# SageMaker's own pattern for pipeline and model package group names.
ResourceName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,255}$")]
BucketName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]

_EXPECTED = {
    "RoleArn": "an IAM role ARN like arn:aws:iam::123456789012:role/Name",
    "Region": "an AWS region like eu-west-1",
    "AccountId": "a 12-digit AWS account id",
    "ResourceName": "letters, digits and hyphens, starting with a letter or digit (max 256)",
    "BucketName": "an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class AwsSettings(_Strict):
    """How smbridge gets AWS credentials (see docs/credentials.md)."""

    role_arn: RoleArn | None = Field(None, description="role to assume (automation account)")
    web_identity: bool = Field(False, description="exchange the job's Azure DevOps OIDC token")
    profile: str | None = None
    role_session_name: str = Field("smbridge", pattern=r"^[A-Za-z0-9_+=,.@-]{2,64}$")
    session_duration_seconds: int = Field(3600, ge=900, le=43200)
    service_connection_id: str | None = Field(
        None, description="Azure DevOps service connection whose OIDC token to request"
    )


class PipelineSettings(_Strict):
    """The SageMaker pipeline that model-build defines."""

    name: ResourceName | None = None
    definition: str = "model-build/pipeline.py:get_pipeline"
    execution_role_arn: RoleArn | None = None
    artifact_bucket: BucketName | None = None
    code_prefix: str | None = None
    description: str = Field("", max_length=3072)
    parallelism: int | None = Field(None, ge=1, le=1000)
    tags: dict[str, str] = Field(default_factory=dict)
    parameters: dict[str, str] = Field(default_factory=dict, description="defaults for start")


class ModelRegistrySettings(_Strict):
    """Where approved model packages may come from (model-deploy's Prepare stage checks it)."""

    account_id: AccountId | None = Field(None, description="the central registry account")
    region: Region | None = Field(None, description="default: the top-level region")


class AzureDevOpsSettings(_Strict):
    """Where the Azure DevOps side lives."""

    organization: str = Field(min_length=1, description="name, or https://dev.azure.com/<name>")
    project: str = Field(min_length=1)
    environments: EnvironmentsSettings | None = Field(
        None, description="smbridge ado setup: <prefix>-staging/-production and the approval check"
    )


class BridgeConfig(_Strict):
    """The whole ``bridge.yaml``. Every key is optional; commands say which they need."""

    region: Region | None = None
    model_package_group: ResourceName | None = None
    model_registry: ModelRegistrySettings = Field(default_factory=ModelRegistrySettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    azure_devops: AzureDevOpsSettings | None = None
    source: str = Field("<defaults>", exclude=True, description="where this config came from")


def load_config(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> BridgeConfig:
    """Load ``bridge.yaml`` (or ``path``), apply ``SMBRIDGE_*`` overrides, validate.

    With ``path=None`` a missing ``bridge.yaml`` in the working directory is fine (defaults);
    an explicit path that does not exist is an error. Raises :class:`ConfigError`.
    """
    environ = os.environ if environ is None else environ
    explicit = path is not None
    file = Path(path if explicit else DEFAULT_CONFIG_FILE)
    data: dict[str, Any] = {}
    if file.is_dir():
        raise ConfigError(f"{file}: is a directory, not a config file; pass a file to --config")
    if file.exists():
        data = _read_yaml(file)
        source = str(file)
    elif explicit:
        raise ConfigError(f"{file}: config file not found; pass an existing file to --config")
    else:
        source = "<defaults>"
    env_keys = _apply_env(data, environ)
    try:
        return BridgeConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, env_keys)) from None


def _read_yaml(file: Path) -> dict[str, Any]:
    """The top-level mapping of ``file``; a one-line ConfigError naming file, line and column
    for anything else (not UTF-8, not YAML, empty, too large, not a mapping)."""
    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: more than {MAX_CONFIG_BYTES} bytes; is it the right file?")
    loaded = _parse_yaml(file, _decoded(file, raw))
    if loaded is None:
        raise ConfigError(
            f"{file}: empty (no settings); add settings, write {{}} for the defaults, or delete it"
        )
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{file}: expected a mapping of keys at the top level, not {_kind(loaded)}"
        )
    return loaded


def _decoded(file: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        hint = "it is UTF-16; " if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigError(
            f"{file}: line {line} column {column}: byte 0x{raw[exc.start]:02x} is not UTF-8; "
            f"{hint}save the file as UTF-8"
        ) from None


class _BadValue(Exception):
    def __init__(self, mark: yaml.Mark, problem: str) -> None:
        super().__init__(problem)
        self.mark = mark


# A lone surrogate: what a "\ud800" escape in YAML, or a byte that is not UTF-8 in a variable's
# name (os.environ's surrogateescape), decodes to. It is no character: pydantic cannot read it
# (and reports a key holding one at no location at all).
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Loader(yaml.SafeLoader):
    """SafeLoader that says where a value it cannot build is (``2024-13-45``, 5000 digits, a
    lone surrogate)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            value = super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise _BadValue(node.start_mark, str(exc)) from None
        if isinstance(value, str) and _SURROGATE.search(value):
            raise yaml.constructor.ConstructorError(
                None, None, "a \\u escape of a lone surrogate is not a character", node.start_mark
            )
        return value


def _parse_yaml(file: Path, text: str) -> Any:
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks every character first
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(file, node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context_mark:
            problem = f"{exc.context} (line {exc.context_mark.line + 1}): {exc.problem}"
        raise ConfigError(f"{file}: {_at(mark)}{cut(problem, 200)}; fix the YAML syntax") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = ord(exc.character) if isinstance(exc.character, str) else exc.character
        raise ConfigError(
            f"{file}: line {line} column {column}: character U+{code:04X} is not allowed in "
            "YAML; remove it"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: {cut(str(exc), 200)}; fix the YAML syntax") from None
    except RecursionError:
        raise ConfigError(f"{file}: nested too deeply to read") from None
    except _BadValue as exc:  # a scalar YAML resolves (a date, an int) but cannot build
        raise ConfigError(
            f"{file}: {_at(exc.mark)}cannot read the value ({cut(str(exc), 80)}); "
            "quote it to keep it a string"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def _at(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""


def _check_size(file: Path, root: yaml.Node) -> None:
    """Refuse recursive aliases and documents of more than MAX_CONFIG_VALUES nodes once aliases
    are expanded (an alias of an alias of ... grows exponentially: "billion laughs")."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise ConfigError(
                f"{file}: {_at(node.start_mark)}an alias refers to a value that contains it; "
                "YAML aliases may not be recursive here"
            )
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_CONFIG_VALUES:
                raise ConfigError(
                    f"{file}: {_at(node.start_mark)}more than {MAX_CONFIG_VALUES} values once "
                    "YAML aliases are expanded; use fewer aliases"
                )
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    size(root)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Set ``SMBRIDGE_A__B=v`` as ``data[a][b] = v``; return {key path: variable name}."""
    applied: dict[tuple[str, ...], str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NOT_OVERRIDES:
            continue
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if _SURROGATE.search(name):
            raise ConfigError(
                f"{_name(name)}: the variable's name is not UTF-8; no bridge.yaml key is spelt so"
            )
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                parent = ".".join(shown_key(k) for k in keys[:-1])
                raise ConfigError(f"{_name(name)}: {parent} is not a mapping")
            node = child
        node[keys[-1]] = _env_value(value)
        applied[keys] = _name(name)
    return applied


def _name(variable: str) -> str:
    """A variable's name as an error line shows it: on one line (a name may hold any character
    but ``=`` and NUL)."""
    return variable if variable.isprintable() else repr(variable)[1:-1]


def _env_value(value: str) -> Any:
    # Kept a string: pydantic's lax mode reads "true" and "3" for bool and int fields, and a
    # string field keeps "012345678901" (an account id) as it is.
    return value


def _describe(exc: ValidationError, source: str, env_keys: dict[tuple[str, ...], str]) -> str:
    """The first validation error as one line: where, which key, what is expected, and what
    was given (cut, and never a secret-looking value: see :func:`bridge.errors.shown`)."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(str(part) for part in error["loc"])
    # A variable names a path; an unknown key is reported at its first part.
    where = env_keys.get(loc) or next(
        (name for path, name in env_keys.items() if path[: len(loc)] == loc), source
    )
    key, message = first_error(exc)
    if error["type"] == "extra_forbidden":
        hint = _did_you_mean(loc)
        return (
            f"{where}: unknown key '{key}'; remove it or check its spelling{hint} "
            "(`smbridge config show` lists every key)"
        )
    got = error.get("input")
    expected = _expected(error, message)
    got_text = "" if isinstance(got, dict) else f", got {shown(got)}"
    return f"{where}: {key}: expected {expected}{got_text}"


def _did_you_mean(loc: tuple[str, ...]) -> str:
    """``; did you mean 'x'?`` for an unknown key close to a known one at the same place."""
    model: Any = BridgeConfig
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        candidates = [field.annotation, *get_args(field.annotation)]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None:
            return ""
    known = [name for name in getattr(model, "model_fields", {}) if name != "source"]
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6) if loc else []
    return f"; did you mean '{close[0]}'?" if close else ""


def _expected(error: Mapping[str, Any], message: str) -> str:
    pattern = (error.get("ctx") or {}).get("pattern")
    if pattern:
        for name, text in _EXPECTED.items():
            if pattern == _pattern_of(name):
                return text
        return f"a value matching {pattern}"
    return message.lower().replace("input should be ", "")


def _pattern_of(type_name: str) -> str | None:
    annotated = globals()[type_name]
    for meta in getattr(annotated, "__metadata__", ()):
        if isinstance(meta, StringConstraints):
            return meta.pattern
    return None
