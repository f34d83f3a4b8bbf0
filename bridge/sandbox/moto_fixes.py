"""Fixes for the moto gaps the loop meets, each a context manager that undoes itself.

moto (in-process or its server thread in this process) answers most of what smbridge calls; where
it does not behave like the service on a point the loop depends on, these make it do so:

* :func:`change_sets_adopt_their_template`: moto executes a change set without adopting its
  template or computing the stack's Outputs (``create_stack`` does both); CloudFormation does.
* :func:`no_execution_steps`: moto lacks ``ListPipelineExecutionSteps`` (its executions succeed at
  once): answer with no steps.
* :func:`moto_compatible`: a copy of a model-deploy template that moto's CloudFormation can
  create (it lacks CloudWatch alarms and Application Auto Scaling; it reads ``PrimaryContainer``,
  not ``Containers``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MOTO_UNSUPPORTED = {
    "AWS::CloudWatch::Alarm",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
}


@contextmanager
def change_sets_adopt_their_template() -> Iterator[None]:
    from moto.cloudformation.models import ChangeSet

    original = ChangeSet.apply

    def apply(self: Any) -> None:
        original(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    ChangeSet.apply = apply  # type: ignore[method-assign]
    try:
        yield
    finally:
        ChangeSet.apply = original  # type: ignore[method-assign]


@contextmanager
def no_execution_steps() -> Iterator[None]:
    from moto.sagemaker.responses import SageMakerResponse

    missing = object()
    original = getattr(SageMakerResponse, "list_pipeline_execution_steps", missing)
    SageMakerResponse.list_pipeline_execution_steps = (  # type: ignore[attr-defined]
        lambda self: json.dumps({"PipelineExecutionSteps": []})
    )
    try:
        yield
    finally:
        if original is missing:
            del SageMakerResponse.list_pipeline_execution_steps  # type: ignore[attr-defined]
        else:
            SageMakerResponse.list_pipeline_execution_steps = original  # type: ignore[attr-defined]


def moto_compatible(tpl: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Copy of ``tpl`` that moto's CloudFormation can create, and the resources it dropped (only
    :data:`MOTO_UNSUPPORTED` types; a reference to a dropped alarm becomes its name)."""
    from moto.cloudformation.parsing import get_model_map

    supported = get_model_map()
    tpl = copy.deepcopy(tpl)
    dropped = {n for n, r in tpl["Resources"].items() if r["Type"] not in supported}
    unexpected = {tpl["Resources"][n]["Type"] for n in dropped} - MOTO_UNSUPPORTED
    if unexpected:
        raise ValueError(f"moto cannot create {', '.join(sorted(unexpected))}")
    alarm_names = {
        n: tpl["Resources"][n]["Properties"]["AlarmName"]
        for n in dropped
        if tpl["Resources"][n]["Type"] == "AWS::CloudWatch::Alarm"
    }
    for name in dropped:
        del tpl["Resources"][name]

    def replace(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in alarm_names:
                return alarm_names[node["Ref"]]
            return {k: replace(v) for k, v in node.items()}
        if isinstance(node, list):
            return [replace(v) for v in node]
        return node

    tpl["Resources"] = replace(tpl["Resources"])
    model = tpl["Resources"]["Model"]["Properties"]
    (model["PrimaryContainer"],) = model.pop("Containers")
    return tpl, dropped
