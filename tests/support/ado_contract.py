"""Hold Azure DevOps requests against the official OpenAPI specs in ../shared/reference/."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
SPEC_FILES = (
    "ado-openapi-pipelines-7.1-pipelines.json",
    "ado-openapi-build-7.1-builds.json",
    "ado-openapi-approvalsAndChecks-7.1-pipelinesapproval.json",
    "ado-openapi-approvalsAndChecks-7.1-pipelinesChecks.json",
    "ado-openapi-distributedTask-7.1-environments.json",
)


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
    """``check(method, url, body)`` raises AssertionError unless the request fits a spec."""

    def __init__(self, files: tuple[str, ...] = SPEC_FILES) -> None:
        self.operations: list[Operation] = []
        for name in files:
            spec = json.loads((REFERENCE_DIR / name).read_text(encoding="utf-8-sig"))
            for template, methods in spec["paths"].items():
                regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
                for method, definition in methods.items():
                    if method.lower() in ("get", "post", "put", "patch", "delete"):
                        self.operations.append(
                            Operation(spec, method.upper(), template, re.compile(regex), definition)
                        )

    def check(self, method: str, url: str, body: Any) -> str:
        parts = urlsplit(url)
        assert parts.scheme == "https", f"{url}: Azure DevOps is https only"
        candidates = [
            op for op in self.operations if op.method == method and op.pattern.match(parts.path)
        ]
        assert candidates, f"{method} {parts.path}: no such operation in the reference specs"
        op = max(candidates, key=lambda o: len(o.template))
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        params = _parameters(op)
        declared = {p["name"]: p for p in params if p.get("in") == "query"}
        for name in query:
            assert name in declared, f"{op.operation_id}: undeclared query parameter {name!r}"
        version = declared.get("api-version")
        assert "api-version" in query, f"{op.operation_id}: api-version missing"
        if version and "'7.1'" in version.get("description", ""):
            assert query["api-version"] == "7.1", f"{op.operation_id}: api-version must be 7.1"
        for name, parameter in declared.items():
            if parameter.get("required") and name not in query:
                raise AssertionError(f"{op.operation_id}: required query parameter {name} missing")
            if name in query and parameter.get("type") == "integer":
                assert re.fullmatch(r"-?\d+", query[name]), f"{name} must be an integer"
        template_parts = op.template.split("/")
        for part, value in zip(template_parts, parts.path.split("/"), strict=True):
            if part.startswith("{"):
                name = part.strip("{}")
                spec_param = next((p for p in params if p.get("name") == name), {})
                if spec_param.get("type") == "integer":
                    assert value.isdigit(), f"path parameter {name}={value!r} must be an integer"
        body_param = next((p for p in params if p.get("in") == "body"), None)
        if body_param is None:
            assert body in (None, b"", ""), f"{op.operation_id}: takes no body"
        else:
            document = json.loads(body) if isinstance(body, (str, bytes)) else body
            schema = {**body_param["schema"], "definitions": op.spec.get("definitions", {})}
            jsonschema.validate(document, schema)
            self._no_unknown_properties(document, body_param["schema"], op.spec, op.operation_id)
        return op.operation_id

    def _no_unknown_properties(
        self, document: Any, schema: dict[str, Any], spec: dict[str, Any], where: str
    ) -> None:
        """The specs allow extra properties; the service ignores them silently, so we don't."""
        while "$ref" in schema:
            schema = spec["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
        if isinstance(document, dict) and "properties" in schema:
            for key, value in document.items():
                assert key in schema["properties"], f"{where}: unknown body property {key!r}"
                self._no_unknown_properties(value, schema["properties"][key], spec, where)
        elif isinstance(document, dict) and isinstance(schema.get("additionalProperties"), dict):
            for value in document.values():
                self._no_unknown_properties(value, schema["additionalProperties"], spec, where)
