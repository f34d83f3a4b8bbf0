"""Routes: which Azure DevOps pipeline a model package group's approvals start.

JSON (in ``SMBRIDGE_ROUTES`` or the SSM parameter named by ``SMBRIDGE_ROUTES_PARAMETER``)::

    {"routes": {"churn-xgb": {"organization": "contoso", "project": "mlops", "pipelineId": 12,
                              "branch": "main"}},
     "default": {"organization": "contoso", "project": "mlops", "pipelineId": 13}}

Keys of ``routes`` are model package group names. The trigger sets the run's
``modelPackageArn``, ``modelPackageGroupName``, ``modelPackageVersion`` and ``sourceEventId``
itself; a route's ``templateParameters`` (strings) may add only parameters the target pipeline's
YAML declares, because the Runs API answers 400 to any other one. azure-pipelines/model-deploy.yml
declares none beyond those four, so routes to it carry no ``templateParameters``.

Types are strict (``"pipelineId": true`` or ``"12"`` is refused, not coerced).
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.errors import ConfigError, first_error

RESERVED_PARAMETERS = frozenset(
    {"modelPackageArn", "modelPackageGroupName", "modelPackageVersion", "sourceEventId"}
)
# An SSM parameter holds at most 8 KB (advanced tier); anything far larger is a mistake.
MAX_ROUTES_BYTES = 256 * 1024
# botocore's sagemaker service model, shape EntityName (CreateModelPackageGroupInput
# .ModelPackageGroupName): pattern below, max 63 (tests/unit/test_trigger_routing.py compares).
GROUP_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
GROUP_NAME_MAX = 63
# Cc: C0/C1 controls (newline, tab, NUL, DEL ...); Zl/Zp: U+2028/U+2029 line/paragraph separators.
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
_SURROGATE = re.compile("[\ud800-\udfff]")


def _control_character(value: str) -> str | None:
    """The first control character or line break in ``value``, as ``U+`` and four hex digits."""
    for char in value:
        if unicodedata.category(char) in _CONTROL_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def is_group_name(name: str) -> bool:
    """Whether SageMaker accepts ``name`` as a model package group name."""
    return len(name) <= GROUP_NAME_MAX and GROUP_NAME_PATTERN.fullmatch(name) is not None


class Route(BaseModel):
    """One Azure DevOps target."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    organization: str = Field(min_length=1)
    project: str = Field(min_length=1)
    pipeline_id: int = Field(alias="pipelineId", ge=1)
    branch: str = Field("main", min_length=1)
    template_parameters: dict[str, str] = Field(default_factory=dict, alias="templateParameters")

    @field_validator("organization", "project", "branch")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        found = _control_character(value)
        if found:
            raise ValueError(f"contains a control character or line break ({found})")
        return value

    @field_validator("template_parameters")
    @classmethod
    def _no_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        clash = RESERVED_PARAMETERS & set(value)
        if clash:
            raise ValueError(
                f"{', '.join(sorted(clash))}: set by the trigger itself, remove from the route"
            )
        return value

    @property
    def ref_name(self) -> str:
        return self.branch if self.branch.startswith("refs/") else f"refs/heads/{self.branch}"

    def describe(self) -> str:
        return f"{self.organization}/{self.project}/pipeline {self.pipeline_id}"


class RoutingTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    routes: dict[str, Route] = Field(default_factory=dict)
    default: Route | None = None

    @field_validator("routes")
    @classmethod
    def _group_names(cls, value: dict[str, Route]) -> dict[str, Route]:
        # A typo'd key would otherwise never match an event and fall through to the default.
        for name in value:
            if not is_group_name(name):
                raise ValueError(
                    f"{json.dumps(name)} is not a SageMaker model package group name "
                    "(1-63 letters, digits and hyphens, starting and ending with a letter or digit)"
                )
        return value

    def route_for(self, group: str) -> Route | None:
        return self.routes.get(group, self.default)


# pydantic error types -> what the JSON should have held (strict mode: no coercion).
_EXPECTED = {
    "int_type": "an integer",
    "string_type": "a string",
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
}


def _json_kind(value: Any) -> str:
    """How JSON spells the type of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number with a decimal point or exponent"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _load(text: str, source: str) -> dict[str, Any]:
    """The decoded routes document; one-line ConfigError when it is not a JSON object."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_ROUTES_BYTES:
        raise ConfigError(
            f"{source}: routes are {size} bytes, more than the {MAX_ROUTES_BYTES} allowed"
        )

    def integer(digits: str) -> int:
        # int() would raise a ValueError (not a JSONDecodeError) past Python's limit
        count = len(digits.lstrip("-"))
        if count > sys.get_int_max_str_digits() > 0:
            raise ConfigError(
                f"{source}: routes hold a number of {count} digits, more than the "
                f"{sys.get_int_max_str_digits()} Python reads"
            )
        return int(digits)

    def mapping(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # a "\ud800" key: pydantic cannot read it, and reports it at no location at all
        for key, _ in pairs:
            if _SURROGATE.search(key):
                raise ConfigError(
                    f"{source}: the key {json.dumps(key)} holds a \\u escape of a lone "
                    "surrogate, which is not a character"
                )
        return dict(pairs)

    try:
        document: Any = json.loads(text, parse_int=integer, object_pairs_hook=mapping)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: routes are not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise ConfigError(f"{source}: routes are nested too deeply to parse") from None
    if not isinstance(document, dict):
        raise ConfigError(
            f"{source}: routes must be a JSON object at the top level, not {_json_kind(document)}"
        )
    return document


def _describe(exc: ValidationError) -> tuple[str, str]:
    """(where, message) of the first error; type errors say what the JSON held instead."""
    where, message = first_error(exc)
    error = exc.errors()[0]
    expected = _EXPECTED.get(str(error["type"]))
    if expected:
        message = f"expected {expected}, not {_json_kind(error['input'])}"
    return where, message


def parse_routes(text: str, *, source: str) -> RoutingTable:
    """The routing table in ``text``; ConfigError ``"{source}: {where}: {message}"`` if invalid."""
    document = _load(text, source)
    try:
        return RoutingTable.model_validate(document)
    except ValidationError as exc:
        where, message = _describe(exc)
        raise ConfigError(f"{source}: {where}: {message}") from None
