"""The approval trigger's CloudFormation: infra/trigger.yaml and infra/registry-forwarding.yaml.

Layers, from cheapest to most realistic:

1. cfn-lint (its Python API) on both templates: no findings.
2. Structural assertions on the templates rendered for several parameter sets with the intrinsic
   function evaluator of ``test_infra_templates.py`` (``Renderer``), checked so that a resource
   only ever references resources that exist under the same parameters: the Lambda role's exact
   statements, the function's settings, the queue between rule and function (its sizing against
   a 24-hour Azure DevOps outage, its policy, the event source mapping), retry policy and
   dead-letter queue on every target, the table, the alarms, which resources each
   ``DeliveryMode`` creates, the bus policy, the template's ``Rules``. The API destination's input
   transformer is rendered here the way EventBridge renders it (an unquoted placeholder takes the
   value as JSON, a quoted one the raw text, nothing is escaped) for the example event, then
   parsed as JSON.
3. moto's EventBridge and SQS: ``put_events`` matches rule patterns and delivers to SQS targets
   (applying input transformers), so each mode's exact pattern (read from the template, with and
   without a group filter) gets real events through a real rule; in Lambda mode with the
   template's own target (the queue, with its retry policy and dead-letter queue) and a queue
   created with the template's attributes, whose redrive moto applies after maxReceiveCount
   receives. The registry account's forwarding rule is exercised across two moto accounts. What
   moto cannot do: ``test_event_pattern`` returns nothing, Lambda, event source mappings and API
   destination targets are not invoked, visibility timeouts are not waited for (the tests receive
   with a zero timeout), bus and queue policies and IAM are not enforced, and its input
   transformer inserts a string value without quotes for an unquoted placeholder (EventBridge
   adds them), so the real template is compared with moto only through an all-quoted equivalent
   (plus a strict xfail that notices when moto changes).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.sandbox.ado_contract import REFERENCE_DIR
from tests.unit.test_infra_templates import (
    ACCOUNT,
    REGION,
    Renderer,
    as_list,
    load_template,
    statements,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRIGGER = REPO_ROOT / "infra" / "trigger.yaml"
FORWARDING = REPO_ROOT / "infra" / "registry-forwarding.yaml"
APPROVED_EVENT = REFERENCE_DIR / "sagemaker-events" / "model-package-approved.json"

REGISTRY_ACCOUNT = "111122223333"  # the account of the example event
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:smbridge/azure-devops-AbCdEf"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:smbridge-alarms"
BUS_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"

LAMBDA_PARAMS = {
    "AzureDevOpsSecretArn": SECRET_ARN,
    "CodeS3Bucket": "smbridge-artifacts-123456789012-eu-west-1",
    "CodeS3Key": "smbridge-trigger/3f9c2a.zip",
    "RoutesJson": '{"routes": [{"modelPackageGroup": "churn-xgb", "pipelineId": 42}]}',
}
LAMBDA_ALL_OPTIONS = {
    "AzureDevOpsSecretArn": SECRET_ARN,
    "CodeS3Bucket": "smbridge-artifacts-123456789012-eu-west-1",
    "CodeS3Key": "smbridge-trigger/3f9c2a.zip",
    "RoutesParameterName": "/smbridge/routes",
    "SecretKmsKeyArn": KMS_KEY_ARN,
    "EnableTracing": "true",
    "AlarmTopicArn": TOPIC_ARN,
    "ModelPackageGroupNames": "churn-xgb,fraud-xgb",
    "SourceAccountIds": f"{REGISTRY_ACCOUNT},444455556666",
}
API_PARAMS = {
    "DeliveryMode": "ApiDestination",
    "AzureDevOpsSecretArn": SECRET_ARN,
    "AzureDevOpsOrganization": "contoso",
    "AzureDevOpsProject": "ml-platform",
    "AzureDevOpsPipelineId": "42",
}
SCENARIOS = {
    "lambda": LAMBDA_PARAMS,
    "lambda-all-options": LAMBDA_ALL_OPTIONS,
    "api-destination": API_PARAMS,
    "api-destination-options": {
        **API_PARAMS,
        "ApiDestinationSecretJsonKey": "pat",
        "SourceBranch": "release/1.2",
        "SourceAccountIds": REGISTRY_ACCOUNT,
        "AlarmTopicArn": TOPIC_ARN,
    },
}

LAMBDA_ONLY = {
    "TriggerQueue",
    "TriggerQueuePolicy",
    "TriggerEventSourceMapping",
    "TriggerFunction",
    "TriggerLogGroup",
    "IdempotencyTable",
    "TriggerRole",
    "TriggerErrorsAlarm",
    "TriggerQueueAgeAlarm",
}
API_ONLY = {"AzureDevOpsConnection", "AzureDevOpsApiDestination", "ApiDestinationRole"}
ALWAYS = {"ApprovalRule", "DeadLetterQueue", "DeadLetterQueuePolicy", "DeadLetterQueueAlarm"}
WITH_SOURCE_ACCOUNTS = {"RegistryForwardingBusPolicy"}

DETAIL_TYPE = "SageMaker Model Package State Change"
README = REPO_ROOT / "infra" / "README.md"
DAY = 86400
SQS_MAX_RETENTION = 1209600  # 14 days


# --------------------------------------------------------------------------- helpers


class CheckedRenderer(Renderer):
    """``Renderer`` that fails when something reads a resource its conditions do not create."""

    def _check(self, name: str) -> None:
        if name in self.tpl["Resources"] and not self.resource_exists(name):
            raise AssertionError(f"{name} is read but not created with these parameters")

    def ref(self, name: str) -> Any:
        self._check(name)
        return super().ref(name)

    def getatt(self, name: str, attr: str) -> str:
        self._check(name)
        return super().getatt(name, attr)


@pytest.fixture(scope="module")
def trigger() -> dict[str, Any]:
    return load_template(TRIGGER)


@pytest.fixture(scope="module")
def forwarding() -> dict[str, Any]:
    return load_template(FORWARDING)


@pytest.fixture(scope="module")
def approved_event() -> dict[str, Any]:
    return json.loads(APPROVED_EVENT.read_text())


def render(tpl: dict[str, Any], params: dict[str, str]) -> CheckedRenderer:
    return CheckedRenderer(tpl, params)


def role_statements(r: Renderer, role: str) -> list[dict[str, Any]]:
    props = r.properties(role)
    assert "ManagedPolicyArns" not in props, f"{role} must not attach managed policies"
    (policy,) = props["Policies"]
    return statements(policy["PolicyDocument"])


def rule_target(r: Renderer, rule: str = "ApprovalRule") -> dict[str, Any]:
    (target,) = r.properties(rule)["Targets"]
    return target


def json_path(event: dict[str, Any], path: str) -> Any:
    """The dot-notation JSON paths the templates use ($.id, $.detail.Name)."""
    assert re.fullmatch(r"\$(\.[A-Za-z0-9_-]+)+", path), path
    node: Any = event
    for part in path[2:].split("."):
        node = node[part]
    return node


PLACEHOLDER = re.compile(r"<([A-Za-z0-9]+)>")


def render_input_template(template: str, paths_map: dict[str, str], event: dict[str, Any]) -> str:
    """Fill an InputTemplate the way EventBridge does.

    Outside a JSON string, a placeholder becomes the value as JSON, a string with its quotes
    around it. Inside a JSON string it becomes the value's raw text (a number's digits). Values
    are inserted as they are: EventBridge escapes nothing.
    """
    values = {name: json_path(event, path) for name, path in paths_map.items()}
    used = set(PLACEHOLDER.findall(template))
    assert used == set(values), f"placeholders {used} != InputPathsMap keys {set(values)}"
    out: list[str] = []
    in_string = escaped = False
    i = 0
    while i < len(template):
        match = PLACEHOLDER.match(template, i)
        if match:
            value = values[match.group(1)]
            if isinstance(value, str):
                out.append(value if in_string else f'"{value}"')
            else:
                out.append(json.dumps(value))
            i = match.end()
            continue
        char = template[i]
        out.append(char)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        i += 1
    return "".join(out)


def quote_placeholders(template: str) -> str:
    """The same template with every unquoted placeholder quoted (moto handles only those)."""
    return re.sub(r'(?<!")<([A-Za-z0-9]+)>(?!")', r'"<\1>"', template)


# --------------------------------------------------------------------------- 1. cfn-lint


@pytest.mark.slow
@pytest.mark.parametrize("path", [TRIGGER, FORWARDING], ids=lambda p: p.name)
def test_cfn_lint_reports_nothing(path: Path) -> None:
    from cfnlint.api import lint_file

    matches = lint_file(path)
    assert not matches, "\n".join(str(m) for m in matches)


def test_only_documented_cfn_lint_suppression(trigger: dict[str, Any]) -> None:
    """One rule is ignored, on one resource: W1030 resolves the code parameters to their default
    "", which exists for ApiDestination mode; the template's Rules reject "" in Lambda mode."""
    assert "cfn-lint" not in trigger.get("Metadata", {})
    ignored = {
        name: res["Metadata"]["cfn-lint"]["config"]["ignore_checks"]
        for tpl in (trigger, load_template(FORWARDING))
        for name, res in tpl["Resources"].items()
        if "cfn-lint" in res.get("Metadata", {})
    }
    assert ignored == {"TriggerFunction": ["W1030"]}


# --------------------------------------------------------------------------- 2. structure


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_parameter_values_fit_their_patterns(trigger: dict[str, Any], scenario: str) -> None:
    for name, value in SCENARIOS[scenario].items():
        spec = trigger["Parameters"][name]
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), (name, value)
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (name, value)


def test_parameter_patterns_reject_unsafe_values(trigger: dict[str, Any]) -> None:
    params = trigger["Parameters"]

    def ok(name: str, value: str) -> bool:
        return re.fullmatch(params[name]["AllowedPattern"], value) is not None

    # The branch ends up inside a JSON string of the input template: no quote, no backslash.
    assert ok("SourceBranch", "main") and ok("SourceBranch", "release/1.2")
    for bad in ['ma"in', "ma\\in", "feature/x y", "/main", ""]:
        assert not ok("SourceBranch", bad), bad
    # The role grants exactly this ARN, so it must be complete (with the random suffix); a
    # partial ARN is caught when its name does not happen to end in "-" and six characters.
    partial = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:smbridge/pat"
    assert ok("AzureDevOpsSecretArn", f"{partial}-AbCdEf")
    assert not ok("AzureDevOpsSecretArn", partial)
    assert not ok("AzureDevOpsProject", "ML Platform")  # URL-encode: ML%20Platform
    assert ok("AzureDevOpsProject", "ML%20Platform")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_reference_exists_in_its_mode(trigger: dict[str, Any], scenario: str) -> None:
    r = render(trigger, SCENARIOS[scenario])
    for name in trigger["Resources"]:
        if r.resource_exists(name):
            r.properties(name)
    for out in trigger["Outputs"].values():
        if "Condition" not in out or r.condition(out["Condition"]):
            r.eval(out["Value"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_delivery_mode_selects_the_resources(trigger: dict[str, Any], scenario: str) -> None:
    params = SCENARIOS[scenario]
    assert set(trigger["Resources"]) == LAMBDA_ONLY | API_ONLY | ALWAYS | WITH_SOURCE_ACCOUNTS
    r = render(trigger, params)
    created = {name for name in trigger["Resources"] if r.resource_exists(name)}
    lambda_mode = params.get("DeliveryMode", "Lambda") == "Lambda"
    expected = ALWAYS | (LAMBDA_ONLY if lambda_mode else API_ONLY)
    if params.get("SourceAccountIds"):
        expected |= WITH_SOURCE_ACCOUNTS
    assert created == expected


def test_rules_require_each_modes_settings(trigger: dict[str, Any]) -> None:
    def failed(params: dict[str, str]) -> set[str]:
        r = Renderer(trigger, params)
        out = set()
        for name, rule in trigger["Rules"].items():
            if "RuleCondition" in rule and not r.eval(rule["RuleCondition"]):
                continue
            if not all(r.eval(a["Assert"]) for a in rule["Assertions"]):
                out.add(name)
        return out

    assert failed(LAMBDA_PARAMS) == set()
    assert failed(LAMBDA_ALL_OPTIONS) == set()
    assert failed(API_PARAMS) == set()
    no_routes = {k: v for k, v in LAMBDA_PARAMS.items() if k != "RoutesJson"}
    assert failed(no_routes) == {"LambdaModeIsConfigured"}
    no_code = {k: v for k, v in LAMBDA_PARAMS.items() if k != "CodeS3Key"}
    assert failed(no_code) == {"LambdaModeIsConfigured"}
    assert failed({**API_PARAMS, "AzureDevOpsPipelineId": ""}) == {"ApiDestinationModeIsConfigured"}


def test_lambda_role_is_least_privilege(trigger: dict[str, Any]) -> None:
    r = render(trigger, LAMBDA_PARAMS)
    trust = r.properties("TriggerRole")["AssumeRolePolicyDocument"]
    (stmt,) = statements(trust)
    assert stmt["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert stmt["Action"] == "sts:AssumeRole"

    by_sid = {s["Sid"]: s for s in role_statements(r, "TriggerRole")}
    assert set(by_sid) == {
        "ReadAzureDevOpsSecret",
        "IdempotencyRecords",
        "OwnLogGroup",
        "TriggerQueueMessages",
    }
    for stmt in by_sid.values():
        assert stmt["Effect"] == "Allow"
        assert "Condition" not in stmt or stmt["Sid"] == "DecryptSecretViaSecretsManager"
        assert isinstance(stmt["Resource"], str), "exactly one resource per statement"
    secret = by_sid["ReadAzureDevOpsSecret"]
    assert as_list(secret["Action"]) == ["secretsmanager:GetSecretValue"]
    assert secret["Resource"] == SECRET_ARN
    table = by_sid["IdempotencyRecords"]
    assert sorted(as_list(table["Action"])) == [
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert table["Resource"] == r.getatt("IdempotencyTable", "Arn")
    logs = by_sid["OwnLogGroup"]
    assert sorted(as_list(logs["Action"])) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["Resource"] == r.getatt("TriggerLogGroup", "Arn")
    # The event source mapping polls with the function's role: this queue only, no SendMessage.
    messages = by_sid["TriggerQueueMessages"]
    assert sorted(as_list(messages["Action"])) == [
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ]
    assert messages["Resource"] == r.getatt("TriggerQueue", "Arn")
    # Nothing of the function writes to the dead-letter queue (SQS redrive needs no permission).
    dlq_arn = r.getatt("DeadLetterQueue", "Arn")
    assert all(stmt["Resource"] != dlq_arn for stmt in by_sid.values())


def test_lambda_role_optional_statements(trigger: dict[str, Any]) -> None:
    r = render(trigger, LAMBDA_ALL_OPTIONS)
    by_sid = {s["Sid"]: s for s in role_statements(r, "TriggerRole")}
    assert set(by_sid) == {
        "ReadAzureDevOpsSecret",
        "IdempotencyRecords",
        "OwnLogGroup",
        "TriggerQueueMessages",
        "ReadRoutesParameter",
        "DecryptSecretViaSecretsManager",
        "XRayTraces",
    }
    ssm = by_sid["ReadRoutesParameter"]
    assert as_list(ssm["Action"]) == ["ssm:GetParameter"]
    assert ssm["Resource"] == f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/smbridge/routes"
    kms = by_sid["DecryptSecretViaSecretsManager"]
    assert as_list(kms["Action"]) == ["kms:Decrypt"]
    assert kms["Resource"] == KMS_KEY_ARN
    assert kms["Condition"] == {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
    }
    # A name without a leading slash has one added in its ARN.
    plain = render(trigger, {**LAMBDA_PARAMS, "RoutesParameterName": "smbridge-routes"})
    (ssm_plain,) = [
        s for s in role_statements(plain, "TriggerRole") if s["Sid"] == "ReadRoutesParameter"
    ]
    assert ssm_plain["Resource"] == f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/smbridge-routes"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_wildcards_except_where_aws_requires_them(
    trigger: dict[str, Any], forwarding: dict[str, Any], scenario: str
) -> None:
    rendered = [
        render(trigger, SCENARIOS[scenario]),
        render(forwarding, {"TargetEventBusArn": BUS_ARN}),
    ]
    checked = 0
    for r in rendered:
        for name, res in r.tpl["Resources"].items():
            if not r.resource_exists(name):
                continue
            props = r.properties(name)
            if res["Type"] == "AWS::IAM::Role":
                assert "ManagedPolicyArns" not in props
                stmts = role_statements(r, name)
            elif res["Type"] == "AWS::SQS::QueuePolicy":
                stmts = statements(props["PolicyDocument"])
            elif res["Type"] == "AWS::Events::EventBusPolicy":
                stmts = [props["Statement"]]
            else:
                continue
            for stmt in stmts:
                checked += 1
                if stmt["Effect"] == "Deny":
                    continue  # a deny (TLS only) may be broad
                for action in as_list(stmt["Action"]):
                    assert action != "*" and not action.endswith(":*"), (name, action)
                if "*" in as_list(stmt["Resource"]):
                    # X-Ray's PutTraceSegments/PutTelemetryRecords have no resource-level
                    # permissions: AWS requires "*" for them, and only for them.
                    assert sorted(as_list(stmt["Action"])) == [
                        "xray:PutTelemetryRecords",
                        "xray:PutTraceSegments",
                    ], (name, stmt)
                assert stmt.get("Principal") != "*", (name, stmt)
    assert checked >= 4


def test_function_settings(trigger: dict[str, Any]) -> None:
    r = render(trigger, LAMBDA_PARAMS)
    fn = r.properties("TriggerFunction")
    assert fn["Runtime"] == "python3.12"
    assert fn["Architectures"] == ["arm64"]
    assert fn["Handler"] == "bridge.trigger.handler.lambda_handler"
    assert fn["MemorySize"] == 256
    # No reservation by default: it fails stack creation on accounts with a small quota.
    assert "ReservedConcurrentExecutions" not in fn
    assert fn["Timeout"] == "60"
    assert fn["Code"] == {
        "S3Bucket": LAMBDA_PARAMS["CodeS3Bucket"],
        "S3Key": LAMBDA_PARAMS["CodeS3Key"],
    }
    assert fn["Role"] == r.getatt("TriggerRole", "Arn")
    assert fn["TracingConfig"] == {"Mode": "PassThrough"}
    # Invoked synchronously by the event source mapping only: no asynchronous dead-letter queue.
    assert "DeadLetterConfig" not in fn
    assert fn["Environment"]["Variables"] == {
        "SMBRIDGE_ROUTES": LAMBDA_PARAMS["RoutesJson"],
        "SMBRIDGE_ADO_SECRET_ARN": SECRET_ARN,
        "SMBRIDGE_IDEMPOTENCY_TABLE": r.ref("IdempotencyTable"),
        "SMBRIDGE_REGISTRY_ACCOUNTS": ACCOUNT,
        "POWERTOOLS_SERVICE_NAME": "smbridge-trigger",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    # Its own log group, with retention, named the way Lambda names it.
    assert fn["FunctionName"] == "smbridge-trigger"
    assert fn["LoggingConfig"] == {"LogGroup": r.ref("TriggerLogGroup")}
    log_group = r.properties("TriggerLogGroup")
    assert log_group == {"LogGroupName": "/aws/lambda/smbridge-trigger", "RetentionInDays": "365"}
    # The queue invokes it: one message per invocation, no batching window, at most
    # MaximumConcurrency (2) at a time, which bounds the calls to Azure DevOps.
    assert r.properties("TriggerEventSourceMapping") == {
        "EventSourceArn": r.getatt("TriggerQueue", "Arn"),
        "FunctionName": r.ref("TriggerFunction"),
        "Enabled": True,
        "BatchSize": 1,
        "MaximumBatchingWindowInSeconds": 0,
        "ScalingConfig": {"MaximumConcurrency": "2"},
    }
    # Nothing invokes the function asynchronously any more, so nothing configures that.
    types = {res["Type"] for res in trigger["Resources"].values()}
    assert not types & {"AWS::Lambda::Permission", "AWS::Lambda::EventInvokeConfig"}


def test_registry_accounts_are_this_account_and_the_forwarders(trigger: dict[str, Any]) -> None:
    """The function refuses model packages of other accounts; the value must be one the
    trigger's settings accept (a malformed list would fail every cold start)."""
    from bridge.trigger.settings import TriggerSettings

    r = render(trigger, LAMBDA_ALL_OPTIONS)
    value = r.properties("TriggerFunction")["Environment"]["Variables"][
        "SMBRIDGE_REGISTRY_ACCOUNTS"
    ]
    assert value == f"{ACCOUNT},{REGISTRY_ACCOUNT},444455556666"
    settings = TriggerSettings.from_environ(
        {"SMBRIDGE_ROUTES": "{}", "SMBRIDGE_ADO_PAT": "x", "SMBRIDGE_REGISTRY_ACCOUNTS": value}
    )
    assert settings.registry_account_ids == {ACCOUNT, REGISTRY_ACCOUNT, "444455556666"}


def test_function_options(trigger: dict[str, Any]) -> None:
    r = render(
        trigger,
        {
            **LAMBDA_ALL_OPTIONS,
            "ReservedConcurrency": "5",
            "MaximumConcurrency": "5",
            "LambdaTimeout": "120",
            "QueueVisibilityTimeout": "720",
            "QueueMaxReceiveCount": "500",
            "CodeS3ObjectVersion": "v3",
        },
    )
    fn = r.properties("TriggerFunction")
    assert fn["ReservedConcurrentExecutions"] == "5"
    assert r.properties("TriggerEventSourceMapping")["ScalingConfig"] == {"MaximumConcurrency": "5"}
    queue = r.properties("TriggerQueue")
    assert queue["VisibilityTimeout"] == "720"
    assert queue["RedrivePolicy"]["maxReceiveCount"] == "500"
    assert fn["Timeout"] == "120"
    assert fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["Code"]["S3ObjectVersion"] == "v3"
    env = fn["Environment"]["Variables"]
    assert "SMBRIDGE_ROUTES" not in env
    assert env["SMBRIDGE_ROUTES_PARAMETER"] == "/smbridge/routes"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_target_has_retry_policy_and_dead_letter_queue(
    trigger: dict[str, Any], scenario: str
) -> None:
    r = render(trigger, {**SCENARIOS[scenario], "MaximumRetryAttempts": "7"})
    target = rule_target(r)
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": "7",
        "MaximumEventAgeInSeconds": "3600",
    }
    assert target["DeadLetterConfig"] == {"Arn": r.getatt("DeadLetterQueue", "Arn")}
    if SCENARIOS[scenario].get("DeliveryMode") == "ApiDestination":
        assert target["Arn"] == r.getatt("AzureDevOpsApiDestination", "Arn")
        assert target["RoleArn"] == r.getatt("ApiDestinationRole", "Arn")
    else:
        # The queue, not the function: its retries are the queue's, not Lambda's 0-2 async ones.
        assert target["Arn"] == r.getatt("TriggerQueue", "Arn")
        assert "RoleArn" not in target  # the queue policy admits the rule
        assert "InputTransformer" not in target  # the function gets the whole event
    defaults = trigger["Parameters"]
    assert 0 < int(defaults["MaximumRetryAttempts"]["Default"]) <= 185
    assert 60 <= int(defaults["MaximumEventAgeInSeconds"]["Default"]) <= 86400
    assert int(defaults["MaximumEventAgeInSeconds"]["MaxValue"]) <= 86400  # EventBridge maximum


def _bounds(trigger: dict[str, Any], name: str) -> tuple[int, int, int]:
    spec = trigger["Parameters"][name]
    return int(spec["MinValue"]), int(spec["Default"]), int(spec["MaxValue"])


def test_queue_retries_outlast_a_day_of_azure_devops_outage(trigger: dict[str, Any]) -> None:
    """Attempt k at an event is received about (k - 1) x VisibilityTimeout after the first (a
    failed call leaves the message invisible for the visibility timeout); SQS moves it to the
    dead-letter queue at the receive after maxReceiveCount. So an outage shorter than
    (maxReceiveCount - 1) x VisibilityTimeout loses nothing and needs no replay, as long as the
    retention (14 days) outlasts maxReceiveCount x VisibilityTimeout."""
    t_min, timeout, t_max = _bounds(trigger, "LambdaTimeout")
    v_min, visibility, v_max = _bounds(trigger, "QueueVisibilityTimeout")
    n_min, receives, n_max = _bounds(trigger, "QueueMaxReceiveCount")
    # The defaults: AWS's 6 x timeout recommendation, 24 h with a margin, inside the retention.
    assert visibility >= 6 * timeout
    assert (receives - 1) * visibility >= 1.2 * DAY
    assert receives * visibility <= SQS_MAX_RETENTION
    # Every value the parameters allow (CloudFormation has no arithmetic for a Rule to check):
    assert (n_min - 1) * v_min >= DAY
    assert n_max * v_max < SQS_MAX_RETENTION
    assert t_max <= v_min  # Lambda refuses a mapping whose queue's visibility < function timeout
    assert 6 * t_max <= v_max  # every allowed timeout has a visibility that fits 6 x timeout
    assert t_min >= 5 and n_max <= 1000 and v_max <= 43200  # Lambda's and SQS's own limits

    r = render(trigger, LAMBDA_PARAMS)
    queue = r.properties("TriggerQueue")
    assert queue == {
        "VisibilityTimeout": str(visibility),
        "MessageRetentionPeriod": SQS_MAX_RETENTION,
        "SqsManagedSseEnabled": True,
        "RedrivePolicy": {
            "deadLetterTargetArn": r.getatt("DeadLetterQueue", "Arn"),
            "maxReceiveCount": str(receives),
        },
    }
    assert r.properties("TriggerFunction")["Timeout"] == str(timeout)
    # A redriven message keeps its enqueue time: the dead-letter queue keeps 14 days as well.
    assert r.properties("DeadLetterQueue")["MessageRetentionPeriod"] == SQS_MAX_RETENTION
    # The README states the same numbers.
    hours = (receives - 1) * visibility / 3600
    text = README.read_text()
    minus, times = "\u2212", "\u00d7"  # as the README writes them
    assert (
        f"({receives} {minus} 1) {times} {visibility} s = {(receives - 1) * visibility} s" in text
    )
    assert f"{hours:.1f} hours" in text


def test_concurrency_bound_without_reservation(trigger: dict[str, Any]) -> None:
    lowest, default, _ = _bounds(trigger, "MaximumConcurrency")
    assert lowest == default == 2  # ScalingConfig.MaximumConcurrency's minimum
    assert trigger["Parameters"]["ReservedConcurrency"]["Default"] == 0
    assert _bounds(trigger, "ReservedConcurrency")[0] == 0
    reserved = render(trigger, {**LAMBDA_PARAMS, "ReservedConcurrency": "3"})
    assert reserved.properties("TriggerFunction")["ReservedConcurrentExecutions"] == "3"


def test_dead_letter_queue_and_its_policy(trigger: dict[str, Any]) -> None:
    r = render(trigger, LAMBDA_PARAMS)
    queue = r.properties("DeadLetterQueue")
    assert queue["MessageRetentionPeriod"] == 1209600
    assert queue["SqsManagedSseEnabled"] is True
    policy = r.properties("DeadLetterQueuePolicy")
    assert policy["Queues"] == [r.ref("DeadLetterQueue")]
    allow, deny = statements(policy["PolicyDocument"])
    assert allow["Effect"] == "Allow"
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == r.getatt("DeadLetterQueue", "Arn")
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": r.getatt("ApprovalRule", "Arn")}}
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # EventBridge still dead-letters failed deliveries in both modes: the statement stays.
    api = render(trigger, API_PARAMS)
    api_allow, _ = statements(api.properties("DeadLetterQueuePolicy")["PolicyDocument"])
    assert api_allow["Condition"] == {
        "ArnEquals": {"aws:SourceArn": api.getatt("ApprovalRule", "Arn")}
    }


def test_trigger_queue_policy(trigger: dict[str, Any]) -> None:
    r = render(trigger, LAMBDA_PARAMS)
    policy = r.properties("TriggerQueuePolicy")
    assert policy["Queues"] == [r.ref("TriggerQueue")]
    allow, deny = statements(policy["PolicyDocument"])
    assert allow == {
        "Sid": "ApprovalRuleSends",
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": r.getatt("TriggerQueue", "Arn"),
        "Condition": {"ArnEquals": {"aws:SourceArn": r.getatt("ApprovalRule", "Arn")}},
    }
    assert deny == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sqs:*",
        "Resource": r.getatt("TriggerQueue", "Arn"),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def test_idempotency_table(trigger: dict[str, Any]) -> None:
    table = render(trigger, LAMBDA_PARAMS).properties("IdempotencyTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


@pytest.mark.parametrize("topic", ["", TOPIC_ARN])
def test_alarms(trigger: dict[str, Any], topic: str) -> None:
    r = render(trigger, {**LAMBDA_PARAMS, "AlarmTopicArn": topic})
    dlq = r.properties("DeadLetterQueueAlarm")
    errors = r.properties("TriggerErrorsAlarm")
    assert (dlq["Namespace"], dlq["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": r.getatt("DeadLetterQueue", "QueueName")}
    ]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": r.ref("TriggerFunction")}]
    # An outage shows while the queue absorbs it: the oldest message is older than 15 minutes.
    age = r.properties("TriggerQueueAgeAlarm")
    assert (age["Namespace"], age["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert age["Dimensions"] == [
        {"Name": "QueueName", "Value": r.getatt("TriggerQueue", "QueueName")}
    ]
    assert (age["Statistic"], age["Threshold"]) == ("Maximum", 900)
    for alarm in (dlq, errors, age):
        if alarm is not age:
            assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["EvaluationPeriods"] == 1
        assert alarm["TreatMissingData"] == "notBreaching"
        if topic:
            assert alarm["AlarmActions"] == [topic]
        else:
            assert "AlarmActions" not in alarm


def test_api_destination(trigger: dict[str, Any]) -> None:
    r = render(trigger, API_PARAMS)
    destination = r.properties("AzureDevOpsApiDestination")
    assert destination["HttpMethod"] == "POST"
    assert destination["InvocationEndpoint"] == (
        "https://dev.azure.com/contoso/ml-platform/_apis/pipelines/42/runs?api-version=7.1"
    )
    assert destination["ConnectionArn"] == r.getatt("AzureDevOpsConnection", "Arn")
    assert 1 <= int(destination["InvocationRateLimitPerSecond"]) <= 10
    connection = r.properties("AzureDevOpsConnection")
    assert connection["AuthorizationType"] == "BASIC"
    basic = connection["AuthParameters"]["BasicAuthParameters"]
    assert basic["Username"] == "smbridge"
    # The PAT comes from Secrets Manager through a dynamic reference, never from a parameter.
    assert basic["Password"] == f"{{{{resolve:secretsmanager:{SECRET_ARN}}}}}"
    assert not any(spec.get("NoEcho") for spec in trigger["Parameters"].values())
    with_key = render(trigger, {**API_PARAMS, "ApiDestinationSecretJsonKey": "pat"})
    basic_key = with_key.properties("AzureDevOpsConnection")["AuthParameters"][
        "BasicAuthParameters"
    ]
    assert basic_key["Password"] == f"{{{{resolve:secretsmanager:{SECRET_ARN}:SecretString:pat}}}}"
    # Rotating the PAT: a new serial changes the connection, so CloudFormation re-reads it.
    rotated = render(trigger, {**API_PARAMS, "ApiDestinationCredentialSerial": "2"})
    assert rotated.properties("AzureDevOpsConnection") != connection
    headers = connection["AuthParameters"]["InvocationHttpParameters"]["HeaderParameters"]
    assert {"Key": "X-TFS-FedAuthRedirect", "Value": "Suppress", "IsValueSecret": False} in headers

    (invoke,) = role_statements(r, "ApiDestinationRole")
    assert invoke["Effect"] == "Allow"
    assert as_list(invoke["Action"]) == ["events:InvokeApiDestination"]
    assert invoke["Resource"] == r.getatt("AzureDevOpsApiDestination", "Arn")
    (trust,) = statements(r.properties("ApiDestinationRole")["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}


@pytest.mark.parametrize("branch", ["main", "release/1.2"])
def test_input_transformer_renders_a_valid_runs_request(
    trigger: dict[str, Any], approved_event: dict[str, Any], branch: str
) -> None:
    transformer = rule_target(render(trigger, {**API_PARAMS, "SourceBranch": branch}))[
        "InputTransformer"
    ]
    body = json.loads(
        render_input_template(
            transformer["InputTemplate"], transformer["InputPathsMap"], approved_event
        )
    )
    detail = approved_event["detail"]
    assert isinstance(detail["ModelPackageVersion"], int)  # a number in the event...
    assert body == {
        "templateParameters": {
            "modelPackageArn": detail["ModelPackageArn"],
            "modelPackageGroupName": detail["ModelPackageGroupName"],
            "modelPackageVersion": str(detail["ModelPackageVersion"]),  # ...a string here
            "sourceEventId": approved_event["id"],
        },
        "resources": {"repositories": {"self": {"refName": f"refs/heads/{branch}"}}},
    }
    assert all(isinstance(v, str) for v in body["templateParameters"].values())


def test_input_transformer_does_not_escape(approved_event: dict[str, Any]) -> None:
    """The documented limit, shown with the renderer: a quote in a value breaks the JSON. The
    template only uses values that cannot hold one (ARN, group name pattern, event UUID)."""
    event = copy.deepcopy(approved_event)
    event["detail"]["ModelPackageGroupName"] = 'churn "xgb"'
    text = render_input_template('{"g": <g>}', {"g": "$.detail.ModelPackageGroupName"}, event)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_bus_policy_for_registry_accounts(trigger: dict[str, Any]) -> None:
    r = render(trigger, LAMBDA_ALL_OPTIONS)
    policy = r.properties("RegistryForwardingBusPolicy")
    assert policy["EventBusName"] == "default"
    stmt = policy["Statement"]
    assert stmt["Effect"] == "Allow"
    assert stmt["Principal"] == {"AWS": [REGISTRY_ACCOUNT, "444455556666"]}
    assert stmt["Action"] == "events:PutEvents"
    assert stmt["Resource"] == BUS_ARN
    assert stmt["Condition"] == {
        "ForAllValues:StringEquals": {
            "events:source": ["aws.sagemaker"],
            "events:detail-type": [DETAIL_TYPE],
        }
    }
    assert not render(trigger, LAMBDA_PARAMS).resource_exists("RegistryForwardingBusPolicy")


def test_outputs(trigger: dict[str, Any], forwarding: dict[str, Any]) -> None:
    outputs = trigger["Outputs"]
    assert {
        "RuleArn",
        "EventBusArn",
        "FunctionArn",
        "FunctionName",
        "IdempotencyTableName",
        "TriggerQueueUrl",
        "TriggerQueueArn",
        "DeadLetterQueueUrl",
        "DeadLetterQueueArn",
        "ApiDestinationArn",
    } <= set(outputs)
    lambda_outputs = ("FunctionArn", "FunctionName", "IdempotencyTableName")
    for name in (*lambda_outputs, "TriggerQueueUrl", "TriggerQueueArn"):
        assert outputs[name]["Condition"] == "UseLambda"
    assert outputs["ApiDestinationArn"]["Condition"] == "UseApiDestination"
    assert render(trigger, LAMBDA_PARAMS).eval(outputs["EventBusArn"]["Value"]) == BUS_ARN
    assert {"ForwardingRuleArn", "DeadLetterQueueUrl", "DeadLetterQueueArn"} <= set(
        forwarding["Outputs"]
    )


def patterns(tpl: dict[str, Any], rule: str, groups: str, params: dict[str, str]) -> Any:
    return render(tpl, {**params, "ModelPackageGroupNames": groups}).properties(rule)[
        "EventPattern"
    ]


@pytest.mark.parametrize("groups", ["", "churn-xgb,fraud-xgb"])
def test_event_pattern(trigger: dict[str, Any], forwarding: dict[str, Any], groups: str) -> None:
    # Lambda mode: every state change of a package, whatever its status (the function needs the
    # rejections, pending and description/ModelLifeCycle changes to tell new approvals).
    pattern = patterns(trigger, "ApprovalRule", groups, LAMBDA_PARAMS)
    expected: dict[str, Any] = {"source": ["aws.sagemaker"], "detail-type": [DETAIL_TYPE]}
    if groups:
        expected["detail"] = {"ModelPackageGroupName": groups.split(",")}
    assert pattern == expected
    # The registry account forwards exactly what the Lambda mode matches.
    assert patterns(forwarding, "ForwardingRule", groups, {"TargetEventBusArn": BUS_ARN}) == pattern
    # ApiDestination mode (no code, no de-duplication): approvals only.
    api_expected: dict[str, Any] = {
        "source": ["aws.sagemaker"],
        "detail-type": [DETAIL_TYPE],
        "detail": {"ModelApprovalStatus": ["Approved"]},
    }
    if groups:
        api_expected["detail"]["ModelPackageGroupName"] = groups.split(",")
    assert patterns(trigger, "ApprovalRule", groups, API_PARAMS) == api_expected


def test_forwarding_template(forwarding: dict[str, Any]) -> None:
    target_bus = f"arn:aws:events:{REGION}:999988887777:event-bus/default"
    r = render(forwarding, {"TargetEventBusArn": target_bus, "MaximumRetryAttempts": "9"})
    rule = r.properties("ForwardingRule")
    assert rule["EventBusName"] == "default"
    (target,) = rule["Targets"]
    assert target["Arn"] == target_bus
    assert target["RoleArn"] == r.getatt("ForwardingRole", "Arn")
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": "9",
        "MaximumEventAgeInSeconds": "3600",
    }
    assert target["DeadLetterConfig"] == {"Arn": r.getatt("DeadLetterQueue", "Arn")}
    (put,) = role_statements(r, "ForwardingRole")
    assert put["Effect"] == "Allow"
    assert as_list(put["Action"]) == ["events:PutEvents"]
    assert put["Resource"] == target_bus
    (trust,) = statements(r.properties("ForwardingRole")["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    allow, _deny = statements(r.properties("DeadLetterQueuePolicy")["PolicyDocument"])
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": r.getatt("ForwardingRule", "Arn")}}
    assert r.properties("DeadLetterQueue")["SqsManagedSseEnabled"] is True
    alarm = r.properties("DeadLetterQueueAlarm")
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Threshold"] == 0


def test_checkov_suppressions_have_reasons(
    trigger: dict[str, Any], forwarding: dict[str, Any]
) -> None:
    automation = load_template(REPO_ROOT / "infra" / "automation-account.yaml")
    skips = {}
    for label, tpl in [
        ("trigger", trigger),
        ("forwarding", forwarding),
        ("automation", automation),
    ]:
        for name, res in tpl["Resources"].items():
            for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert len(skip.get("comment", "")) > 40, (name, skip)
                skips.setdefault(f"{label}:{name}", []).append(skip["id"])
    assert skips == {
        "trigger:DeadLetterQueue": ["CKV_AWS_27"],
        "trigger:TriggerQueue": ["CKV_AWS_27"],
        # CKV_AWS_116 (function DLQ): the function is only invoked synchronously, by the queue.
        "trigger:TriggerFunction": ["CKV_AWS_117", "CKV_AWS_173", "CKV_AWS_116"],
        "trigger:TriggerLogGroup": ["CKV_AWS_158"],
        "trigger:IdempotencyTable": ["CKV_AWS_119"],
        "forwarding:DeadLetterQueue": ["CKV_AWS_27"],
        "automation:ArtifactsBucket": ["CKV_AWS_18"],
    }


# --------------------------------------------------------------------------- 3. moto

OTHER_DETAIL_TYPE = "SageMaker Model Building Pipeline Execution Status Change"
LIFECYCLE = {"Stage": "Staging", "StageStatus": "Approved", "StageDescription": "smoke tests"}
CASES = {
    # name: (changes to the example event,
    #        delivered in Lambda mode (all groups, listed groups),
    #        delivered in ApiDestination mode (all groups, listed groups))
    "approved": ({}, (True, True), (True, True)),
    "approved-second-listed-group": ({"group": "fraud-xgb"}, (True, True), (True, True)),
    "approved-unlisted-group": ({"group": "other-model"}, (True, False), (True, False)),
    "rejected": ({"status": "Rejected"}, (True, True), (False, False)),
    "pending": ({"status": "PendingManualApproval"}, (True, True), (False, False)),
    "rejected-unlisted-group": (
        {"status": "Rejected", "group": "other-model"},
        (True, False),
        (False, False),
    ),
    "lower-case-approved": ({"status": "approved"}, (True, True), (False, False)),
    # A ModelLifeCycle (or description) update of a package raises the same event type; for an
    # approved package it still says Approved, so ApiDestination mode starts another run.
    "lifecycle-change-of-approved": ({"lifecycle": "yes"}, (True, True), (True, True)),
    "lifecycle-change-of-pending": (
        {"lifecycle": "yes", "status": "PendingManualApproval"},
        (True, True),
        (False, False),
    ),
    "other-source": ({"source": "custom.sagemaker"}, (False, False), (False, False)),
    "other-detail-type": ({"detail-type": OTHER_DETAIL_TYPE}, (False, False), (False, False)),
}
LISTED_GROUPS = "churn-xgb,fraud-xgb"


def case_entry(event: dict[str, Any], index: int, changes: dict[str, str]) -> dict[str, Any]:
    """A PutEvents entry for the example event with ``changes``, tagged by its version number."""
    detail = copy.deepcopy(event["detail"])
    detail["ModelPackageVersion"] = index  # not part of the pattern: identifies the case
    if "group" in changes:
        detail["ModelPackageGroupName"] = changes["group"]
    if "status" in changes:
        detail["ModelApprovalStatus"] = changes["status"]
    if "lifecycle" in changes:
        detail["ModelLifeCycle"] = LIFECYCLE
    return {
        "Source": changes.get("source", event["source"]),
        "DetailType": changes.get("detail-type", event["detail-type"]),
        "Detail": json.dumps(detail),
        "Resources": event["resources"],
        "EventBusName": "default",
    }


def queue(sqs: Any, name: str, attributes: dict[str, str] | None = None) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes or {})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def lambda_mode_in_moto(
    sqs: Any, events: Any, r: Renderer, rule_name: str = "approvals"
) -> tuple[str, str]:
    """The Lambda-mode rule, its target and both queues, made in moto from the rendered
    template (moto's ARNs in place of the renderer's placeholders). Returns the URLs of
    TriggerQueue and DeadLetterQueue."""
    dlq = r.properties("DeadLetterQueue")
    dlq_url, dlq_arn = queue(
        sqs,
        "dead-letters",
        {
            "MessageRetentionPeriod": str(dlq["MessageRetentionPeriod"]),
            "SqsManagedSseEnabled": str(dlq["SqsManagedSseEnabled"]).lower(),
        },
    )
    props = r.properties("TriggerQueue")
    assert props["RedrivePolicy"]["deadLetterTargetArn"] == r.getatt("DeadLetterQueue", "Arn")
    url, arn = queue(
        sqs,
        "trigger",
        {
            "VisibilityTimeout": props["VisibilityTimeout"],
            "MessageRetentionPeriod": str(props["MessageRetentionPeriod"]),
            "SqsManagedSseEnabled": str(props["SqsManagedSseEnabled"]).lower(),
            "RedrivePolicy": json.dumps({**props["RedrivePolicy"], "deadLetterTargetArn": dlq_arn}),
        },
    )
    rule = r.properties("ApprovalRule")
    events.put_rule(
        Name=rule_name, EventPattern=json.dumps(rule["EventPattern"]), EventBusName="default"
    )
    target = copy.deepcopy(rule_target(r))
    assert target["Arn"] == r.getatt("TriggerQueue", "Arn")
    assert target["DeadLetterConfig"]["Arn"] == r.getatt("DeadLetterQueue", "Arn")
    target["Arn"] = arn
    target["DeadLetterConfig"]["Arn"] = dlq_arn
    target["RetryPolicy"] = {k: int(v) for k, v in target["RetryPolicy"].items()}
    events.put_targets(Rule=rule_name, Targets=[target])
    return url, dlq_url


MODES = {"lambda": LAMBDA_PARAMS, "api-destination": API_PARAMS}


@pytest.mark.parametrize("groups", ["", LISTED_GROUPS], ids=["all-groups", "listed-groups"])
@pytest.mark.parametrize("mode", MODES)
def test_rule_pattern_delivers_the_events_of_its_mode(
    trigger: dict[str, Any], approved_event: dict[str, Any], mode: str, groups: str
) -> None:
    """Lambda mode: every state change of a (listed) group reaches TriggerQueue, rejections and
    pending included. ApiDestination mode: approvals only (an SQS queue stands in for the API
    destination, which moto does not invoke). Neither: other sources or detail-types."""
    import boto3
    from moto import mock_aws

    r = render(trigger, {**MODES[mode], "ModelPackageGroupNames": groups})
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        if mode == "lambda":
            url, dlq_url = lambda_mode_in_moto(sqs, events, r)
        else:
            url, arn = queue(sqs, "matched")
            pattern = r.properties("ApprovalRule")["EventPattern"]
            events.put_rule(Name="approvals", EventPattern=json.dumps(pattern))
            events.put_targets(Rule="approvals", Targets=[{"Id": "sqs", "Arn": arn}])
            dlq_url = None
        entries = [
            case_entry(approved_event, i, changes)
            for i, (changes, _, _) in enumerate(CASES.values())
        ]
        for first in range(0, len(entries), 10):  # PutEvents takes at most 10 entries
            result = events.put_events(Entries=entries[first : first + 10])
            assert result["FailedEntryCount"] == 0
        delivered = drain(sqs, url)
        if dlq_url:
            assert drain(sqs, dlq_url) == []

    names = list(CASES)
    got = sorted(names[body["detail"]["ModelPackageVersion"]] for body in delivered)
    column = 1 if mode == "lambda" else 2
    expected = sorted(name for name, case in CASES.items() if case[column][1 if groups else 0])
    assert got == expected
    if mode == "lambda":
        assert {"rejected", "pending", "lifecycle-change-of-pending"} <= set(got)
    else:
        assert "rejected" not in got and "pending" not in got
    for body in delivered:
        assert body["source"] == "aws.sagemaker"
        assert body["detail-type"] == DETAIL_TYPE


def test_failed_attempts_end_in_the_dead_letter_queue_as_the_event(
    trigger: dict[str, Any], approved_event: dict[str, Any]
) -> None:
    """An event the function keeps failing on (it raises, the mapping deletes nothing) is
    received QueueMaxReceiveCount times, then SQS moves it to DeadLetterQueue with the event as
    body, which `smbridge trigger replay` reads. moto does not wait: each receive here makes
    the message visible again at once, where the real queue waits QueueVisibilityTimeout."""
    import boto3
    from moto import mock_aws

    from bridge.trigger.local import event_of_message

    r = render(trigger, LAMBDA_PARAMS)
    max_receives = int(r.properties("TriggerQueue")["RedrivePolicy"]["maxReceiveCount"])
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        url, dlq_url = lambda_mode_in_moto(sqs, events, r)
        events.put_events(Entries=[case_entry(approved_event, 4, {})])
        attempts: list[dict[str, Any]] = []
        while len(attempts) <= max_receives:
            messages = sqs.receive_message(
                QueueUrl=url,
                VisibilityTimeout=0,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            if not messages:
                break
            attempts.extend(messages)
        (dead,) = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]

    assert len(attempts) == max_receives
    assert attempts[-1]["Attributes"]["ApproximateReceiveCount"] == str(max_receives)
    assert {m["MessageId"] for m in attempts} == {dead["MessageId"]}
    event = event_of_message(dead["Body"])
    assert event == json.loads(attempts[0]["Body"])
    assert event["detail"]["ModelPackageArn"] == approved_event["detail"]["ModelPackageArn"]


def _transformer_through_moto(
    rule_pattern: Any, transformer: dict[str, Any], event: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Put ``event`` through a moto rule with a plain and a transformed SQS target; returns
    (the event as moto delivered it, the transformed body)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        plain_url, plain_arn = queue(sqs, "plain")
        body_url, body_arn = queue(sqs, "runs-request")
        events.put_rule(Name="approvals", EventPattern=json.dumps(rule_pattern))
        events.put_targets(
            Rule="approvals",
            Targets=[
                {"Id": "plain", "Arn": plain_arn},
                {"Id": "transformed", "Arn": body_arn, "InputTransformer": transformer},
            ],
        )
        events.put_events(Entries=[case_entry(event, event["detail"]["ModelPackageVersion"], {})])
        (delivered,) = drain(sqs, plain_url)
        (body,) = drain(sqs, body_url)
    return delivered, body


def test_input_transformer_paths_through_moto(
    trigger: dict[str, Any], approved_event: dict[str, Any]
) -> None:
    """moto fills quoted placeholders like EventBridge (raw text), so the all-quoted equivalent
    of the template checks the InputPathsMap against moto's JSONPath on a real delivery, and the
    template itself renders to the same document."""
    r = render(trigger, API_PARAMS)
    transformer = rule_target(r)["InputTransformer"]
    quoted = {**transformer, "InputTemplate": quote_placeholders(transformer["InputTemplate"])}
    assert quoted["InputTemplate"] != transformer["InputTemplate"]
    delivered, body = _transformer_through_moto(
        r.properties("ApprovalRule")["EventPattern"], quoted, approved_event
    )
    paths = transformer["InputPathsMap"]
    assert body == json.loads(render_input_template(quoted["InputTemplate"], paths, delivered))
    assert body == json.loads(render_input_template(transformer["InputTemplate"], paths, delivered))
    assert body["templateParameters"] == {
        "modelPackageArn": approved_event["detail"]["ModelPackageArn"],
        "modelPackageGroupName": "churn-xgb",
        "modelPackageVersion": "4",
        "sourceEventId": delivered["id"],
    }


@pytest.mark.xfail(
    raises=json.JSONDecodeError,
    strict=True,
    reason="moto inserts a string without quotes for an unquoted placeholder (EventBridge adds "
    "them), so it produces invalid JSON; if this passes, moto changed: keep this test, drop the "
    "xfail",
)
def test_input_transformer_template_through_moto(
    trigger: dict[str, Any], approved_event: dict[str, Any]
) -> None:
    r = render(trigger, API_PARAMS)
    transformer = rule_target(r)["InputTransformer"]
    delivered, body = _transformer_through_moto(
        r.properties("ApprovalRule")["EventPattern"], transformer, approved_event
    )
    expected = render_input_template(
        transformer["InputTemplate"], transformer["InputPathsMap"], delivered
    )
    assert body == json.loads(expected)


def test_registry_account_forwards_state_changes_to_the_trigger_bus(
    trigger: dict[str, Any], forwarding: dict[str, Any], approved_event: dict[str, Any]
) -> None:
    """Two moto accounts: the registry's forwarding rule puts every model package state change
    (an approval and a rejection here, not another detail-type) on the trigger account's default
    bus, where the Lambda-mode rule delivers them to its queue. moto does not enforce the bus
    policy or the forwarding role."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        trigger_events = boto3.client("events", region_name=REGION)
        url, _dlq_url = lambda_mode_in_moto(sqs, trigger_events, render(trigger, LAMBDA_PARAMS))

        creds = boto3.client("sts", region_name=REGION).assume_role(
            RoleArn=f"arn:aws:iam::{REGISTRY_ACCOUNT}:role/registry-admin",
            RoleSessionName="registry",
        )["Credentials"]
        registry_events = boto3.client(
            "events",
            region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        fr = render(forwarding, {"TargetEventBusArn": BUS_ARN})
        rule = fr.properties("ForwardingRule")
        forward_arn = registry_events.put_rule(
            Name="forward-approvals", EventPattern=json.dumps(rule["EventPattern"])
        )["RuleArn"]
        assert f":{REGISTRY_ACCOUNT}:rule/" in forward_arn
        (target,) = rule["Targets"]
        registry_events.put_targets(
            Rule="forward-approvals",
            Targets=[
                {
                    "Id": target["Id"],
                    "Arn": target["Arn"],
                    "RoleArn": f"arn:aws:iam::{REGISTRY_ACCOUNT}:role/forwarding",
                }
            ],
        )
        registry_events.put_events(
            Entries=[
                case_entry(approved_event, 0, {}),
                case_entry(approved_event, 1, {"status": "Rejected"}),
                case_entry(approved_event, 2, {"detail-type": OTHER_DETAIL_TYPE}),
            ]
        )
        delivered = drain(sqs, url)

    assert sorted(body["detail"]["ModelPackageVersion"] for body in delivered) == [0, 1]
    assert delivered[0]["detail"]["ModelPackageArn"] == approved_event["detail"]["ModelPackageArn"]
