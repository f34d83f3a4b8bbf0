"""CloudFormation templates read the way the service reads them, for the sandbox and the tests:
a YAML loader for the short intrinsic tags (``!Ref``, ``!Sub``, ``!GetAtt``, …) and a small
evaluator of the intrinsic functions the repository's templates use, for one set of parameter
values. Resource references resolve to realistic placeholder names and ARNs; anything it does not
implement raises, so it cannot silently hide a change."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ACCOUNT = "123456789012"
REGION = "eu-west-1"


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short-form tags into their long JSON form."""


def _intrinsic(tag: str):
    key = "Ref" if tag == "Ref" else "Condition" if tag == "Condition" else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in [
    "Ref",
    "Sub",
    "GetAtt",
    "Join",
    "Select",
    "Split",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Condition",
    "FindInMap",
    "Base64",
    "ImportValue",
    "GetAZs",
    "Cidr",
    "Transform",
    "Length",
    "ToJsonString",
]:
    CfnLoader.add_constructor(f"!{_tag}", _intrinsic(_tag))


def load_template(path: Path) -> dict[str, Any]:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=CfnLoader)


class Renderer:
    """Evaluates the intrinsic functions this template uses, for one set of parameter values.

    Resource references resolve to realistic placeholder names/ARNs, so rendered policies can be
    parsed and compared. Anything unknown raises, so the evaluator cannot silently hide a change.
    """

    def __init__(
        self,
        tpl: dict[str, Any],
        params: dict[str, str],
        *,
        account: str = ACCOUNT,
        region: str = REGION,
    ) -> None:
        self.tpl = tpl
        self.account, self.region = account, region
        self.params: dict[str, Any] = {}
        for name, spec in tpl["Parameters"].items():
            raw = params.get(name, spec.get("Default"))
            if raw is None:
                raise ValueError(f"parameter {name} has no default and no test value")
            raw = str(raw)
            self.params[name] = raw.split(",") if spec["Type"] == "CommaDelimitedList" else raw
        unknown = set(params) - set(tpl["Parameters"])
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        self.pseudo = {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::StackName": "smbridge-automation",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        self.conditions: dict[str, bool] = {}
        for name in tpl.get("Conditions", {}):
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.eval(self.tpl["Conditions"][name]))
        return self.conditions[name]

    def ref(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        resource = self.tpl["Resources"][name]
        rtype = resource["Type"]
        if rtype == "AWS::IAM::OIDCProvider":
            url = self.eval(resource["Properties"]["Url"])
            return f"arn:aws:iam::{self.account}:oidc-provider/{url.removeprefix('https://')}"
        explicit_name = {"AWS::S3::Bucket": "BucketName", "AWS::IAM::Role": "RoleName"}.get(rtype)
        if explicit_name and explicit_name in resource.get("Properties", {}):
            return self.eval(resource["Properties"][explicit_name])
        return f"{name}-physical-id"

    def getatt(self, name: str, attr: str) -> str:
        rtype = self.tpl["Resources"][name]["Type"]
        if (rtype, attr) == ("AWS::S3::Bucket", "Arn"):
            return f"arn:aws:s3:::{self.ref(name)}"
        if (rtype, attr) == ("AWS::KMS::Key", "Arn"):
            return f"arn:aws:kms:{self.region}:{self.account}:key/{name}"
        if (rtype, attr) == ("AWS::IAM::Role", "Arn"):
            return f"arn:aws:iam::{self.account}:role/{self.ref(name)}"
        return f"<{name}.{attr}>"

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                return str(variables[inner])
            if "." in inner and inner.split(".", 1)[0] in self.tpl["Resources"]:
                return self.getatt(*inner.split(".", 1))
            return str(self.ref(inner))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def eval(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.eval(x) for x in node) if v is not None]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                return self.getatt(*arg)
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                return self.sub(arg[0], {k: self.eval(v) for k, v in arg[1].items()})
            if key == "Fn::Join":
                return arg[0].join(self.eval(arg[1]))
            if key == "Fn::Select":
                return self.eval(arg[1])[int(self.eval(arg[0]))]
            if key == "Fn::Split":
                return self.eval(arg[1]).split(arg[0])
            if key == "Fn::If":
                return self.eval(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return self.eval(arg[0]) == self.eval(arg[1])
            if key == "Fn::Not":
                return not self.eval(arg[0])
            if key == "Fn::And":
                return all(self.eval(x) for x in arg)
            if key == "Fn::Or":
                return any(self.eval(x) for x in arg)
            if key.startswith("Fn::"):
                raise ValueError(f"evaluator does not implement {key}")
        out = {k: self.eval(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not None}

    def resource_exists(self, name: str) -> bool:
        cond = self.tpl["Resources"][name].get("Condition")
        return cond is None or self.condition(cond)

    def properties(self, name: str) -> dict[str, Any]:
        return self.eval(self.tpl["Resources"][name].get("Properties", {}))
