"""YAML pipeline approvals (the Approval check waiting on a run): query, get, approve, reject.

``Approvals_*`` of approvalsAndChecks 7.1 use api-version ``7.1``. Each function is one request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from bridge.azure_devops.client import ApiRequest, AzureDevOpsClient, collection, web_href
from bridge.azure_devops.environments import AUTH_HINT

APPROVALS_API_VERSION = "7.1"
ApprovalState = Literal[
    "pending", "approved", "rejected", "skipped", "canceled", "timedOut", "completed", "all"
]
Decision = Literal["approved", "rejected"]

_HINTS: Mapping[int, str] = {
    401: AUTH_HINT,
    403: "the identity may not act on this approval (PAT scope 'Build: Read & execute')",
    404: "check the organization, the project and the approval id",
}
UPDATE_HINTS: Mapping[int, str] = {
    **_HINTS,
    400: "the approval is not pending any more, or this identity is not one of its approvers",
    409: "the approval is not pending any more",
}


@dataclass(frozen=True)
class ApprovalStep:
    """One approver's part of an approval."""

    approver_id: str
    approver_name: str
    status: str
    comment: str = ""
    actual_approver_name: str = ""


@dataclass(frozen=True)
class Approval:
    id: str
    status: str
    created_on: str = ""
    last_modified_on: str = ""
    instructions: str = ""
    min_required_approvers: int = 0
    execution_order: str = ""
    steps: tuple[ApprovalStep, ...] = ()
    pipeline_name: str = ""  # ``pipeline`` is returned by the service but not in the 7.1 spec
    run_name: str = ""
    run_url: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "createdOn": self.created_on,
            "lastModifiedOn": self.last_modified_on,
            "instructions": self.instructions,
            "minRequiredApprovers": self.min_required_approvers,
            "executionOrder": self.execution_order,
            "pipeline": self.pipeline_name,
            "run": self.run_name,
            "runUrl": self.run_url,
            "steps": [step.__dict__ for step in self.steps],
        }


def _approval(data: Mapping[str, Any]) -> Approval:
    pipeline = data.get("pipeline") or {}
    owner = pipeline.get("owner") or {}
    steps = tuple(
        ApprovalStep(
            approver_id=str((step.get("assignedApprover") or {}).get("id", "")),
            approver_name=str((step.get("assignedApprover") or {}).get("displayName") or ""),
            status=str(step.get("status", "")),
            comment=str(step.get("comment") or ""),
            actual_approver_name=str((step.get("actualApprover") or {}).get("displayName") or ""),
        )
        for step in data.get("steps") or []
        if isinstance(step, dict)
    )
    return Approval(
        id=str(data["id"]),
        status=str(data.get("status", "")),
        created_on=str(data.get("createdOn") or ""),
        last_modified_on=str(data.get("lastModifiedOn") or ""),
        instructions=str(data.get("instructions") or ""),
        min_required_approvers=int(data.get("minRequiredApprovers") or 0),
        execution_order=str(data.get("executionOrder") or ""),
        steps=steps,
        pipeline_name=str(pipeline.get("name") or ""),
        run_name=str(owner.get("name") or ""),
        run_url=web_href(owner),
    )


def _path(project: str, approval_id: str | None = None) -> str:
    path = f"{quote(project, safe='')}/_apis/pipelines/approvals"
    return f"{path}/{quote(approval_id, safe='')}" if approval_id else path


def list_approvals_request(
    project: str, *, state: ApprovalState = "pending", top: int | None = None
) -> ApiRequest:
    """``Approvals - Query``, with each approval's steps (approvers) expanded."""
    params: dict[str, Any] = {"state": state, "$expand": "steps"}
    if top:
        params["top"] = int(top)
    return ApiRequest(
        "GET",
        _path(project),
        APPROVALS_API_VERSION,
        f"Approvals - Query ({state}) in {project}",
        params=params,
        hints=_HINTS,
    )


def list_approvals(
    client: AzureDevOpsClient,
    project: str,
    *,
    state: ApprovalState = "pending",
    top: int | None = None,
) -> list[Approval]:
    data = client.send_json(list_approvals_request(project, state=state, top=top))
    return [_approval(item) for item in collection(data)]


def get_approval_request(project: str, approval_id: str) -> ApiRequest:
    """``Approvals - Get`` with its steps."""
    return ApiRequest(
        "GET",
        _path(project, approval_id),
        APPROVALS_API_VERSION,
        f"Approvals - Get {approval_id} in {project}",
        params={"$expand": "steps"},
        hints=_HINTS,
    )


def get_approval(client: AzureDevOpsClient, project: str, approval_id: str) -> Approval:
    return _approval(client.send_json(get_approval_request(project, approval_id)))


def update_approval_request(
    project: str, approval_id: str, status: Decision, comment: str
) -> ApiRequest:
    """``Approvals - Update``: ``PATCH …/pipelines/approvals`` with ``[{approvalId, status,
    comment}]`` (as in the recorded example)."""
    verb = "approve" if status == "approved" else "reject"
    return ApiRequest(
        "PATCH",
        _path(project),
        APPROVALS_API_VERSION,
        f"Approvals - Update ({verb} {approval_id}) in {project}",
        body=[{"approvalId": approval_id, "status": status, "comment": comment}],
        hints=UPDATE_HINTS,
    )


def update_approval(
    client: AzureDevOpsClient, project: str, approval_id: str, status: Decision, comment: str
) -> Approval:
    """Approve or reject; returns the approval as the service reports it afterwards."""
    data = client.send_json(update_approval_request(project, approval_id, status, comment))
    items = collection(data)
    match = next((i for i in items if str(i.get("id", "")).lower() == approval_id.lower()), None)
    if match is None and items:
        match = items[0]
    return _approval(match) if match else Approval(id=approval_id, status=status)
