"""Pipeline definitions: load one (a JSON file or a ``module:function``), canonicalise and hash it.

The canonical form, the hash and :class:`StagedUpload` are upsert's, so they live in
:mod:`bridge.aws.pipelines` (below this package) and are used from there. Only
:func:`load_definition` with a ``module:function`` target touches the SageMaker SDK, and it does
so through :mod:`bridge.pipeline.sdk`, imported lazily.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bridge.aws.pipelines import StagedUpload, canonical_json, sha256_text
from bridge.errors import DefinitionError

__all__ = ["BuiltDefinition", "StagedUpload", "canonical_json", "load_definition", "sha256_text"]


@dataclass(frozen=True)
class BuiltDefinition:
    """A pipeline definition: the exact JSON string sent to SageMaker, plus pending uploads."""

    definition_json: str
    source: str
    uploads: tuple[StagedUpload, ...] = field(default=())

    @cached_property
    def document(self) -> dict[str, Any]:
        return json.loads(self.definition_json)

    @property
    def parameters(self) -> list[dict[str, Any]]:
        """The parameters the pipeline declares (``Name``, ``Type``, ``DefaultValue``)."""
        return list(self.document.get("Parameters", []))

    @property
    def step_names(self) -> list[str]:
        return [step.get("Name", "?") for step in self.document.get("Steps", [])]

    @property
    def size_bytes(self) -> int:
        return len(self.definition_json.encode("utf-8"))


def load_definition(target: str, **build_args: Any) -> BuiltDefinition:
    """A definition from a ``.json`` file (used as is) or built offline from ``module:function``
    by :func:`bridge.pipeline.sdk.build_pipeline_definition` with ``build_args`` (region,
    role_arn, bucket, pipeline_name, model_package_group_name, staging_dir, code_prefix).

    Building never calls AWS: code is staged under ``staging_dir`` with content-addressed S3 keys
    and uploaded by ``upsert`` only. Raises :class:`DefinitionError`.
    """
    if target.endswith(".json"):
        path = Path(target)
        if not path.is_file():
            raise DefinitionError(f"{target}: definition file not found; check --definition")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DefinitionError(f"{target}: cannot read ({exc})") from None
        return BuiltDefinition(definition_json=text, source=target)
    if ":" not in target:
        raise DefinitionError(
            f"--definition {target!r}: expected a .json file or module:function "
            "(e.g. model-build/pipeline.py:get_pipeline)"
        )
    from bridge.pipeline import sdk  # the SageMaker SDK loads only on this path

    return sdk.build_pipeline_definition(target, **build_args)
