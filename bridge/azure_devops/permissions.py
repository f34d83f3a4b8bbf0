"""Pipeline permissions on a protected resource (an environment), on :class:`AzureDevOpsClient`.

A YAML pipeline must be authorised to use an environment before a run can deploy to it: a run
started through the REST API (the approval trigger's ``POST …/runs``) otherwise stops at "This
pipeline needs permission to access a resource" until someone clicks Permit. ``smbridge ado
setup`` authorises the model-deploy pipeline on its environments through ``Pipeline Permissions -
Get`` / ``- Update Pipeline Permisions For Resource`` (sic, the spec's operation id) of
reference/ado-openapi-approvalsAndChecks-7.1-pipelinePermissions.json, api-version
``7.1-preview.1``; the PATCH body is the recorded example's
(reference/ado-examples/pipelinePermissions-PATCH__UpdatePipelinePermissionsForResource.json).

As in environments.py, no answer is parsed unchecked: a 2xx without what is needed is one
:class:`AzureDevOpsError` naming the operation and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bridge.azure_devops.client import (
    ApiRequest,
    AzureDevOpsClient,
    integer_field,
    json_object,
    malformed,
    optional_boolean,
    optional_object,
    optional_objects,
)
from bridge.azure_devops.environments import AUTH_HINT, answer

PIPELINE_PERMISSIONS_API_VERSION = "7.1-preview.1"
PERMISSION_HINTS: Mapping[int, str] = {
    401: AUTH_HINT,
    403: "the identity needs the Administrator role on the environment (Security) to authorise "
    "pipelines on it",
    404: "check the organization, the project and that the resource still exists",
}


@dataclass(frozen=True)
class ResourcePermissions:
    """``ResourcePipelinePermissions``: which pipelines may use one resource."""

    resource_type: str
    resource_id: str
    all_pipelines: bool = False  # "open access": every pipeline of the project may use it
    pipelines: frozenset[int] = frozenset()  # ids of the pipelines authorised one by one

    def authorises(self, pipeline_id: int) -> bool:
        return self.all_pipelines or pipeline_id in self.pipelines


def _path(project: str, resource_type: str, resource_id: str) -> str:
    return (
        f"{quote(project, safe='')}/_apis/pipelines/pipelinepermissions/"
        f"{quote(resource_type, safe='')}/{quote(resource_id, safe='')}"
    )


def _permissions(
    data: Any, context: str, resource_type: str, resource_id: str
) -> ResourcePermissions:
    """``ResourcePipelinePermissions``: ``pipelines`` items need their ``id``; ``authorized``
    absent means not authorised."""
    body = json_object(data, context)
    everyone = optional_object(body, "allPipelines", context)
    authorised = frozenset(
        integer_field(item, "id", f"{context}, item {n} of 'pipelines'")
        for n, item in enumerate(optional_objects(body, "pipelines", context), 1)
        if optional_boolean(item, "authorized", context, f"pipelines[{n}].")
    )
    return ResourcePermissions(
        resource_type=resource_type,
        resource_id=resource_id,
        all_pipelines=bool(optional_boolean(everyone, "authorized", context, "allPipelines.")),
        pipelines=authorised,
    )


def get_permissions_request(project: str, resource_type: str, resource_id: str) -> ApiRequest:
    """``Pipeline Permissions - Get``: ``GET …/pipelines/pipelinepermissions/{type}/{id}``."""
    return ApiRequest(
        "GET",
        _path(project, resource_type, resource_id),
        PIPELINE_PERMISSIONS_API_VERSION,
        f"Pipeline Permissions - Get on {resource_type} {resource_id} in {project}",
        hints=PERMISSION_HINTS,
    )


def get_permissions(
    client: AzureDevOpsClient, project: str, resource_type: str, resource_id: str
) -> ResourcePermissions:
    request = get_permissions_request(project, resource_type, resource_id)
    _, data, context = answer(client, request)
    return _permissions(data, context, resource_type, resource_id)


def authorise_pipeline_request(
    project: str, resource_type: str, resource_id: str, pipeline_id: int
) -> ApiRequest:
    """``Pipeline Permissions - Update Pipeline Permisions For Resource``: ``PATCH`` the same
    path with ``{"pipelines": [{"id": N, "authorized": true}]}`` (only this pipeline: the
    others keep what they have)."""
    return ApiRequest(
        "PATCH",
        _path(project, resource_type, resource_id),
        PIPELINE_PERMISSIONS_API_VERSION,
        f"Pipeline Permissions - Update (authorise pipeline {int(pipeline_id)}) on "
        f"{resource_type} {resource_id} in {project}",
        body={"pipelines": [{"id": int(pipeline_id), "authorized": True}]},
        hints={**PERMISSION_HINTS, 400: "check the pipeline id (azure_devops.environments)"},
    )


def authorise_pipeline(
    client: AzureDevOpsClient, project: str, resource_type: str, resource_id: str, pipeline_id: int
) -> ResourcePermissions:
    """Authorise ``pipeline_id`` on the resource; the answer must show it authorised."""
    request = authorise_pipeline_request(project, resource_type, resource_id, pipeline_id)
    _, data, context = answer(client, request)
    permissions = _permissions(data, context, resource_type, resource_id)
    if not permissions.authorises(pipeline_id):
        raise malformed(context, f"with pipeline {pipeline_id} still not authorized in the answer")
    return permissions
