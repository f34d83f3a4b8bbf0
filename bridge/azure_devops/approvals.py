"""YAML pipeline approvals (the Approval check waiting on a run): query, get, approve, reject.

``Approvals_*`` of approvalsAndChecks 7.1 use api-version ``7.1``. Each function is one request.
Answers are checked like those of :mod:`bridge.azure_devops.environments`: an approval needs its
``id``; a field of the wrong type is an :class:`AzureDevOpsError` naming the operation and the
field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from bridge.azure_devops.client import (
    ApiRequest,
    AzureDevOpsClient,
    collection,
    json_kind,
    json_object,
    malformed,
    optional_integer,
    optional_object,
    optional_objects,
    optional_text,
    required_text,
    web_href,
)
from bridge.azure_devops.environments import AUTH_HINT, answer, execution_order_name

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


def _step(step: Mapping[str, Any], context: str, where: str) -> ApprovalStep:
    """An ``ApprovalStep`` (pipelinesapproval 7.1)."""
    assigned = optional_object(step, "assignedApprover", context, where)
    actual = optional_object(step, "actualApprover", context, where)
    return ApprovalStep(
        approver_id=optional_text(assigned, "id", context, f"{where}assignedApprover."),
        approver_name=optional_text(assigned, "displayName", context, f"{where}assignedApprover."),
        status=optional_text(step, "status", context, where),
        comment=optional_text(step, "comment", context, where),
        actual_approver_name=optional_text(
            actual, "displayName", context, f"{where}actualApprover."
        ),
    )


def _approval(data: Any, context: str) -> Approval:
    """An ``Approval`` (pipelinesapproval 7.1): ``id`` (a uuid string) is needed."""
    approval = json_object(data, context)
    order = approval.get("executionOrder")
    if order is not None and (isinstance(order, bool) or not isinstance(order, str | int)):
        raise malformed(context, f"with 'executionOrder' not a string but {json_kind(order)}")
    # ``pipeline`` is returned by the service though not in the 7.1 spec: checked all the same
    pipeline = optional_object(approval, "pipeline", context)
    owner = optional_object(pipeline, "owner", context, "pipeline.")
    steps = optional_objects(approval, "steps", context)
    return Approval(
        id=required_text(approval, "id", context),
        status=optional_text(approval, "status", context),
        created_on=optional_text(approval, "createdOn", context),
        last_modified_on=optional_text(approval, "lastModifiedOn", context),
        instructions=optional_text(approval, "instructions", context),
        min_required_approvers=optional_integer(approval, "minRequiredApprovers", context) or 0,
        execution_order=execution_order_name(order) if order is not None else "",
        steps=tuple(_step(step, context, f"steps[{n}].") for n, step in enumerate(steps, 1)),
        pipeline_name=optional_text(pipeline, "name", context, "pipeline."),
        run_name=optional_text(owner, "name", context, "pipeline.owner."),
        run_url=web_href(owner),
    )


def _approvals(data: Any, context: str) -> list[Approval]:
    """The ``Approval[]`` of ``Approvals - Query`` and ``Approvals - Update``."""
    return [
        _approval(item, f"{context}, item {n} of 'value'")
        for n, item in enumerate(collection(data, context), 1)
    ]


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
    _, data, context = answer(client, list_approvals_request(project, state=state, top=top))
    return _approvals(data, context)


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
    _, data, context = answer(client, get_approval_request(project, approval_id))
    return _approval(data, context)


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
    """Approve or reject; returns the approval as the service reports it afterwards.

    The spec's success answer is ``Approval[]`` with the updated approval. An empty body, or an
    answer without this approval, is an error (``maybe_processed``: the decision may have been
    recorded), not a guessed success: with several approvers an approval can stay pending."""
    _, data, context = answer(
        client, update_approval_request(project, approval_id, status, comment)
    )
    if data is None:
        raise malformed(
            context,
            "with an empty body instead of the updated approval: the decision may have been "
            "recorded, check with 'smbridge ado approvals list --state all' before repeating it",
        )
    wanted = approval_id.lower()
    approvals = _approvals(data, context)
    match = next((a for a in approvals if a.id.lower() == wanted), None)
    if match is None:
        raise malformed(
            context,
            f"without approval {approval_id} in 'value': the decision may have been recorded, "
            "check with 'smbridge ado approvals list --state all' before repeating it",
        )
    return match
