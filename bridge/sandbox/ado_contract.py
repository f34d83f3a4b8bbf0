"""Hold Azure DevOps requests against the official OpenAPI specs in reference/.

Checked: method and path, the exact api-version the operation's spec names ('7.1',
'7.1-preview.1', ...), declared and required query parameters, integer path parameters, and the
body against its schema (uuid formats included) with no property the schema does not declare
(inherited ``allOf`` properties count). A check configuration's body is validated as the
subtype its ``type.id`` names (``ApprovalCheckConfiguration`` for the Approval check,
``GenericCheckConfiguration`` for the Exclusive Lock check, whose settings are empty), since the
spec's ``CheckConfiguration`` declares no ``settings``.

The match is on the path after the host (``/{organization}/{project}/_apis/...``), so the same
contract holds a request to ``https://dev.azure.com/contoso/...`` and one to the sandbox's
``http://127.0.0.1:PORT/contoso/...``. Azure DevOps is https only; plain http is accepted for a
loopback host alone (the sandbox server, which is not Azure DevOps).

A request the specs do not allow raises :class:`ContractViolation` (an ``AssertionError``, raised
explicitly so that ``python -O`` does not turn the checks off).

The specs are files of the repository (``reference/``, see reference/README.md): without a clone
(an installed wheel) :class:`SandboxUnavailable` says so."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

from bridge.errors import UserError

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPOSITORY_ROOT / "reference"
APPROVAL_CHECK_TYPE_ID = "8c6f20a7-a545-4486-9777-f762fafe0d4d"
# reference/README.md; Microsoft's Terraform provider (azuredevops_check_exclusive_lock)
EXCLUSIVE_LOCK_CHECK_TYPE_ID = "2ef31ad6-baa0-403a-8b45-2cbc9b4e5563"
# Check configuration bodies: check type id -> the definition that declares its ``settings``.
CHECK_CONFIGURATION_TYPES = {
    APPROVAL_CHECK_TYPE_ID: "ApprovalCheckConfiguration",
    "fe1de3ee-a436-41b4-bb20-f6eb4cb879a7": "TaskCheckConfiguration",
    EXCLUSIVE_LOCK_CHECK_TYPE_ID: "GenericCheckConfiguration",
}
CHECK_CONFIGURATION_WRITES = ("Check Configurations_Add", "Check Configurations_Update")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_FORMATS = jsonschema.FormatChecker(formats=["uuid"])
_API_VERSION = re.compile(r"should be set to '([^']+)'")
SPEC_FILES = (
    "ado-openapi-pipelines-7.1-pipelines.json",
    "ado-openapi-build-7.1-builds.json",
    "ado-openapi-approvalsAndChecks-7.1-pipelinesapproval.json",
    "ado-openapi-approvalsAndChecks-7.1-pipelinesChecks.json",
    "ado-openapi-distributedTask-7.1-environments.json",
    "ado-openapi-approvalsAndChecks-7.1-pipelinePermissions.json",
    "ado-openapi-distributedTask-7.1-task.json",  # Oidctoken_Create (a job's OIDC token)
    "ado-openapi-serviceEndpoint-7.1-endpoints.json",  # Endpoints_Get (service connections)
)


class SandboxUnavailable(UserError):
    """The sandbox was started without the repository files it reads (``reference/``, the
    pipeline YAML): an installed wheel does not carry them."""


class ContractViolation(AssertionError):
    """A request the Azure DevOps REST specs in reference/ do not allow."""


def repository_file(relative: str) -> Path:
    """``REPOSITORY_ROOT / relative``, or :class:`SandboxUnavailable` naming what is missing."""
    path = REPOSITORY_ROOT / relative
    if not path.exists():
        raise SandboxUnavailable(
            f"the sandbox needs a clone of the smbridge repository: {relative} not found under "
            f"{REPOSITORY_ROOT} (an installed wheel does not carry reference/ or "
            "azure-pipelines/); run it from a clone, e.g. after `pip install -e '.[sandbox]'`"
        )
    return path


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


@dataclass(frozen=True)
class Operation:
    spec: dict[str, Any]
    method: str
    template: str
    pattern: re.Pattern[str]
    definition: dict[str, Any]

    @property
    def operation_id(self) -> str:
        return self.definition.get("operationId", f"{self.method} {self.template}")


def _parameters(op: Operation) -> list[dict[str, Any]]:
    resolved = []
    for parameter in op.definition.get("parameters", []):
        if "$ref" in parameter:
            name = parameter["$ref"].rsplit("/", 1)[-1]
            parameter = op.spec["parameters"][name]
        resolved.append(parameter)
    return resolved


class AzureDevOpsContract:
    """``check(method, url, body)`` raises :class:`ContractViolation` unless the request fits a
    spec, and returns the operation id (``"Runs_Run Pipeline"``) when it does."""

    def __init__(self, files: tuple[str, ...] = SPEC_FILES) -> None:
        self.operations: list[Operation] = []
        for name in files:
            text = repository_file(f"reference/{name}").read_text(encoding="utf-8-sig")
            spec = json.loads(text)
            for template, methods in spec["paths"].items():
                regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
                for method, definition in methods.items():
                    if method.lower() in ("get", "post", "put", "patch", "delete"):
                        self.operations.append(
                            Operation(spec, method.upper(), template, re.compile(regex), definition)
                        )

    def check(self, method: str, url: str, body: Any) -> str:
        parts = urlsplit(url)
        loopback = parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS
        _require(
            parts.scheme == "https" or loopback,
            f"{url}: Azure DevOps is https only (plain http only to the loopback sandbox)",
        )
        candidates = [
            op for op in self.operations if op.method == method and op.pattern.match(parts.path)
        ]
        _require(
            bool(candidates), f"{method} {parts.path}: no such operation in the reference specs"
        )
        # the most specific route wins: /pipelines/approvals before /pipelines/{pipelineId}
        op = max(candidates, key=_specificity)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        params = _parameters(op)
        declared = {p["name"]: p for p in params if p.get("in") == "query"}
        for name in query:
            _require(name in declared, f"{op.operation_id}: undeclared query parameter {name!r}")
        version = declared.get("api-version")
        _require("api-version" in query, f"{op.operation_id}: api-version missing")
        expected = _API_VERSION.search((version or {}).get("description", ""))
        if expected:
            _require(
                query["api-version"] == expected.group(1),
                f"{op.operation_id}: api-version must be {expected.group(1)}, "
                f"got {query['api-version']}",
            )
        for name, parameter in declared.items():
            if parameter.get("required") and name not in query:
                raise ContractViolation(
                    f"{op.operation_id}: required query parameter {name} missing"
                )
            if name in query and parameter.get("type") == "integer":
                _require(bool(re.fullmatch(r"-?\d+", query[name])), f"{name} must be an integer")
        template_parts = op.template.split("/")
        for part, value in zip(template_parts, parts.path.split("/"), strict=True):
            if part.startswith("{"):
                name = part.strip("{}")
                spec_param = next((p for p in params if p.get("name") == name), {})
                if spec_param.get("type") == "integer":
                    _require(value.isdigit(), f"path parameter {name}={value!r} must be an integer")
        body_param = next((p for p in params if p.get("in") == "body"), None)
        if body_param is None:
            _require(body in (None, b"", ""), f"{op.operation_id}: takes no body")
        else:
            document = _document(body, op.operation_id)
            body_schema = body_param["schema"]
            if op.operation_id in CHECK_CONFIGURATION_WRITES:
                body_schema = self._check_configuration_schema(document, op.operation_id)
            schema = {**body_schema, "definitions": op.spec.get("definitions", {})}
            try:
                jsonschema.validate(document, schema, format_checker=_FORMATS)
            except jsonschema.ValidationError as error:
                where = "/".join(str(p) for p in error.absolute_path) or "(the body)"
                raise ContractViolation(
                    f"{op.operation_id}: body at {where}: {error.message}"
                ) from None
            self._no_unknown_properties(document, body_schema, op.spec, op.operation_id)
        return op.operation_id

    @staticmethod
    def _check_configuration_schema(document: Any, where: str) -> dict[str, Any]:
        """The subtype of ``CheckConfiguration`` the body's ``type.id`` selects."""
        _require(isinstance(document, dict), f"{where}: body must be an object")
        for key in ("type", "resource", "settings"):
            _require(key in document, f"{where}: body needs {key!r}")
        type_id = str((document.get("type") or {}).get("id", "")).lower()
        _require(type_id in CHECK_CONFIGURATION_TYPES, f"{where}: unknown check type {type_id!r}")
        if type_id == EXCLUSIVE_LOCK_CHECK_TYPE_ID:
            _require(document["settings"] == {}, f"{where}: an ExclusiveLock check has no settings")
        return {"$ref": f"#/definitions/{CHECK_CONFIGURATION_TYPES[type_id]}"}

    def _no_unknown_properties(
        self, document: Any, schema: dict[str, Any], spec: dict[str, Any], where: str
    ) -> None:
        """The specs allow extra properties; the service ignores them silently, so we don't."""
        while "$ref" in schema:
            schema = spec["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
        properties = _properties(schema, spec)
        if isinstance(document, dict) and properties:
            for key, value in document.items():
                _require(key in properties, f"{where}: unknown body property {key!r}")
                self._no_unknown_properties(value, properties[key], spec, where)
        elif isinstance(document, dict) and isinstance(schema.get("additionalProperties"), dict):
            for value in document.values():
                self._no_unknown_properties(value, schema["additionalProperties"], spec, where)
        elif isinstance(document, list) and isinstance(schema.get("items"), dict):
            for item in document:
                self._no_unknown_properties(item, schema["items"], spec, where)


def _document(body: Any, where: str) -> Any:
    if not isinstance(body, (str, bytes)):
        return body
    try:
        return json.loads(body)
    except ValueError:
        raise ContractViolation(f"{where}: the body is not JSON") from None


def _specificity(op: Operation) -> tuple[int, int]:
    literal = sum(1 for part in op.template.split("/") if part and not part.startswith("{"))
    return literal, len(op.template)


def _properties(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A schema's properties including those inherited through ``allOf``."""
    merged: dict[str, Any] = {}
    for parent in schema.get("allOf", []):
        while "$ref" in parent:
            parent = spec["definitions"][parent["$ref"].rsplit("/", 1)[-1]]
        merged.update(_properties(parent, spec))
    merged.update(schema.get("properties", {}))
    return merged
