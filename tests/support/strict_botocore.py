"""Hold every AWS request of the tests to botocore's own service model, strictly.

botocore validates types and required members before sending, but not ``pattern``, ``max``
lengths or enums; moto accepts almost anything (it does not check tag patterns, for one). The
real services refuse requests outside their model (e.g. SageMaker ``Tag.Value`` must match
``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*``, at most 256 characters). This checker walks the request
against the operation's input shape and raises :class:`ModelViolation` naming the member.

Patterns in the models are Java regular expressions (``\\p{L}``), matched in full with the
``regex`` module, which knows Unicode properties.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

import botocore.session
import regex
from botocore.model import Shape

# Where the models' patterns are not regular expressions Python's `regex` reads, skip them.
_UNREADABLE: set[str] = set()


class ModelViolation(AssertionError):
    """A request the real service would refuse."""


@cache
def _service_model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> Any:
    try:
        return regex.compile(pattern)
    except regex.error:
        _UNREADABLE.add(pattern)
        return None


def _check(shape: Shape, value: Any, where: str) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return  # botocore's own validator reports type errors
        for name in meta.get("required", []):
            if name not in value:
                raise ModelViolation(f"{where}: missing required member {name}")
        for name, member in value.items():
            if name in shape.members:
                _check(shape.members[name], member, f"{where}.{name}")
        return
    if kind == "list":
        if isinstance(value, list):
            _bounds(meta, len(value), where, "items")
            for index, item in enumerate(value):
                _check(shape.member, item, f"{where}[{index}]")
        return
    if kind == "map":
        if isinstance(value, dict):
            _bounds(meta, len(value), where, "entries")
            for key, item in value.items():
                _check(shape.key, key, f"{where} key {key!r}")
                _check(shape.value, item, f"{where}[{key!r}]")
        return
    if kind == "string" and isinstance(value, str):
        _bounds(meta, len(value), where, "characters")
        if shape.enum and value not in shape.enum:
            raise ModelViolation(f"{where}: {value[:80]!r} is not one of {shape.enum}")
        pattern = meta.get("pattern")
        if pattern:
            compiled = _compile(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                raise ModelViolation(f"{where}: {value[:80]!r} does not match {pattern}")
        return
    if kind in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        low, high = meta.get("min"), meta.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ModelViolation(f"{where}: {value} is outside {low}..{high}")


def _bounds(meta: dict[str, Any], size: int, where: str, unit: str) -> None:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and size < low:
        raise ModelViolation(f"{where}: {size} {unit}, at least {low} allowed")
    if high is not None and size > high:
        raise ModelViolation(f"{where}: {size} {unit}, at most {high} allowed")


def validate_request(service: str, operation: str, params: dict[str, Any]) -> None:
    """Raise :class:`ModelViolation` if ``params`` break ``service``'s model for ``operation``."""
    model = _service_model(service).operation_model(operation)
    if model.input_shape is not None:
        _check(model.input_shape, params, f"{service}:{operation}")


def install(services: frozenset[str]) -> Any:
    """Patch botocore's client so every call to ``services`` is validated first; returns an
    undo function."""
    from botocore.client import BaseClient

    original = BaseClient._make_api_call

    def checked(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        if service in services:
            validate_request(service, operation_name, api_params)
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = checked  # type: ignore[method-assign]

    def undo() -> None:
        BaseClient._make_api_call = original  # type: ignore[method-assign]

    return undo
