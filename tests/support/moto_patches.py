"""Small fixes for moto gaps the deploy tests meet (each named in the test that uses it)."""

from __future__ import annotations

import copy
from typing import Any

import pytest


@pytest.fixture
def moto_change_sets_with_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto executes a change set without adopting its template or computing the stack's
    Outputs (create_stack does both); real CloudFormation does."""
    from moto.cloudformation.models import ChangeSet

    original = ChangeSet.apply

    def apply(self) -> None:  # type: ignore[no-untyped-def]
        original(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    monkeypatch.setattr(ChangeSet, "apply", apply)


MOTO_UNSUPPORTED = {
    "AWS::CloudWatch::Alarm",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
}


def moto_compatible(tpl: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Copy of ``tpl`` that moto's CloudFormation can create (see the module docstring)."""
    from moto.cloudformation.parsing import get_model_map

    supported = get_model_map()
    tpl = copy.deepcopy(tpl)
    dropped = {n for n, r in tpl["Resources"].items() if r["Type"] not in supported}
    assert {tpl["Resources"][n]["Type"] for n in dropped} <= MOTO_UNSUPPORTED
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
