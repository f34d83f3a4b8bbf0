"""Model-deploy CloudFormation: model-deploy/templates/*.yaml, infra/deploy-role.yaml and
infra/model-package-group-policy.yaml.

Layers, from cheapest to most realistic:

1. cfn-lint (its Python API) on every template: no findings. The suppressions (cfn-lint and
   checkov, each in a resource's Metadata with its reason) are listed here, so a new one fails
   until it is documented. checkov itself runs in CI (``scripts/checkov.sh``), not here.
2. Structure, on the templates rendered for several parameter sets with the intrinsic-function
   evaluator of ``test_infra_templates.py`` (through ``CheckedRenderer``, which fails when a
   resource is read under parameters that do not create it): the exact parameter lists and
   defaults `smbridge deploy` relies on, the outputs, the model (model package, execution role,
   network isolation), the tags of every taggable resource, blue/green guardrails and rollback
   alarms per DeploymentStrategy, autoscaling only when MaxCapacity != MinCapacity, data
   capture only when enabled, the async topics, the templates' Rules; the deploy role's trust
   (the automation account only), PassRole (the execution role only, to SageMaker only), name
   scoping and the only "*" resources; the model package group policy. The parameters
   ``bridge.deploy.operations.render_stage`` produces from the stage configs are checked against the
   templates' parameter constraints (a contract between the two).
3. moto's CloudFormation creates the real-time stack (AllAtOnce, and Canary with data capture
   and autoscaling) and updates it to a new model version; the SageMaker model, endpoint config
   and endpoint then exist in moto. What moto cannot check: it ignores ModelName,
   EndpointConfigName and EndpointName (it generates "<stack>-<logical id>-<random>" names), it
   has no CloudFormation model for AWS::CloudWatch::Alarm and AWS::ApplicationAutoScaling::*
   (the test drops them and writes the alarm names where the endpoint references them), its
   AWS::SageMaker::Model reads only PrimaryContainer (the test moves the template's single
   Containers entry there), it ignores EnableNetworkIsolation and DeploymentConfig, and it has
   no UpdateEndpoint: an update deletes and recreates the endpoint, so nothing about blue/green
   traffic shifting, rollback alarms, cross-account model packages or IAM is exercised there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.moto_patches import moto_compatible
from tests.unit.test_infra_templates import ACCOUNT, REGION, as_list, load_template, statements
from tests.unit.test_trigger_infra import CheckedRenderer

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = REPO_ROOT / "model-deploy" / "templates"
CONFIG_DIR = REPO_ROOT / "model-deploy" / "config"
REALTIME = TEMPLATES_DIR / "realtime.yaml"
SERVERLESS = TEMPLATES_DIR / "serverless.yaml"
ASYNC = TEMPLATES_DIR / "async.yaml"
BATCH = TEMPLATES_DIR / "batch-model.yaml"
DEPLOY_ROLE = REPO_ROOT / "infra" / "deploy-role.yaml"
GROUP_POLICY = REPO_ROOT / "infra" / "model-package-group-policy.yaml"
MODEL_DEPLOY_TEMPLATES = [REALTIME, SERVERLESS, ASYNC, BATCH]
ALL_TEMPLATES = [*MODEL_DEPLOY_TEMPLATES, DEPLOY_ROLE, GROUP_POLICY]

REGISTRY_ACCOUNT = "111111111111"
AUTOMATION_ACCOUNT = "111111111111"
GROUP = "churn-xgb"
PACKAGE_ARN = f"arn:aws:sagemaker:{REGION}:{REGISTRY_ACCOUNT}:model-package/{GROUP}/3"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/smbridge-sagemaker-endpoint"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
ENDPOINT = "smbridge-demo-churn-xgb-staging"

# --------------------------------------------------------------------------- the contract

COMMON = [
    "ModelPackageArn",
    "ModelName",
    "ExecutionRoleArn",
    "NamePrefix",
    "StageName",
    "KmsKeyArn",
]
ENDPOINT_COMMON = ["EndpointName", "EndpointConfigName"]
PARAMETERS = {
    "realtime.yaml": [
        *COMMON,
        *ENDPOINT_COMMON,
        "InstanceType",
        "InitialInstanceCount",
        "MinCapacity",
        "MaxCapacity",
        "TargetInvocationsPerInstance",
        "DataCaptureEnabled",
        "DataCaptureS3Uri",
        "DataCaptureSamplingPercent",
        "DeploymentStrategy",
        "CanarySizePercent",
        "LinearStepPercent",
        "WaitIntervalSeconds",
        "TerminationWaitSeconds",
        "MaximumExecutionTimeoutSeconds",
        "RollbackAlarmNames",
    ],
    "serverless.yaml": [
        *COMMON,
        *ENDPOINT_COMMON,
        "MemorySizeInMB",
        "MaxConcurrency",
        "ProvisionedConcurrency",
    ],
    "async.yaml": [
        *COMMON,
        *ENDPOINT_COMMON,
        "InstanceType",
        "InitialInstanceCount",
        "MinCapacity",
        "MaxCapacity",
        "OutputS3Uri",
        "FailureS3Uri",
        "MaxConcurrentInvocationsPerInstance",
        "SuccessTopicArn",
        "ErrorTopicArn",
    ],
    "batch-model.yaml": COMMON,
}
DEFAULTS = {
    "realtime.yaml": {
        "KmsKeyArn": "",
        "EndpointConfigName": "",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        "MinCapacity": 1,
        "MaxCapacity": 1,
        "TargetInvocationsPerInstance": 100,
        "DataCaptureEnabled": "false",
        "DataCaptureS3Uri": "",
        "DataCaptureSamplingPercent": 100,
        "DeploymentStrategy": "AllAtOnce",
        "CanarySizePercent": 10,
        "LinearStepPercent": 25,
        "WaitIntervalSeconds": 300,
        "TerminationWaitSeconds": 120,
        "MaximumExecutionTimeoutSeconds": 3600,
        "RollbackAlarmNames": "",
    },
    "serverless.yaml": {
        "KmsKeyArn": "",
        "EndpointConfigName": "",
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
        "ProvisionedConcurrency": 0,
    },
    "async.yaml": {
        "KmsKeyArn": "",
        "EndpointConfigName": "",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        "MinCapacity": 1,
        "MaxCapacity": 1,
        "FailureS3Uri": "",
        "MaxConcurrentInvocationsPerInstance": 4,
        "SuccessTopicArn": "",
        "ErrorTopicArn": "",
    },
    "batch-model.yaml": {"KmsKeyArn": ""},
}
NUMBERS = {
    "InitialInstanceCount",
    "MinCapacity",
    "MaxCapacity",
    "TargetInvocationsPerInstance",
    "DataCaptureSamplingPercent",
    "CanarySizePercent",
    "LinearStepPercent",
    "WaitIntervalSeconds",
    "TerminationWaitSeconds",
    "MaximumExecutionTimeoutSeconds",
    "MemorySizeInMB",
    "MaxConcurrency",
    "ProvisionedConcurrency",
    "MaxConcurrentInvocationsPerInstance",
}
OUTPUTS = {
    "realtime.yaml": {"ModelName", "EndpointName", "EndpointArn", "EndpointConfigName"},
    "serverless.yaml": {"ModelName", "EndpointName", "EndpointArn", "EndpointConfigName"},
    "async.yaml": {
        "ModelName",
        "EndpointName",
        "EndpointArn",
        "EndpointConfigName",
        "SuccessTopicArn",
        "ErrorTopicArn",
    },
    "batch-model.yaml": {"ModelName"},
}

BASE = {
    "ModelPackageArn": PACKAGE_ARN,
    "ModelName": "smbridge-demo-churn-xgb-v3-staging-0a1b2c3d",
    "ExecutionRoleArn": EXECUTION_ROLE,
    "NamePrefix": "smbridge-demo",
    "StageName": "staging",
}
ENDPOINT_BASE = {
    **BASE,
    "EndpointName": ENDPOINT,
    "EndpointConfigName": "smbridge-demo-churn-xgb-v3-staging-1a2b3c4d",
}
ASYNC_BASE = {**ENDPOINT_BASE, "OutputS3Uri": "s3://smbridge-async-222222222222/results/"}
CANARY = {
    **ENDPOINT_BASE,
    "DeploymentStrategy": "Canary",
    "CanarySizePercent": "10",
    "WaitIntervalSeconds": "600",
    "TerminationWaitSeconds": "300",
    "MaximumExecutionTimeoutSeconds": "3600",
}


# --------------------------------------------------------------------------- helpers


class DeployRenderer(CheckedRenderer):
    """``CheckedRenderer`` plus Fn::FindInMap and Fn::Contains (rules); alarms and topics
    resolve to their real names/ARNs, as CloudFormation's Ref does."""

    def eval(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Fn::FindInMap":
                mapping, first, second = (self.eval(a) for a in arg)
                return self.tpl["Mappings"][mapping][first][second]
            if key == "Fn::Contains":
                return self.eval(arg[1]) in self.eval(arg[0])
        return super().eval(node)

    def ref(self, name: str) -> Any:
        resource = self.tpl["Resources"].get(name)
        if resource and resource["Type"] == "AWS::CloudWatch::Alarm":
            self._check(name)
            return self.eval(resource["Properties"]["AlarmName"])
        if resource and resource["Type"] == "AWS::SNS::Topic":
            self._check(name)
            topic = self.eval(resource["Properties"]["TopicName"])
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}"
        return super().ref(name)


def render(path: Path, params: dict[str, str]) -> DeployRenderer:
    return DeployRenderer(load_template(path), params)


def created(r: DeployRenderer) -> set[str]:
    return {name for name in r.tpl["Resources"] if r.resource_exists(name)}


def failed_rules(path: Path, params: dict[str, str]) -> set[str]:
    r = render(path, params)
    failed = set()
    for name, rule in r.tpl.get("Rules", {}).items():
        if "RuleCondition" in rule and not r.eval(rule["RuleCondition"]):
            continue
        if not all(r.eval(a["Assert"]) for a in rule["Assertions"]):
            failed.add(name)
    return failed


def fits(spec: dict[str, Any], value: str) -> bool:
    """Whether CloudFormation accepts ``value`` for a parameter ``spec``."""
    if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
        return False
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return False
    if spec["Type"] == "Number":
        number = float(value)
        if "MinValue" in spec and number < spec["MinValue"]:
            return False
        if "MaxValue" in spec and number > spec["MaxValue"]:
            return False
    return True


def resources_everywhere(r: DeployRenderer) -> None:
    """Render every created resource and output (CheckedRenderer fails on a dangling read)."""
    for name in created(r):
        r.properties(name)
    for output in r.tpl.get("Outputs", {}).values():
        r.eval(output["Value"])


def policy_statements(r: DeployRenderer) -> dict[str, list[dict[str, Any]]]:
    """Statements per principal role of the deploy-role template, as rendered."""
    by_role: dict[str, list[dict[str, Any]]] = {}
    for name in created(r):
        res = r.tpl["Resources"][name]
        props = r.properties(name)
        if res["Type"] == "AWS::IAM::Policy":
            for role_ref in res["Properties"]["Roles"]:
                role = r.eval(role_ref)
                by_role.setdefault(role, []).extend(statements(props["PolicyDocument"]))
        elif res["Type"] == "AWS::IAM::Role":
            by_role.setdefault(props["RoleName"], [])
            for policy in props.get("Policies", []):
                by_role[props["RoleName"]].extend(statements(policy["PolicyDocument"]))
    return by_role


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, Any]]:
    return {p.name: load_template(p) for p in ALL_TEMPLATES}


# --------------------------------------------------------------------------- 1. cfn-lint


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_reports_nothing(path: Path) -> None:
    from cfnlint.api import lint_file

    matches = lint_file(path)
    assert not matches, "\n".join(str(m) for m in matches)


def test_only_documented_suppressions(templates: dict[str, dict[str, Any]]) -> None:
    """cfn-lint: W1031 on the real-time EndpointConfig (DataCaptureS3Uri's default "" inside the
    CaptureData branch; a rule rejects it there). checkov: CKV_AWS_370 on the serverless model
    (serverless endpoints do not support network isolation)."""
    lint, checkov = {}, {}
    for file, tpl in templates.items():
        assert "cfn-lint" not in tpl.get("Metadata", {}), file
        for name, res in tpl["Resources"].items():
            meta = res.get("Metadata", {})
            if "cfn-lint" in meta:
                lint[f"{file}:{name}"] = meta["cfn-lint"]["config"]["ignore_checks"]
            for skip in meta.get("checkov", {}).get("skip", []):
                assert len(skip.get("comment", "")) > 40, (file, name, skip)
                checkov.setdefault(f"{file}:{name}", []).append(skip["id"])
    assert lint == {"realtime.yaml:EndpointConfig": ["W1031"]}
    assert checkov == {"serverless.yaml:Model": ["CKV_AWS_370"]}


# --------------------------------------------------------------------------- 2. model-deploy


@pytest.mark.parametrize("path", MODEL_DEPLOY_TEMPLATES, ids=lambda p: p.name)
def test_parameters_are_exactly_the_contract(
    templates: dict[str, dict[str, Any]], path: Path
) -> None:
    params = templates[path.name]["Parameters"]
    assert list(params) == PARAMETERS[path.name]
    defaults = {name: spec["Default"] for name, spec in params.items() if "Default" in spec}
    assert defaults == DEFAULTS[path.name]
    for name, spec in params.items():
        expected_type = (
            "CommaDelimitedList"
            if name == "RollbackAlarmNames"
            else "Number"
            if name in NUMBERS
            else "String"
        )
        assert spec["Type"] == expected_type, name
        if "Default" in spec:
            assert fits(spec, str(spec["Default"])), name
    if "MemorySizeInMB" in params:
        assert params["MemorySizeInMB"]["AllowedValues"] == [1024, 2048, 3072, 4096, 5120, 6144]


@pytest.mark.parametrize("path", MODEL_DEPLOY_TEMPLATES, ids=lambda p: p.name)
def test_outputs(templates: dict[str, dict[str, Any]], path: Path) -> None:
    outputs = templates[path.name]["Outputs"]
    assert set(outputs) == OUTPUTS[path.name]
    assert outputs["ModelName"]["Value"] == {"Fn::GetAtt": ["Model", "ModelName"]}
    if "EndpointArn" in outputs:
        assert outputs["EndpointArn"]["Value"] == {"Ref": "Endpoint"}  # Ref = the ARN
        assert outputs["EndpointName"]["Value"] == {"Fn::GetAtt": ["Endpoint", "EndpointName"]}
        assert outputs["EndpointConfigName"]["Value"] == {
            "Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]
        }


@pytest.mark.parametrize("path", MODEL_DEPLOY_TEMPLATES, ids=lambda p: p.name)
def test_model_from_the_model_package(path: Path) -> None:
    params = ASYNC_BASE if path == ASYNC else ENDPOINT_BASE if path != BATCH else BASE
    r = render(path, params)
    model = r.properties("Model")
    assert model["Containers"] == [{"ModelPackageName": PACKAGE_ARN}]
    assert model["ExecutionRoleArn"] == EXECUTION_ROLE
    assert model["ModelName"] == params["ModelName"]
    # Serverless Inference does not support network isolation; every other template isolates.
    assert model["EnableNetworkIsolation"] is (path != SERVERLESS)
    if path == BATCH:
        assert created(r) == {"Model"}


def _taggable(resource_type: str) -> bool:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, resource_type).schema
    return "Tags" in schema["properties"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (REALTIME, {**CANARY, "MinCapacity": "2", "MaxCapacity": "4"}),
        (SERVERLESS, ENDPOINT_BASE),
        (ASYNC, {**ASYNC_BASE, "MinCapacity": "0", "MaxCapacity": "2"}),
        (BATCH, BASE),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else "",
)
def test_every_taggable_resource_is_tagged(path: Path, params: dict[str, str]) -> None:
    r = render(path, params)
    for name in sorted(created(r)):
        rtype = r.tpl["Resources"][name]["Type"]
        if not _taggable(rtype):
            continue
        tags = {t["Key"]: t["Value"] for t in r.properties(name).get("Tags", [])}
        assert tags == {
            "smbridge:stage": "staging",
            "smbridge:model-package-arn": PACKAGE_ARN,
            "smbridge:name-prefix": "smbridge-demo",
        }, name
        assert all(len(v) <= 256 for v in tags.values())


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (REALTIME, ENDPOINT_BASE),
        (REALTIME, {**CANARY, "MinCapacity": "2", "MaxCapacity": "4", "KmsKeyArn": KMS_KEY}),
        (REALTIME, {**ENDPOINT_BASE, "EndpointConfigName": "", "RollbackAlarmNames": "a,b"}),
        (SERVERLESS, {**ENDPOINT_BASE, "ProvisionedConcurrency": "2"}),
        (ASYNC, ASYNC_BASE),
        (ASYNC, {**ASYNC_BASE, "MinCapacity": "0", "MaxCapacity": "3", "KmsKeyArn": KMS_KEY}),
        (
            ASYNC,
            {
                **ASYNC_BASE,
                "SuccessTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:mine-ok",
                "ErrorTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:mine-failed",
            },
        ),
        (BATCH, BASE),
    ],
)
def test_every_reference_exists(path: Path, params: dict[str, str]) -> None:
    resources_everywhere(render(path, params))


def test_endpoint_config_name_empty_means_generated() -> None:
    r = render(REALTIME, {**ENDPOINT_BASE, "EndpointConfigName": ""})
    assert "EndpointConfigName" not in r.properties("EndpointConfig")
    named = render(REALTIME, ENDPOINT_BASE).properties("EndpointConfig")
    assert named["EndpointConfigName"] == ENDPOINT_BASE["EndpointConfigName"]


def test_realtime_endpoint_config() -> None:
    r = render(REALTIME, {**ENDPOINT_BASE, "InstanceType": "ml.m5.xlarge"})
    config = r.properties("EndpointConfig")
    assert config["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",  # blue/green needs the same variant name every time
            "ModelName": "<Model.ModelName>",
            "InstanceType": "ml.m5.xlarge",
            "InitialInstanceCount": "1",
            "InitialVariantWeight": 1,
        }
    ]
    assert "KmsKeyId" not in config
    assert (
        render(REALTIME, {**ENDPOINT_BASE, "KmsKeyArn": KMS_KEY}).properties("EndpointConfig")[
            "KmsKeyId"
        ]
        == KMS_KEY
    )
    endpoint = r.properties("Endpoint")
    assert endpoint["EndpointName"] == ENDPOINT
    assert endpoint["EndpointConfigName"] == "<EndpointConfig.EndpointConfigName>"


def test_data_capture_only_when_enabled() -> None:
    off = render(REALTIME, ENDPOINT_BASE).properties("EndpointConfig")
    assert "DataCaptureConfig" not in off
    uri = "s3://smbridge-data-capture-333333333333-eu-west-1/endpoint/"
    on = render(
        REALTIME,
        {
            **ENDPOINT_BASE,
            "DataCaptureEnabled": "true",
            "DataCaptureS3Uri": uri,
            "DataCaptureSamplingPercent": "20",
            "KmsKeyArn": KMS_KEY,
        },
    ).properties("EndpointConfig")
    assert on["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": "20",
        "DestinationS3Uri": uri,
        "KmsKeyId": KMS_KEY,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
    }
    assert failed_rules(REALTIME, {**ENDPOINT_BASE, "DataCaptureEnabled": "true"}) == {
        "DataCaptureHasDestination"
    }
    assert failed_rules(REALTIME, ENDPOINT_BASE) == set()


def test_rollback_alarms() -> None:
    r = render(REALTIME, ENDPOINT_BASE)
    latency = r.properties("LatencyAlarm")
    assert latency["AlarmName"] == f"{ENDPOINT}-latency"
    assert (latency["Namespace"], latency["MetricName"]) == ("AWS/SageMaker", "ModelLatency")
    assert latency["ExtendedStatistic"] == "p99"
    assert latency["Dimensions"] == [
        {"Name": "EndpointName", "Value": ENDPOINT},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    assert latency["ComparisonOperator"] == "GreaterThanThreshold"
    errors = r.properties("ErrorsAlarm")
    assert errors["AlarmName"] == f"{ENDPOINT}-5xx"
    assert (errors["MetricName"], errors["Statistic"]) == ("Invocation5XXErrors", "Sum")
    assert errors["Dimensions"] == latency["Dimensions"]
    for alarm in (latency, errors):
        assert alarm["TreatMissingData"] == "notBreaching"
        assert "AlarmActions" not in alarm


def _deployment(params: dict[str, str]) -> dict[str, Any] | None:
    return render(REALTIME, params).properties("Endpoint").get("DeploymentConfig")


def _alarm_names(deployment: dict[str, Any]) -> list[str]:
    return [a["AlarmName"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]]


def test_all_at_once_has_no_deployment_config() -> None:
    assert _deployment(ENDPOINT_BASE) is None


def test_canary_is_blue_green_with_rollback_on_the_stacks_alarms() -> None:
    deployment = _deployment(CANARY)
    assert deployment == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": "10"},
                "WaitIntervalInSeconds": "600",
            },
            "TerminationWaitInSeconds": "300",
            "MaximumExecutionTimeoutInSeconds": "3600",
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": f"{ENDPOINT}-latency"}, {"AlarmName": f"{ENDPOINT}-5xx"}]
        },
    }


def test_linear_steps() -> None:
    deployment = _deployment({**ENDPOINT_BASE, "DeploymentStrategy": "Linear"})
    assert deployment is not None
    routing = deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {
        "Type": "LINEAR",
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": "25"},
        "WaitIntervalInSeconds": "300",
    }
    assert _alarm_names(deployment) == [f"{ENDPOINT}-latency", f"{ENDPOINT}-5xx"]


def test_rollback_alarm_names_are_added() -> None:
    canary = _deployment({**CANARY, "RollbackAlarmNames": "team-errors,team-drift"})
    assert canary is not None
    assert _alarm_names(canary) == [
        f"{ENDPOINT}-latency",
        f"{ENDPOINT}-5xx",
        "team-errors",
        "team-drift",
    ]
    # AllAtOnce with alarms: all-at-once shift, baking period, rollback on those alarms only.
    all_at_once = _deployment({**ENDPOINT_BASE, "RollbackAlarmNames": "team-errors"})
    assert all_at_once is not None
    assert all_at_once["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "ALL_AT_ONCE",
        "WaitIntervalInSeconds": "300",
    }
    assert _alarm_names(all_at_once) == ["team-errors"]


def test_at_most_ten_rollback_alarms() -> None:
    names = [f"alarm-{i}" for i in range(9)]
    deployment = _deployment({**CANARY, "RollbackAlarmNames": ",".join(names)})
    assert deployment is not None
    alarms = _alarm_names(deployment)
    assert len(alarms) == 10  # the AutoRollbackConfiguration maximum
    assert alarms[2:] == names[:8]  # the 9th name is ignored (documented)


def test_autoscaling_only_when_max_differs_from_min() -> None:
    scaling = {"ScalableTarget", "ScalingPolicy"}
    assert not scaling & created(render(REALTIME, ENDPOINT_BASE))
    assert not scaling & created(
        render(REALTIME, {**ENDPOINT_BASE, "MinCapacity": "3", "MaxCapacity": "3"})
    )
    r = render(REALTIME, {**ENDPOINT_BASE, "MinCapacity": "2", "MaxCapacity": "4"})
    assert scaling <= created(r)
    target = r.properties("ScalableTarget")
    assert r.tpl["Resources"]["ScalableTarget"]["DependsOn"] == "Endpoint"
    assert {k: v for k, v in target.items() if k != "Tags"} == {
        "ServiceNamespace": "sagemaker",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "ResourceId": f"endpoint/{ENDPOINT}/variant/AllTraffic",
        "MinCapacity": "2",
        "MaxCapacity": "4",
    }
    policy = r.properties("ScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == "ScalableTarget-physical-id"
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == "100"


def test_serverless_endpoint() -> None:
    r = render(SERVERLESS, ENDPOINT_BASE)
    (variant,) = r.properties("EndpointConfig")["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": "2048", "MaxConcurrency": "5"}
    assert "InstanceType" not in variant
    assert "KmsKeyId" not in r.properties("EndpointConfig")
    provisioned = render(SERVERLESS, {**ENDPOINT_BASE, "ProvisionedConcurrency": "2"})
    (variant,) = provisioned.properties("EndpointConfig")["ProductionVariants"]
    assert variant["ServerlessConfig"]["ProvisionedConcurrency"] == "2"
    assert created(r) == {"Model", "EndpointConfig", "Endpoint"}
    # Serverless endpoints take no KMS key: rejected, not silently ignored.
    assert failed_rules(SERVERLESS, {**ENDPOINT_BASE, "KmsKeyArn": KMS_KEY}) == {
        "NoKmsKeyForServerless"
    }
    assert failed_rules(SERVERLESS, ENDPOINT_BASE) == set()


def test_async_endpoint_and_topics() -> None:
    r = render(ASYNC, {**ASYNC_BASE, "FailureS3Uri": "s3://smbridge-async-222222222222/failed/"})
    assert {"SuccessTopic", "ErrorTopic"} <= created(r)
    for logical, suffix in (("SuccessTopic", "success"), ("ErrorTopic", "error")):
        topic = r.properties(logical)
        assert topic["TopicName"] == f"{ENDPOINT}-{suffix}"
        assert topic["KmsMasterKeyId"] == "alias/aws/sns"
    config = r.properties("EndpointConfig")["AsyncInferenceConfig"]
    assert config == {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": "4"},
        "OutputConfig": {
            "S3OutputPath": ASYNC_BASE["OutputS3Uri"],
            "S3FailurePath": "s3://smbridge-async-222222222222/failed/",
            "NotificationConfig": {
                "SuccessTopic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{ENDPOINT}-success",
                "ErrorTopic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{ENDPOINT}-error",
            },
        },
    }
    with_key = render(ASYNC, {**ASYNC_BASE, "KmsKeyArn": KMS_KEY})
    assert with_key.properties("SuccessTopic")["KmsMasterKeyId"] == KMS_KEY
    assert (
        with_key.properties("EndpointConfig")["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"]
        == KMS_KEY
    )
    given = {
        "SuccessTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:mine-ok",
        "ErrorTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:mine-failed",
    }
    own = render(ASYNC, {**ASYNC_BASE, **given})
    assert not {"SuccessTopic", "ErrorTopic"} & created(own)
    notify = own.properties("EndpointConfig")["AsyncInferenceConfig"]["OutputConfig"]
    assert notify["NotificationConfig"] == {
        "SuccessTopic": given["SuccessTopicArn"],
        "ErrorTopic": given["ErrorTopicArn"],
    }


def test_async_autoscaling_and_scale_from_zero() -> None:
    scaling = {"ScalableTarget", "BacklogScalingPolicy"}
    from_zero = {"ScaleFromZeroPolicy", "BacklogWithoutCapacityAlarm"}
    assert not (scaling | from_zero) & created(render(ASYNC, ASYNC_BASE))
    r = render(ASYNC, {**ASYNC_BASE, "MinCapacity": "1", "MaxCapacity": "3"})
    assert scaling <= created(r)
    assert not from_zero & created(r)
    tracking = r.properties("BacklogScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"] == {
        "Namespace": "AWS/SageMaker",
        "MetricName": "ApproximateBacklogSizePerInstance",
        "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}],
        "Statistic": "Average",
    }
    zero = render(ASYNC, {**ASYNC_BASE, "MinCapacity": "0", "MaxCapacity": "3"})
    assert scaling | from_zero <= created(zero)
    assert zero.properties("ScalableTarget")["MinCapacity"] == "0"
    alarm = zero.properties("BacklogWithoutCapacityAlarm")
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["AlarmName"].startswith(ENDPOINT)
    assert alarm["AlarmActions"] == ["<ScaleFromZeroPolicy.Arn>"]
    step = zero.properties("ScaleFromZeroPolicy")["StepScalingPolicyConfiguration"]
    assert step["AdjustmentType"] == "ChangeInCapacity"
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    # An asynchronous variant still starts with at least one instance.
    assert zero.tpl["Parameters"]["InitialInstanceCount"]["MinValue"] == 1


# ------------------------------------------------------- the stage configs (render_stage)


def _stage_configs() -> dict[str, Any]:
    from bridge.settings.stage import StageConfig, load_stage_config

    staging = load_stage_config(CONFIG_DIR / "staging.json")
    production = load_stage_config(CONFIG_DIR / "production.json")
    base = staging.model_dump()
    variants = {
        "serverless": {
            "type": "serverless",
            "memory_size_mb": 2048,
            "max_concurrency": 5,
            "provisioned_concurrency": 1,
        },
        "async": {
            "type": "async",
            "instance_type": "ml.m5.large",
            "instance_count": 1,
            "autoscaling": {"min_capacity": 0, "max_capacity": 2},
            "output_s3_uri": "s3://smbridge-async-222222222222/results/",
            "failure_s3_uri": "s3://smbridge-async-222222222222/failed/",
            "max_concurrent_invocations_per_instance": 4,
        },
        "batch": {
            "type": "batch",
            "instance_type": "ml.m5.large",
            "instance_count": 1,
            "input_s3_uri": "s3://smbridge-batch-222222222222/input/",
            "output_s3_uri": "s3://smbridge-batch-222222222222/output/",
            "content_type": "text/csv",
            "split_type": "Line",
        },
    }
    configs = {"staging": staging, "production": production}
    for name, inference in variants.items():
        configs[name] = StageConfig.model_validate({**base, "inference": inference})
    return configs


def test_stage_configs_are_the_documented_ones() -> None:
    configs = _stage_configs()
    staging, production = configs["staging"], configs["production"]
    assert (staging.account_id, production.account_id) == ("222222222222", "333333333333")
    assert staging.deployment.strategy == "AllAtOnce"
    assert production.deployment.strategy == "Canary"
    assert production.inference.autoscaling.min_capacity == 2  # type: ignore[union-attr]
    assert production.inference.autoscaling.max_capacity == 4  # type: ignore[union-attr]
    assert production.data_capture.enabled and production.data_capture.sampling_percent == 20


@pytest.mark.parametrize("stage", ["staging", "production", "serverless", "async", "batch"])
def test_render_stage_parameters_fit_the_templates(stage: str) -> None:
    """``smbridge deploy`` passes only parameters the template declares, every parameter
    without a default, and values the parameter constraints and the Rules accept."""
    from bridge.aws.registry import ModelPackageArn
    from bridge.deploy.operations import render_stage

    plan = render_stage(_stage_configs()[stage], ModelPackageArn.parse(PACKAGE_ARN))
    path = TEMPLATES_DIR / plan.template
    specs = load_template(path)["Parameters"]
    assert set(plan.parameters) <= set(specs), set(plan.parameters) - set(specs)
    required = {name for name, spec in specs.items() if "Default" not in spec}
    assert required <= set(plan.parameters), required - set(plan.parameters)
    for name, value in plan.parameters.items():
        assert fits(specs[name], value), (name, value)
        if name.endswith("Name") and name != "StageName" and value:
            assert value.startswith(plan.parameters["NamePrefix"]), (name, value)
    assert failed_rules(path, plan.parameters) == set()
    resources_everywhere(render(path, plan.parameters))


# --------------------------------------------------------------------------- 2. deploy role

DEPLOY_BASE = {
    "AutomationAccountId": AUTOMATION_ACCOUNT,
    "RegistryAccountId": REGISTRY_ACCOUNT,
    "ModelPackageGroupName": GROUP,
    "ArtifactsBucketName": f"smbridge-artifacts-{REGISTRY_ACCOUNT}-{REGION}",
}
ARTIFACTS_KEY = f"arn:aws:kms:{REGION}:{REGISTRY_ACCOUNT}:key/11111111-2222-3333-4444-555555555555"
DEPLOY_ALL_OPTIONS = {
    **DEPLOY_BASE,
    "TrustedPrincipalArns": f"arn:aws:iam::{AUTOMATION_ACCOUNT}:role/smbridge-ci",
    "ExternalId": "smbridge-deploy-staging",
    "ArtifactsKmsKeyArn": ARTIFACTS_KEY,
    "StageKmsKeyArn": KMS_KEY,
    "DataCaptureBucketName": "smbridge-data-capture-123456789012-eu-west-1",
    "InferenceBucketNames": "smbridge-async-123456789012,smbridge-batch-123456789012",
}
ORG_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PRODUCTION_SUBJECT = "sc://contoso/mlops/smbridge-production"
AUDIENCE = "api://AzureADTokenExchange"
DEPLOY_OIDC = {
    "TrustMode": "AzureDevOpsOidc",
    "RegistryAccountId": REGISTRY_ACCOUNT,
    "ModelPackageGroupName": GROUP,
    "ArtifactsBucketName": f"smbridge-artifacts-{REGISTRY_ACCOUNT}-{REGION}",
    "AzureDevOpsOrganizationId": ORG_ID,
    "AllowedSubjects": PRODUCTION_SUBJECT,
}
EXISTING_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/vstoken.dev.azure.com/{ORG_ID}"
DEPLOY_SCENARIOS = {
    "defaults": DEPLOY_BASE,
    "all-options": DEPLOY_ALL_OPTIONS,
    "oidc": DEPLOY_OIDC,
    "oidc-existing-provider": {**DEPLOY_OIDC, "ExistingOidcProviderArn": EXISTING_PROVIDER},
}
DEPLOY_ROLE_NAME = "smbridge-deploy"
EXEC_ROLE_NAME = "smbridge-sagemaker-endpoint"
CFN_ROLE_NAME = "smbridge-deploy-cloudformation"


def trust_statements(r: DeployRenderer, role: str) -> list[dict[str, Any]]:
    document = r.properties(role)["AssumeRolePolicyDocument"]
    # The OIDC trust is a JSON string (Fn::Sub: its condition keys depend on parameters).
    return statements(json.loads(document) if isinstance(document, str) else document)


def allows(stmts: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether an unconditional Allow statement grants ``action`` on ``resource`` (IAM: actions
    case-insensitive, ``*`` and ``?`` wildcards in both)."""

    def matches(pattern: str, value: str, flags: int = 0) -> bool:
        regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
        return re.fullmatch(regex, value, flags) is not None

    for stmt in stmts:
        if stmt["Effect"] != "Allow" or "Condition" in stmt:
            continue
        if any(matches(a, action, re.IGNORECASE) for a in as_list(stmt["Action"])) and any(
            matches(p, resource) for p in as_list(stmt["Resource"])
        ):
            return True
    return False


def stack_resources_role(r: DeployRenderer) -> str:
    """The role CloudFormation works with: the one holding StackResourcesPolicy."""
    (role,) = r.properties("StackResourcesPolicy")["Roles"]
    return role


@pytest.mark.parametrize("scenario", DEPLOY_SCENARIOS)
def test_deploy_role_references_exist(scenario: str) -> None:
    resources_everywhere(render(DEPLOY_ROLE, DEPLOY_SCENARIOS[scenario]))
    assert failed_rules(DEPLOY_ROLE, DEPLOY_SCENARIOS[scenario]) == set()


@pytest.mark.parametrize("scenario", ["defaults", "all-options"])
def test_deploy_role_is_trusted_by_the_automation_account_only(scenario: str) -> None:
    params = DEPLOY_SCENARIOS[scenario]
    r = render(DEPLOY_ROLE, params)
    (trust,) = trust_statements(r, "DeployRole")
    assert trust["Effect"] == "Allow"
    assert trust["Action"] == "sts:AssumeRole"
    if "TrustedPrincipalArns" in params:
        assert trust["Principal"] == {"AWS": params["TrustedPrincipalArns"].split(",")}
    else:
        assert trust["Principal"] == {"AWS": f"arn:aws:iam::{AUTOMATION_ACCOUNT}:root"}
    expected = {"aws:PrincipalAccount": AUTOMATION_ACCOUNT}
    if params.get("ExternalId"):
        expected["sts:ExternalId"] = params["ExternalId"]
    assert trust["Condition"] == {"StringEquals": expected}
    assert not r.resource_exists("AzureDevOpsOidcProvider")


@pytest.mark.parametrize("scenario", DEPLOY_SCENARIOS)
def test_roles_names_sessions_and_service_trusts(scenario: str) -> None:
    r = render(DEPLOY_ROLE, DEPLOY_SCENARIOS[scenario])
    assert r.properties("DeployRole")["MaxSessionDuration"] == 3600
    assert r.properties("DeployRole")["RoleName"] == DEPLOY_ROLE_NAME
    (sagemaker_trust,) = trust_statements(r, "EndpointExecutionRole")
    assert sagemaker_trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    # The CloudFormation service role always exists, trusted by CloudFormation only.
    assert r.properties("CloudFormationServiceRole")["RoleName"] == CFN_ROLE_NAME
    (cfn_trust,) = trust_statements(r, "CloudFormationServiceRole")
    assert cfn_trust["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    assert cfn_trust["Action"] == "sts:AssumeRole"


@pytest.mark.parametrize("provider", ["created", "existing"])
def test_production_trusts_only_its_service_connection(provider: str) -> None:
    """TrustMode=AzureDevOpsOidc: AssumeRoleWithWebIdentity only, with StringEquals on the
    issuer's `aud` (api://AzureADTokenExchange, what Azure DevOps issues) and `sub` (exactly the
    listed service connections); the automation account is not trusted at all."""
    params = DEPLOY_OIDC if provider == "created" else DEPLOY_SCENARIOS["oidc-existing-provider"]
    r = render(DEPLOY_ROLE, params)
    assert r.resource_exists("AzureDevOpsOidcProvider") is (provider == "created")
    provider_arn = EXISTING_PROVIDER
    if provider == "created":
        url = r.properties("AzureDevOpsOidcProvider")["Url"]
        assert url == f"https://vstoken.dev.azure.com/{ORG_ID}"
        assert r.properties("AzureDevOpsOidcProvider")["ClientIdList"] == [AUDIENCE]
        provider_arn = r.ref("AzureDevOpsOidcProvider")
    (trust,) = trust_statements(r, "DeployRole")
    host = f"vstoken.dev.azure.com/{ORG_ID}"
    assert trust == {
        "Sid": "AzureDevOpsServiceConnectionsOnly",
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {f"{host}:aud": AUDIENCE, f"{host}:sub": [PRODUCTION_SUBJECT]}
        },
    }
    assert AUTOMATION_ACCOUNT not in json.dumps(trust)
    # Entra-issued tokens: the issuer is the condition key prefix.
    entra = "https://login.microsoftonline.com/0a1b2c3d-0000-4000-8000-000000000000/v2.0"
    subject = "/eid1/c/pub/t/AbC/a/DeF/sc/" + ORG_ID + "/33333333-3333-4333-8333-333333333333"
    entra_params = {**DEPLOY_OIDC, "OidcIssuerUrl": entra, "AllowedSubjects": subject}
    r = render(DEPLOY_ROLE, {**entra_params, "AzureDevOpsOrganizationId": ""})
    (trust,) = trust_statements(r, "DeployRole")
    key = entra.removeprefix("https://")
    assert trust["Condition"] == {"StringEquals": {f"{key}:aud": AUDIENCE, f"{key}:sub": [subject]}}
    # An Entra-issued token's aud may differ (docs/credentials.md): the audience is a parameter,
    # used for both the provider's client id and the trust condition.
    other = "fb60f99c-7a34-4190-8149-302f77469936"
    r = render(
        DEPLOY_ROLE, {**entra_params, "AzureDevOpsOrganizationId": "", "OidcAudience": other}
    )
    (trust,) = trust_statements(r, "DeployRole")
    assert trust["Condition"]["StringEquals"][f"{key}:aud"] == other
    assert r.properties("AzureDevOpsOidcProvider")["ClientIdList"] == [other]


def test_trust_parameters_refuse_pipeline_subjects_and_half_configurations() -> None:
    """A pipeline subject p://{org}/{project}/{pipeline} names no branch, stage or folder: any
    job of the pipeline gets it. Only service connection subjects are accepted (CloudFormation
    matches AllowedPattern against each member of a CommaDelimitedList)."""
    spec = load_template(DEPLOY_ROLE)["Parameters"]["AllowedSubjects"]
    for ok in ["", PRODUCTION_SUBJECT, "sc://contoso/ML Platform/smbridge production",
               "/eid1/c/pub/t/AbC/a/DeF/sc/" + ORG_ID + "/" + ORG_ID]:  # fmt: skip
        assert re.fullmatch(spec["AllowedPattern"], ok), ok
    for bad in ["p://contoso/mlops/model-deploy", "*", "sc://contoso/mlops", 'sc://a/b/c"',
                "sc://a/b/c\\", "repo:contoso/x:ref:refs/heads/main"]:  # fmt: skip
        assert not re.fullmatch(spec["AllowedPattern"], bad), bad
    assert failed_rules(DEPLOY_ROLE, {**DEPLOY_OIDC, "AllowedSubjects": ""}) == {
        "OidcTrustIsConfigured"
    }
    no_issuer = {**DEPLOY_OIDC, "AzureDevOpsOrganizationId": ""}
    assert failed_rules(DEPLOY_ROLE, no_issuer) == {"OidcTrustIsConfigured"}
    assert failed_rules(DEPLOY_ROLE, {**DEPLOY_OIDC, "ExternalId": "abc"}) == {
        "OidcTrustIsConfigured"
    }
    no_account = {k: v for k, v in DEPLOY_BASE.items() if k != "AutomationAccountId"}
    assert failed_rules(DEPLOY_ROLE, no_account) == {"AutomationAccountIsConfigured"}


def test_external_id_parameter_is_botocores_pattern() -> None:
    """botocore's STS model, AssumeRole ExternalId: [\\w+=,.@:\\/-]*, length 2-1224 (STS's \\w
    is ASCII); the parameter also takes "" (no external id)."""
    import botocore.session

    meta = (
        botocore.session.get_session()
        .get_service_model("sts")
        .operation_model("AssumeRole")
        .input_shape.members["ExternalId"]
        .metadata
    )
    pattern = load_template(DEPLOY_ROLE)["Parameters"]["ExternalId"]["AllowedPattern"]
    for value in ["ab", "a", "a" * 1224, "a" * 1225, "x+=,.@:/-_y", "a b", "ümlaut", 'q"', "a;b"]:
        service = meta["min"] <= len(value) <= meta["max"] and bool(
            re.fullmatch(meta["pattern"], value, re.ASCII)
        )
        assert bool(re.fullmatch(pattern, value)) is service, value


@pytest.mark.parametrize("scenario", DEPLOY_SCENARIOS)
def test_pass_role_is_restricted(scenario: str) -> None:
    r = render(DEPLOY_ROLE, DEPLOY_SCENARIOS[scenario])
    passes = {
        (role, stmt["Resource"], json.dumps(stmt["Condition"], sort_keys=True))
        for role, stmts in policy_statements(r).items()
        for stmt in stmts
        if "iam:PassRole" in as_list(stmt["Action"])
    }
    for role, stmts in policy_statements(r).items():
        for stmt in stmts:
            actions = as_list(stmt["Action"])
            assert not any(a in ("iam:*", "*") or a.startswith("iam:Pass") for a in actions) or (
                actions == ["iam:PassRole"]
            ), (role, stmt)
    exec_arn = f"arn:aws:iam::{ACCOUNT}:role/{EXEC_ROLE_NAME}"
    cfn_arn = f"arn:aws:iam::{ACCOUNT}:role/{CFN_ROLE_NAME}"
    to_sagemaker = json.dumps({"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
    to_cfn = json.dumps({"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}})
    # The deploy role passes exactly the service role, only to CloudFormation; the service role
    # passes exactly the execution role, only to SageMaker.
    assert passes == {
        (DEPLOY_ROLE_NAME, cfn_arn, to_cfn),
        (CFN_ROLE_NAME, exec_arn, to_sagemaker),
    }


@pytest.mark.parametrize("scenario", DEPLOY_SCENARIOS)
def test_the_service_role_holds_the_stack_resource_permissions(scenario: str) -> None:
    r = render(DEPLOY_ROLE, DEPLOY_SCENARIOS[scenario])
    assert stack_resources_role(r) == CFN_ROLE_NAME
    by_role = policy_statements(r)
    deploy_actions = {a for s in by_role[DEPLOY_ROLE_NAME] for a in as_list(s["Action"])}
    cfn_actions = {a for s in by_role[CFN_ROLE_NAME] for a in as_list(s["Action"])}
    write_actions = {
        "sagemaker:CreateEndpoint",
        "sagemaker:UpdateEndpoint",
        "sagemaker:DeleteEndpoint",
        "sagemaker:CreateModel",
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
        "cloudwatch:PutMetricAlarm",
        "sns:CreateTopic",
    }
    assert not write_actions & deploy_actions
    assert write_actions <= cfn_actions
    # smbridge's own calls stay with the deploy role.
    assert {
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:ContinueUpdateRollback",
        "cloudformation:DeleteStack",
        "sagemaker:DescribeModelPackage",
        "sagemaker:InvokeEndpoint",
        "sagemaker:CreateTransformJob",
    } <= deploy_actions
    assert not {a for a in cfn_actions if a.startswith("cloudformation:")}


def test_production_autoscaling_alarms_are_allowed() -> None:
    """Production autoscales (staging never does, so a staging deploy cannot show this). A target
    tracking policy makes Application Auto Scaling create and delete CloudWatch alarms named
    TargetTracking-* with the caller's permissions (Application Auto Scaling user guide,
    "Target tracking scaling policies"; "Identity-based policy examples": users need the
    CloudWatch permissions too): the role CloudFormation works with needs PutMetricAlarm and
    DeleteAlarms on them, and DescribeAlarms (no resource-level permissions: Service
    Authorization Reference)."""
    from bridge.aws.registry import ModelPackageArn
    from bridge.deploy.operations import render_stage

    configs = _stage_configs()
    package = ModelPackageArn.parse(PACKAGE_ARN)
    production = render_stage(configs["production"], package)
    assert "ScalingPolicy" in created(render(REALTIME, production.parameters))
    tracking = render(REALTIME, production.parameters).properties("ScalingPolicy")
    assert tracking["PolicyType"] == "TargetTrackingScaling"
    staging = render_stage(configs["staging"], package)
    assert "ScalingPolicy" not in created(render(REALTIME, staging.parameters))

    endpoint = production.parameters["EndpointName"]
    alarm = (
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:TargetTracking-endpoint/{endpoint}"
        "/variant/AllTraffic-AlarmHigh-0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    )
    for scenario in DEPLOY_SCENARIOS.values():
        r = render(DEPLOY_ROLE, scenario)
        stmts = policy_statements(r)[stack_resources_role(r)]
        for action in (
            "cloudwatch:PutMetricAlarm",
            "cloudwatch:DeleteAlarms",
            "cloudwatch:DescribeAlarms",
        ):
            assert allows(stmts, action, alarm), action
        # The stacks' own alarms, and nobody else's.
        assert allows(
            stmts, "cloudwatch:PutMetricAlarm", alarm.replace("TargetTracking-", "smbridge-demo-x-")
        )
        other = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:billing-alarm"
        assert not allows(stmts, "cloudwatch:PutMetricAlarm", other)
        assert not allows(stmts, "cloudwatch:DeleteAlarms", other)


@pytest.mark.parametrize("scenario", DEPLOY_SCENARIOS)
def test_deploy_permissions_are_scoped(scenario: str) -> None:
    r = render(DEPLOY_ROLE, DEPLOY_SCENARIOS[scenario])
    prefix = "smbridge"
    unscoped: set[str] = set()
    for role, stmts in policy_statements(r).items():
        for stmt in stmts:
            assert stmt["Effect"] == "Allow", (role, stmt)
            actions = as_list(stmt["Action"])
            assert not any(a == "*" or a.endswith(":*") for a in actions), (role, stmt)
            for resource in as_list(stmt["Resource"]):
                if resource == "*":
                    unscoped.update(actions)
                    continue
                arn = resource.split(":", 5)
                service, account, rest = arn[2], arn[4], arn[5]
                if service == "sagemaker":
                    kind, name = rest.split("/", 1)
                    if account == REGISTRY_ACCOUNT and kind.startswith("model-package"):
                        assert name == GROUP or name == f"{GROUP}/*", resource
                    else:
                        assert account == ACCOUNT and name.startswith(prefix), resource
                elif service == "cloudformation":
                    assert rest == f"stack/{prefix}-*/*", resource
                elif service == "cloudwatch" and rest == "alarm:TargetTracking-*":
                    # Application Auto Scaling's target tracking alarms: write only.
                    assert sorted(actions) == [
                        "cloudwatch:DeleteAlarms",
                        "cloudwatch:PutMetricAlarm",
                    ]
                    assert account == ACCOUNT and role == CFN_ROLE_NAME
                elif service in ("cloudwatch", "sns"):
                    assert account == ACCOUNT and rest.rsplit(":", 1)[-1].startswith(prefix)
                elif service == "application-autoscaling":
                    assert rest == "scalable-target/*", resource
                    if "application-autoscaling:RegisterScalableTarget" in actions:
                        assert stmt["Condition"] == {
                            "StringEquals": {
                                "application-autoscaling:service-namespace": "sagemaker"
                            }
                        }
                elif service == "s3":
                    assert account == "" and rest.split("/")[0] in {
                        DEPLOY_BASE["ArtifactsBucketName"],
                        *DEPLOY_ALL_OPTIONS["InferenceBucketNames"].split(","),
                        DEPLOY_ALL_OPTIONS["DataCaptureBucketName"],
                    }, resource
                elif service == "kms":
                    assert resource in (KMS_KEY, ARTIFACTS_KEY), resource
                elif service == "logs":
                    assert "/aws/sagemaker/" in rest, resource
                elif service == "ecr":
                    assert account == "*" and rest == "repository/*", resource
                    assert all(a.startswith("ecr:B") or a.startswith("ecr:G") for a in actions)
                elif service == "iam":
                    assert account == ACCOUNT, resource
                else:
                    raise AssertionError(f"unexpected resource {resource}")
    # Only where the service has no resource-level permissions (documented in the template).
    assert unscoped == {
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
        "application-autoscaling:DescribeScalingActivities",
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        "cloudwatch:DescribeAlarms",
    }


def test_deploy_role_lists_the_documented_actions() -> None:
    r = render(DEPLOY_ROLE, DEPLOY_BASE)
    by_sid = {s["Sid"]: s for s in policy_statements(r)[DEPLOY_ROLE_NAME]}
    assert {
        "cloudformation:CreateChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DescribeChangeSet",
        "cloudformation:DeleteChangeSet",
        "cloudformation:DescribeStacks",
        "cloudformation:DescribeStackEvents",
        "cloudformation:GetTemplateSummary",
        "cloudformation:ListChangeSets",
        "cloudformation:DeleteStack",
        "cloudformation:ContinueUpdateRollback",
    } <= set(by_sid["Stacks"]["Action"])
    assert set(by_sid["TransformJobs"]["Action"]) >= {
        "sagemaker:CreateTransformJob",
        "sagemaker:DescribeTransformJob",
        "sagemaker:StopTransformJob",
    }
    assert by_sid["ReadModelPackages"]["Resource"] == [
        f"arn:aws:sagemaker:{REGION}:{REGISTRY_ACCOUNT}:model-package/{GROUP}/*",
        f"arn:aws:sagemaker:{REGION}:{REGISTRY_ACCOUNT}:model-package-group/{GROUP}",
    ]
    cfn_by_sid = {s["Sid"]: s for s in policy_statements(r)[CFN_ROLE_NAME]}
    assert cfn_by_sid["Alarms"]["Resource"] == (
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:smbridge*"
    )
    assert cfn_by_sid["TargetTrackingAlarms"]["Resource"] == (
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:TargetTracking-*"
    )
    assert cfn_by_sid["DescribeAlarms"] == {
        "Sid": "DescribeAlarms",
        "Effect": "Allow",
        "Action": "cloudwatch:DescribeAlarms",
        "Resource": "*",
    }
    slr = cfn_by_sid["AutoScalingServiceLinkedRole"]
    assert slr["Resource"].endswith(
        "/sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    )
    assert slr["Condition"] == {
        "StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
    }


@pytest.mark.parametrize("scenario", ["defaults", "all-options"])
def test_endpoint_execution_role(scenario: str) -> None:
    params = DEPLOY_SCENARIOS[scenario]
    r = render(DEPLOY_ROLE, params)
    by_sid = {s["Sid"]: s for s in policy_statements(r)[EXEC_ROLE_NAME]}
    always = {"ReadModelArtifacts", "EcrAuth", "EcrPullImages", "PublishAsyncNotifications"}
    always |= {"Logs", "Metrics"}
    optional = {
        "DecryptModelArtifacts",
        "WriteDataCapture",
        "InferenceDataObjects",
        "InferenceDataBuckets",
        "StageKey",
        "StageKeyGrantsForVolumes",
    }
    assert set(by_sid) == (always | optional if scenario == "all-options" else always)
    assert by_sid["ReadModelArtifacts"] == {
        "Sid": "ReadModelArtifacts",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{DEPLOY_BASE['ArtifactsBucketName']}/*",
    }
    if scenario == "all-options":
        decrypt = by_sid["DecryptModelArtifacts"]
        assert decrypt["Resource"] == ARTIFACTS_KEY
        assert decrypt["Condition"] == {
            "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
        }
        assert by_sid["InferenceDataObjects"]["Resource"] == [
            "arn:aws:s3:::smbridge-async-123456789012/*",
            "arn:aws:s3:::smbridge-batch-123456789012/*",
        ]
        assert by_sid["InferenceDataBuckets"]["Resource"] == [
            "arn:aws:s3:::smbridge-async-123456789012",
            "arn:aws:s3:::smbridge-batch-123456789012",
        ]
        assert by_sid["WriteDataCapture"]["Resource"] == (
            "arn:aws:s3:::smbridge-data-capture-123456789012-eu-west-1/*"
        )


def test_deploy_role_outputs() -> None:
    tpl = load_template(DEPLOY_ROLE)
    assert set(tpl["Outputs"]) == {
        "DeployRoleArn",
        "EndpointExecutionRoleArn",
        "CloudFormationServiceRoleArn",
    }
    r = render(DEPLOY_ROLE, DEPLOY_BASE)
    deploy_role = r.eval(tpl["Outputs"]["DeployRoleArn"]["Value"])
    service_role = r.eval(tpl["Outputs"]["CloudFormationServiceRoleArn"]["Value"])
    assert service_role == f"arn:aws:iam::{ACCOUNT}:role/{CFN_ROLE_NAME}"
    # The stage config's default cloudformation_role_arn is derived from deploy_role_arn.
    from bridge.settings.stage import default_cloudformation_role_arn

    assert default_cloudformation_role_arn(deploy_role) == service_role


# ------------------------------------------------------------- 2. model package group policy


def test_model_package_group_policy() -> None:
    stages = "222222222222,333333333333"
    r = render(GROUP_POLICY, {"ModelPackageGroupName": GROUP, "StageAccountIds": stages})
    group = r.properties("ModelPackageGroup")
    assert group["ModelPackageGroupName"] == GROUP
    read_group, use_packages = statements(group["ModelPackageGroupPolicy"])
    for stmt in (read_group, use_packages):
        assert stmt["Effect"] == "Allow"
        assert stmt["Principal"] == {"AWS": stages.split(",")}
    assert read_group["Action"] == "sagemaker:DescribeModelPackageGroup"
    assert read_group["Resource"] == (
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{GROUP}"
    )
    assert sorted(use_packages["Action"]) == [
        "sagemaker:CreateModel",
        "sagemaker:DescribeModelPackage",
        "sagemaker:ListModelPackages",
    ]
    assert (
        use_packages["Resource"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/*"
    )
    assert failed_rules(GROUP_POLICY, {"ModelPackageGroupName": GROUP, "StageAccountIds": ""}) == {
        "StageAccountsAreConfigured"
    }


# --------------------------------------------------------------------------- 3. moto


def _create(cfn: Any, name: str, tpl: dict[str, Any], params: dict[str, str]) -> dict[str, str]:
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(tpl),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
    )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


MOTO_CASES = {
    "all-at-once": ENDPOINT_BASE,
    "canary-capture-autoscaling": {
        **CANARY,
        "StageName": "production",
        "InitialInstanceCount": "2",
        "MinCapacity": "2",
        "MaxCapacity": "4",
        "DataCaptureEnabled": "true",
        "DataCaptureS3Uri": "s3://smbridge-data-capture-333333333333-eu-west-1/endpoint/",
        "DataCaptureSamplingPercent": "20",
        "RollbackAlarmNames": "team-errors",
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("case", MOTO_CASES)
def test_moto_creates_the_realtime_stack(case: str) -> None:
    import boto3
    from moto import mock_aws

    params = MOTO_CASES[case]
    tpl, dropped = moto_compatible(load_template(REALTIME))
    assert dropped == {"LatencyAlarm", "ErrorsAlarm", "ScalableTarget", "ScalingPolicy"}
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name=REGION)
        outputs = _create(cfn, "smbridge-demo-churn-xgb-staging", tpl, params)
        assert set(outputs) == OUTPUTS["realtime.yaml"]
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        endpoint = sagemaker.describe_endpoint(EndpointName=outputs["EndpointName"])
        assert endpoint["EndpointArn"] == outputs["EndpointArn"]
        assert endpoint["EndpointConfigName"] == outputs["EndpointConfigName"]
        config = sagemaker.describe_endpoint_config(
            EndpointConfigName=outputs["EndpointConfigName"]
        )
        (variant,) = config["ProductionVariants"]
        assert variant["ModelName"] == outputs["ModelName"]
        assert variant["VariantName"] == "AllTraffic"
        assert variant["InitialInstanceCount"] == int(params.get("InitialInstanceCount", "1"))
        if params.get("DataCaptureEnabled") == "true":
            capture = config["DataCaptureConfig"]
            assert capture["DestinationS3Uri"] == params["DataCaptureS3Uri"]
            assert capture["InitialSamplingPercentage"] == 20
        else:
            assert not config.get("DataCaptureConfig")
        model = sagemaker.describe_model(ModelName=outputs["ModelName"])
        assert model["PrimaryContainer"] == {"ModelPackageName": PACKAGE_ARN}
        assert model["ExecutionRoleArn"] == EXECUTION_ROLE
        tags = sagemaker.list_tags(ResourceArn=model["ModelArn"])["Tags"]
        assert {"Key": "smbridge:model-package-arn", "Value": PACKAGE_ARN} in tags
        assert {"Key": "smbridge:stage", "Value": params["StageName"]} in tags


@pytest.mark.slow
def test_moto_new_model_version_replaces_model_and_config_not_the_endpoint() -> None:
    """A new model version: new model and endpoint config, the same endpoint. (moto deletes and
    recreates the endpoint under the same name; SageMaker would run UpdateEndpoint blue/green.)"""
    import boto3
    from moto import mock_aws

    tpl, _ = moto_compatible(load_template(REALTIME))
    v4 = PACKAGE_ARN.replace("/3", "/4")
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name=REGION)
        name = "smbridge-demo-churn-xgb-staging"
        before = _create(cfn, name, tpl, CANARY)
        cfn.update_stack(
            StackName=name,
            TemplateBody=json.dumps(tpl),
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v}
                for k, v in {
                    **CANARY,
                    "ModelPackageArn": v4,
                    "ModelName": "smbridge-demo-churn-xgb-v4-staging-0a1b2c3d",
                    "EndpointConfigName": "smbridge-demo-churn-xgb-v4-staging-5e6f7a8b",
                }.items()
            ],
        )
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        assert stack["StackStatus"] == "UPDATE_COMPLETE", stack.get("StackStatusReason")
        after = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        assert after["EndpointName"] == before["EndpointName"]
        assert after["EndpointConfigName"] != before["EndpointConfigName"]
        assert after["ModelName"] != before["ModelName"]
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        endpoint = sagemaker.describe_endpoint(EndpointName=after["EndpointName"])
        assert endpoint["EndpointConfigName"] == after["EndpointConfigName"]
        model = sagemaker.describe_model(ModelName=after["ModelName"])
        assert model["PrimaryContainer"] == {"ModelPackageName": v4}
        configs = sagemaker.list_endpoint_configs()["EndpointConfigs"]
        assert [c["EndpointConfigName"] for c in configs] == [after["EndpointConfigName"]]
