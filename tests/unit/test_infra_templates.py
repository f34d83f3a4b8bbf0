"""CloudFormation templates under infra/: cfn-lint, security properties, and a moto deployment.

Three layers, from cheapest to most realistic:

1. cfn-lint (its Python API) on every template: no findings at all.
2. Structural assertions on ``infra/automation-account.yaml`` parsed with a YAML loader that
   understands the short intrinsic tags (!Ref, !Sub, !GetAtt, ...). Policies that CloudFormation
   builds from parameters (the CI role's trust policy is an Fn::Sub JSON string, because the OIDC
   condition keys depend on the issuer) are rendered with a small intrinsic-function evaluator for
   several parameter sets, then parsed as JSON and checked.
3. A real ``CreateStack`` against moto's CloudFormation. moto has no CloudFormation support for
   ``AWS::SageMaker::ModelPackageGroup``, ``AWS::S3::BucketPolicy`` and ``AWS::IAM::OIDCProvider``
   (it only warns and skips them, then fails on outputs that reference them), so the test removes
   those resources (and points outputs that read them at placeholders) and deploys the rest; the
   OIDC provider is created through moto's IAM API instead and passed in as
   ExistingOidcProviderArn, which is a real mode of the template. moto's S3 model also ignores
   VersioningConfiguration, PublicAccessBlockConfiguration, LifecycleConfiguration,
   OwnershipControls and BucketKeyEnabled when it creates a bucket from a template, so those are
   covered by layer 2 only. The deployment runs without and with stage accounts
   (DeployAccountIds); moto's SageMaker API has no model package group policies either, so the
   group policy is covered by layer 2 only.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.sandbox.cfn import CfnLoader, Renderer, load_template  # noqa: F401 (imported by other tests)

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
AUTOMATION = INFRA_DIR / "automation-account.yaml"
TEMPLATES = sorted(p for p in INFRA_DIR.iterdir() if p.suffix in (".yaml", ".yml", ".json"))

ACCOUNT = "123456789012"
REGION = "eu-west-1"
ORG_ID = "11111111-2222-3333-4444-555555555555"
TENANT_ID = "99999999-8888-7777-6666-555555555555"
SUBJECTS = ["sc://contoso/ml-platform/smbridge-aws", "sc://contoso/ml-platform/smbridge-aws-dr"]
AUDIENCE = "api://AzureADTokenExchange"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(AUTOMATION)


BASE_PARAMS = {"AzureDevOpsOrganizationId": ORG_ID, "AllowedSubjects": ",".join(SUBJECTS)}
EXISTING_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/vstoken.dev.azure.com/{ORG_ID}"
ENTRA_SUBJECT = f"/eid1/c/pub/t/AAAA/a/BBBB/sc/{ORG_ID}/00000000-0000-0000-0000-000000000001"

SCENARIOS = {
    # name: (parameters, expected provider host/path, provider created?, subjects)
    "azure-devops-issuer-from-org-id": (
        BASE_PARAMS,
        f"vstoken.dev.azure.com/{ORG_ID}",
        True,
        SUBJECTS,
    ),
    "entra-issuer": (
        {
            "OidcIssuerUrl": f"https://login.microsoftonline.com/{TENANT_ID}/v2.0",
            "AllowedSubjects": ENTRA_SUBJECT,
        },
        f"login.microsoftonline.com/{TENANT_ID}/v2.0",
        True,
        [ENTRA_SUBJECT],
    ),
    "existing-provider": (
        {**BASE_PARAMS, "ExistingOidcProviderArn": EXISTING_ARN},
        f"vstoken.dev.azure.com/{ORG_ID}",
        False,
        SUBJECTS,
    ),
}


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    stmts = policy["Statement"]
    return stmts if isinstance(stmts, list) else [stmts]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def ci_policy(r: Renderer) -> dict[str, Any]:
    (policy,) = r.properties("CiRole")["Policies"]
    return policy["PolicyDocument"]


# --------------------------------------------------------------------------- 1. cfn-lint


@pytest.mark.slow
@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_reports_nothing(path: Path) -> None:
    from cfnlint.api import lint_file

    matches = lint_file(path)
    assert not matches, "\n".join(str(m) for m in matches)


@pytest.mark.slow
def test_cfn_lint_check_can_fail() -> None:
    """The lint test above is only worth something if cfn-lint flags a broken template."""
    from cfnlint.api import lint

    broken = AUTOMATION.read_text().replace("EnableKeyRotation: true", "EnableKeyRotaton: true")
    assert any(m.rule.id.startswith("E") for m in lint(broken))


def test_infra_dir_has_templates() -> None:
    assert AUTOMATION in TEMPLATES


# --------------------------------------------------------------------------- 2. structure


def test_bucket_encrypted_with_rotating_customer_managed_key(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    key = resources["ArtifactsKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    bucket = resources["ArtifactsBucket"]["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    default = rule["ServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "aws:kms"
    assert default["KMSMasterKeyID"] == {"Fn::GetAtt": ["ArtifactsKey", "Arn"]}
    assert rule["BucketKeyEnabled"] is True


def test_bucket_versioned_private_with_noncurrent_lifecycle(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ArtifactsBucket"]
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    rules = props["LifecycleConfiguration"]["Rules"]
    noncurrent = [
        r for r in rules if r["Status"] == "Enabled" and "NoncurrentVersionExpiration" in r
    ]
    assert noncurrent, "no enabled lifecycle rule expires noncurrent versions"
    assert bucket["DeletionPolicy"] == "Retain"


def test_bucket_policy_is_tls_only(template: dict[str, Any]) -> None:
    r = Renderer(template, BASE_PARAMS)
    policy = r.properties("ArtifactsBucketPolicy")
    assert template["Resources"]["ArtifactsBucketPolicy"]["Properties"]["Bucket"] == {
        "Ref": "ArtifactsBucket"
    }
    bucket_arn = r.getatt("ArtifactsBucket", "Arn")
    tls_denies = [
        s
        for s in statements(policy["PolicyDocument"])
        if s["Effect"] == "Deny"
        and str(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower()
        == "false"
    ]
    assert len(tls_denies) == 1
    (deny,) = tls_denies
    assert deny["Principal"] == "*"
    assert as_list(deny["Action"]) == ["s3:*"]
    assert sorted(as_list(deny["Resource"])) == sorted([bucket_arn, f"{bucket_arn}/*"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_ci_trust_policy_checks_aud_and_sub(template: dict[str, Any], scenario: str) -> None:
    params, host_path, creates_provider, subjects = SCENARIOS[scenario]
    r = Renderer(template, params)
    doc = r.properties("CiRole")["AssumeRolePolicyDocument"]
    assert isinstance(doc, str), "trust policy is expected as an Fn::Sub JSON string"
    trust = json.loads(doc)
    (stmt,) = statements(trust)
    assert stmt["Effect"] == "Allow"
    assert stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
    provider_arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host_path}"
    assert stmt["Principal"] == {"Federated": provider_arn}
    # StringEquals only: a "*" in a subject must stay a literal character.
    assert set(stmt["Condition"]) == {"StringEquals"}
    assert stmt["Condition"]["StringEquals"] == {
        f"{host_path}:aud": AUDIENCE,
        f"{host_path}:sub": subjects,
    }
    assert r.resource_exists("AzureDevOpsOidcProvider") is creates_provider
    assert r.eval(template["Outputs"]["OidcProviderArn"]["Value"]) == provider_arn
    if creates_provider:
        provider = r.properties("AzureDevOpsOidcProvider")
        assert provider["Url"] == f"https://{host_path}"
        assert provider["ClientIdList"] == [AUDIENCE]
        assert "ThumbprintList" not in provider  # optional: IAM uses its trusted root CAs


def test_ci_role_session_duration_is_a_parameter(template: dict[str, Any]) -> None:
    props = template["Resources"]["CiRole"]["Properties"]
    assert props["MaxSessionDuration"] == {"Ref": "CiMaxSessionDuration"}
    spec = template["Parameters"]["CiMaxSessionDuration"]
    assert (spec["MinValue"], spec["MaxValue"]) == (3600, 43200)
    r = Renderer(template, {**BASE_PARAMS, "CiMaxSessionDuration": "21600"})
    assert r.properties("CiRole")["MaxSessionDuration"] == "21600"


def test_issuer_is_a_parameter_defaulting_to_azure_devops(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["OidcIssuerUrl"]["Default"] == ""
    assert params["OidcAudience"]["Default"] == AUDIENCE
    assert "Default" not in params["AllowedSubjects"]
    url = template["Resources"]["AzureDevOpsOidcProvider"]["Properties"]["Url"]
    assert url["Fn::If"][1] == {
        "Fn::Sub": "https://vstoken.dev.azure.com/${AzureDevOpsOrganizationId}"
    }


def test_ci_passrole_only_execution_role_to_sagemaker(template: dict[str, Any]) -> None:
    r = Renderer(template, BASE_PARAMS)
    execution_role_arn = r.getatt("SageMakerExecutionRole", "Arn")
    passrole = [s for s in statements(ci_policy(r)) if "iam:PassRole" in as_list(s["Action"])]
    assert len(passrole) == 1
    (stmt,) = passrole
    assert stmt["Effect"] == "Allow"
    assert as_list(stmt["Action"]) == ["iam:PassRole"]
    assert as_list(stmt["Resource"]) == [execution_role_arn]
    assert stmt["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_ci_permissions_are_scoped(template: dict[str, Any]) -> None:
    r = Renderer(template, BASE_PARAMS)
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    prefix = template["Parameters"]["NamePrefix"]["Default"]
    group = template["Parameters"]["ModelPackageGroupName"]["Default"]
    by_sid = {s["Sid"]: s for s in statements(ci_policy(r))}
    for stmt in by_sid.values():
        for action in as_list(stmt["Action"]):
            assert action != "*" and not action.endswith(":*"), action
        if as_list(stmt["Resource"]) == ["*"]:
            # only actions without resource-level permissions may use "*"
            assert as_list(stmt["Action"]) == ["sagemaker:ListModelPackages"]
    assert by_sid["ManagePipelines"]["Resource"] == f"{arn}:pipeline/{prefix}-*"
    assert (
        by_sid["ManagePipelineExecutions"]["Resource"] == f"{arn}:pipeline/{prefix}-*/execution/*"
    )
    assert {
        "sagemaker:StartPipelineExecution",
        "sagemaker:CreatePipeline",
        "sagemaker:AddTags",
    } <= set(by_sid["ManagePipelines"]["Action"])
    assert {"sagemaker:StopPipelineExecution", "sagemaker:ListPipelineExecutionSteps"} <= set(
        by_sid["ManagePipelineExecutions"]["Action"]
    )
    assert sorted(by_sid["ReadModelPackages"]["Resource"]) == sorted(
        [f"{arn}:model-package-group/{group}", f"{arn}:model-package/{group}/*"]
    )
    bucket_arn = f"arn:aws:s3:::{prefix}-artifacts-{ACCOUNT}-{REGION}"
    assert r.getatt("ArtifactsBucket", "Arn") == bucket_arn
    # default: keys starting with the pipeline-name prefix (smbridge's default code prefix)
    assert by_sid["CodeObjects"]["Resource"] == f"{bucket_arn}/{prefix}-*"
    with_prefix = Renderer(template, {**BASE_PARAMS, "CodePrefix": "ci/code"})
    by_sid_prefixed = {s["Sid"]: s for s in statements(ci_policy(with_prefix))}
    assert by_sid_prefixed["CodeObjects"]["Resource"] == f"{bucket_arn}/ci/code/*"
    assert by_sid["ArtifactsKeyViaS3"]["Resource"] == r.getatt("ArtifactsKey", "Arn")


def test_execution_role_trusts_sagemaker_and_passes_only_itself(template: dict[str, Any]) -> None:
    r = Renderer(template, BASE_PARAMS)
    trust = r.properties("SageMakerExecutionRole")["AssumeRolePolicyDocument"]
    (stmt,) = statements(trust)
    assert stmt["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert stmt["Action"] == "sts:AssumeRole"
    policy = r.properties("SageMakerExecutionPolicy")
    prefix = template["Parameters"]["NamePrefix"]["Default"]
    assert policy["Roles"] == [f"{prefix}-sagemaker-execution"]
    stmts = statements(policy["PolicyDocument"])
    (passrole,) = [s for s in stmts if "iam:PassRole" in as_list(s["Action"])]
    assert passrole["Resource"] == r.getatt("SageMakerExecutionRole", "Arn")
    assert passrole["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    unscoped = {a for s in stmts if as_list(s["Resource"]) == ["*"] for a in as_list(s["Action"])}
    assert unscoped == {
        "sagemaker:ListModelPackages",
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
    }
    sagemaker_resources = [
        res
        for s in stmts
        if any(a.startswith("sagemaker:") for a in as_list(s["Action"]))
        for res in as_list(s["Resource"])
        if res != "*"
    ]
    group = template["Parameters"]["ModelPackageGroupName"]["Default"]
    for res in sagemaker_resources:
        name = res.split(":", 5)[5].split("/", 1)[1]
        assert name.startswith(("pipelines-", f"{prefix}-", group)), res


def test_model_package_group_name_is_a_parameter(template: dict[str, Any]) -> None:
    group = template["Resources"]["ModelPackageGroup"]
    assert group["Type"] == "AWS::SageMaker::ModelPackageGroup"
    assert group["Properties"]["ModelPackageGroupName"] == {"Ref": "ModelPackageGroupName"}


def test_outputs(template: dict[str, Any]) -> None:
    assert {
        "ArtifactsBucketName",
        "ArtifactsKeyArn",
        "SageMakerExecutionRoleArn",
        "CiRoleArn",
        "ModelPackageGroupName",
        "ModelPackageGroupArn",
        "OidcProviderArn",
    } <= set(template["Outputs"])


# --------------------------------------------------------------------------- 2b. stage accounts

DEPLOY_ACCOUNTS = ["222222222222", "333333333333"]
DEPLOY_PARAMS = {**BASE_PARAMS, "DeployAccountIds": ",".join(DEPLOY_ACCOUNTS)}
DEPLOY_ROLE_NAME = "smbridge-deploy"
STAGE_SIDS = {
    "ModelPackageGroup": ["StageAccountsReadGroup", "StageAccountsUseModelPackages"],
    "ArtifactsBucketPolicy": ["StageAccountsReadModelArtifacts"],
    "ArtifactsKey": ["StageAccountsDecryptModelArtifacts"],
}


def resource_policies(r: Renderer) -> dict[str, dict[str, Any]]:
    """The resource policies of the template (rendered): group, bucket and key policy."""
    policies = {
        "ArtifactsBucketPolicy": r.properties("ArtifactsBucketPolicy")["PolicyDocument"],
        "ArtifactsKey": r.properties("ArtifactsKey")["KeyPolicy"],
    }
    group = r.properties("ModelPackageGroup")
    if "ModelPackageGroupPolicy" in group:
        policies["ModelPackageGroup"] = group["ModelPackageGroupPolicy"]
    return policies


def ci_role_statements(r: Renderer) -> list[dict[str, Any]]:
    """Every identity-policy statement of the CI role: its inline policy and attached policies."""
    stmts = statements(ci_policy(r))
    for name, res in r.tpl["Resources"].items():
        if res["Type"] == "AWS::IAM::Policy" and r.resource_exists(name):
            props = r.properties(name)
            if r.ref("CiRole") in props["Roles"]:
                stmts += statements(props["PolicyDocument"])
    return stmts


def account_ids(rendered: Any) -> set[str]:
    """All account ids (12 digits standing alone, not in a GUID) in a rendered fragment."""
    return set(re.findall(r"(?<![0-9A-Za-z-])[0-9]{12}(?![0-9A-Za-z-])", json.dumps(rendered)))


def rendered_resources(r: Renderer) -> dict[str, Any]:
    return {n: r.properties(n) for n in r.tpl["Resources"] if r.resource_exists(n)}


def test_deploy_parameters(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    accounts = params["DeployAccountIds"]
    assert accounts["Type"] == "CommaDelimitedList"
    assert accounts["Default"] == ""
    # CloudFormation matches AllowedPattern against each member of a CommaDelimitedList.
    for ok in ["", "222222222222"]:
        assert re.fullmatch(accounts["AllowedPattern"], ok), ok
    for bad in ["*", "22222222222", "2222222222222", " 222222222222", "arn:aws:iam::*:root"]:
        assert not re.fullmatch(accounts["AllowedPattern"], bad), bad
    role = params["DeployRoleName"]
    assert role["Type"] == "String"
    # deploy-role.yaml names the role "<NamePrefix>-deploy"; both default NamePrefix to smbridge.
    assert role["Default"] == DEPLOY_ROLE_NAME == f"{params['NamePrefix']['Default']}-deploy"
    assert re.fullmatch(role["AllowedPattern"], "smbridge-staging-deploy")
    for bad in ["", "*", "smbridge-*", "path/smbridge-deploy", "a" * 65]:
        assert not re.fullmatch(role["AllowedPattern"], bad), bad


def test_no_stage_accounts_no_cross_account_statements(template: dict[str, Any]) -> None:
    r = Renderer(template, BASE_PARAMS)
    assert r.params["DeployAccountIds"] == [""]
    assert r.condition("HasDeployAccounts") is False
    # No account other than this one appears anywhere in what the stack would create.
    assert account_ids(rendered_resources(r)) == {ACCOUNT}
    policies = resource_policies(r)
    assert "ModelPackageGroup" not in policies  # no ModelPackageGroupPolicy property at all
    assert [s["Sid"] for s in statements(policies["ArtifactsBucketPolicy"])] == [
        "DenyInsecureTransport",
        "DenyOutdatedTls",
    ]
    assert [s["Sid"] for s in statements(policies["ArtifactsKey"])] == ["EnableIamPolicies"]
    assert not r.resource_exists("CiStageDeployPolicy")
    assert not [s for s in ci_role_statements(r) if "sts:AssumeRole" in as_list(s["Action"])]


@pytest.mark.parametrize(
    "accounts", [DEPLOY_ACCOUNTS, DEPLOY_ACCOUNTS[:1]], ids=["two-accounts", "one-account"]
)
def test_stage_accounts_get_exactly_their_statements(
    template: dict[str, Any], accounts: list[str]
) -> None:
    r = Renderer(template, {**BASE_PARAMS, "DeployAccountIds": ",".join(accounts)})
    assert r.condition("HasDeployAccounts") is True
    # Nothing but this account and the stage accounts, anywhere.
    assert account_ids(rendered_resources(r)) == {ACCOUNT, *accounts}
    policies = resource_policies(r)
    assert set(policies) == set(STAGE_SIDS)
    for name, policy in policies.items():
        stage = [s for s in statements(policy) if s["Sid"].startswith("StageAccounts")]
        assert [s["Sid"] for s in stage] == STAGE_SIDS[name], name
        for stmt in statements(policy):
            if stmt["Effect"] == "Allow":
                # No "*" principal in any Allow (the Deny statements of the bucket are for
                # everyone on purpose): the stage accounts, or this account's root.
                assert stmt["Principal"] != "*" and "*" not in as_list(stmt["Principal"]["AWS"])
        for stmt in stage:
            assert stmt["Effect"] == "Allow"
            assert stmt["Principal"] == {"AWS": accounts}, (name, stmt["Sid"])

    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    group = template["Parameters"]["ModelPackageGroupName"]["Default"]
    read_group, use_packages = statements(policies["ModelPackageGroup"])
    assert as_list(read_group["Action"]) == ["sagemaker:DescribeModelPackageGroup"]
    assert read_group["Resource"] == f"{arn}:model-package-group/{group}"
    assert sorted(as_list(use_packages["Action"])) == [
        "sagemaker:CreateModel",
        "sagemaker:DescribeModelPackage",
        "sagemaker:ListModelPackages",
    ]
    assert use_packages["Resource"] == f"{arn}:model-package/{group}/*"

    (read_objects,) = [
        s for s in statements(policies["ArtifactsBucketPolicy"]) if s["Effect"] == "Allow"
    ]
    assert as_list(read_objects["Action"]) == ["s3:GetObject"]
    assert read_objects["Resource"] == f"{r.getatt('ArtifactsBucket', 'Arn')}/*"
    assert "Condition" not in read_objects

    _, decrypt = statements(policies["ArtifactsKey"])
    assert sorted(as_list(decrypt["Action"])) == ["kms:Decrypt", "kms:DescribeKey"]
    assert decrypt["Resource"] == "*"  # in a key policy: this key
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    }

    assume = [s for s in ci_role_statements(r) if "sts:AssumeRole" in as_list(s["Action"])]
    assert len(assume) == 1
    (stmt,) = assume
    assert stmt["Effect"] == "Allow"
    assert as_list(stmt["Action"]) == ["sts:AssumeRole"]
    # The account segment is a wildcard only because the exact-match condition pins it to the
    # stage accounts (see the template); the role name is exact.
    assert stmt["Resource"] == f"arn:aws:iam::*:role/{DEPLOY_ROLE_NAME}"
    assert stmt["Condition"] == {"StringEquals": {"aws:ResourceAccount": accounts}}
    # The rest of the CI role's permissions do not change with the stage accounts.
    without = statements(ci_policy(Renderer(template, BASE_PARAMS)))
    assert statements(ci_policy(r)) == without


def test_deploy_role_name_is_a_parameter(template: dict[str, Any]) -> None:
    r = Renderer(template, {**DEPLOY_PARAMS, "DeployRoleName": "ml-deploy"})
    (assume,) = [s for s in ci_role_statements(r) if "sts:AssumeRole" in as_list(s["Action"])]
    assert assume["Resource"] == "arn:aws:iam::*:role/ml-deploy"
    assert assume["Condition"] == {"StringEquals": {"aws:ResourceAccount": DEPLOY_ACCOUNTS}}
    stage_policy = template["Resources"]["CiStageDeployPolicy"]
    assert stage_policy["Condition"] == "HasDeployAccounts"
    assert stage_policy["Properties"]["Roles"] == [{"Ref": "CiRole"}]


# --------------------------------------------------------------------------- 3. moto

# Resource types moto's CloudFormation cannot create (see the module docstring).
MOTO_UNSUPPORTED = {
    "AWS::SageMaker::ModelPackageGroup",
    "AWS::S3::BucketPolicy",
    "AWS::IAM::OIDCProvider",
}


def references(node: Any, name: str) -> bool:
    """Whether an (unrendered) template fragment reads resource ``name``."""
    if isinstance(node, dict):
        if node.get("Ref") == name:
            return True
        getatt = node.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt[:1] == [name]:
            return True
        return any(references(v, name) for v in node.values())
    if isinstance(node, list):
        return any(references(v, name) for v in node)
    # Fn::Sub strings: ${Name} or ${Name.Attribute}
    return isinstance(node, str) and (f"${{{name}}}" in node or f"${{{name}." in node)


def _moto_compatible(tpl: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Copy of the template without the resources moto cannot create; returns their names."""
    from moto.cloudformation.parsing import get_model_map

    supported = get_model_map()
    tpl = copy.deepcopy(tpl)
    dropped = {n for n, r in tpl["Resources"].items() if r["Type"] not in supported}
    assert {tpl["Resources"][n]["Type"] for n in dropped} <= MOTO_UNSUPPORTED
    for name in dropped:
        del tpl["Resources"][name]
        for out in tpl["Outputs"].values():
            # The OIDC provider output only reads the resource under CreateOidcProvider, which
            # is false in the moto deployment (the provider is passed in).
            if name != "AzureDevOpsOidcProvider" and references(out["Value"], name):
                out["Value"] = f"not-created-by-moto:{name}"
    return tpl, dropped


@pytest.mark.slow
@pytest.mark.parametrize(
    "deploy_accounts", [[], DEPLOY_ACCOUNTS], ids=["no-stage-accounts", "two-stage-accounts"]
)
def test_moto_creates_the_stack(template: dict[str, Any], deploy_accounts: list[str]) -> None:
    import boto3
    from moto import mock_aws

    moto_template, dropped = _moto_compatible(template)
    assert dropped == {"ModelPackageGroup", "ArtifactsBucketPolicy", "AzureDevOpsOidcProvider"}
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        provider_arn = iam.create_open_id_connect_provider(
            Url=f"https://vstoken.dev.azure.com/{ORG_ID}",
            ClientIDList=[AUDIENCE],
            ThumbprintList=["0" * 40],
        )["OpenIDConnectProviderArn"]
        params = {
            "ExistingOidcProviderArn": provider_arn,
            "AllowedSubjects": ",".join(SUBJECTS),
            "CiMaxSessionDuration": "7200",
            "DeployAccountIds": ",".join(deploy_accounts),
        }
        cfn = boto3.client("cloudformation", region_name=REGION)
        cfn.create_stack(
            StackName="smbridge-automation",
            TemplateBody=json.dumps(moto_template),
            Capabilities=["CAPABILITY_NAMED_IAM"],
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        )
        stack = cfn.describe_stacks(StackName="smbridge-automation")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        assert outputs["OidcProviderArn"] == provider_arn

        s3 = boto3.client("s3", region_name=REGION)
        (rule,) = s3.get_bucket_encryption(Bucket=outputs["ArtifactsBucketName"])[
            "ServerSideEncryptionConfiguration"
        ]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": outputs["ArtifactsKeyArn"],
        }
        kms = boto3.client("kms", region_name=REGION)
        assert kms.get_key_rotation_status(KeyId=outputs["ArtifactsKeyArn"])["KeyRotationEnabled"]

        ci_role_name = outputs["CiRoleArn"].rsplit("/", 1)[1]
        ci_role = iam.get_role(RoleName=ci_role_name)["Role"]
        assert ci_role["MaxSessionDuration"] == 7200
        (trust,) = statements(ci_role["AssumeRolePolicyDocument"])
        host_path = f"vstoken.dev.azure.com/{ORG_ID}"
        assert trust["Principal"] == {"Federated": provider_arn}
        assert trust["Condition"] == {
            "StringEquals": {f"{host_path}:aud": AUDIENCE, f"{host_path}:sub": SUBJECTS}
        }
        ci_policy_names = iam.list_role_policies(RoleName=ci_role_name)["PolicyNames"]
        stage_policy = {"smbridge-ci-stage-deploy"} if deploy_accounts else set()
        assert set(ci_policy_names) == {"smbridge-ci"} | stage_policy

        def role_policy(role: str, name: str) -> dict[str, Any]:
            doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            if isinstance(doc, str):
                # moto stores an inline policy that came from a template as repr() of the dict.
                doc = ast.literal_eval(doc)
            return doc

        ci_policy_doc = role_policy(ci_role_name, "smbridge-ci")
        (passrole,) = [s for s in statements(ci_policy_doc) if s["Action"] == "iam:PassRole"]
        assert passrole["Resource"] == outputs["SageMakerExecutionRoleArn"]
        if deploy_accounts:
            (assume,) = statements(role_policy(ci_role_name, "smbridge-ci-stage-deploy"))
            assert assume["Action"] == "sts:AssumeRole"
            assert assume["Resource"] == f"arn:aws:iam::*:role/{DEPLOY_ROLE_NAME}"
            assert assume["Condition"] == {"StringEquals": {"aws:ResourceAccount": deploy_accounts}}
        key_policy = kms.get_key_policy(KeyId=outputs["ArtifactsKeyArn"], PolicyName="default")[
            "Policy"
        ]
        if isinstance(key_policy, str):
            key_policy = json.loads(key_policy)  # moto returns a template's key policy as is
        # moto keeps the null an Fn::If with AWS::NoValue leaves in a list.
        key_stmts = {s["Sid"]: s for s in statements(key_policy) if s}
        assert list(key_stmts) == ["EnableIamPolicies"] + (
            ["StageAccountsDecryptModelArtifacts"] if deploy_accounts else []
        )
        if deploy_accounts:
            decrypt = key_stmts["StageAccountsDecryptModelArtifacts"]
            assert decrypt["Principal"] == {"AWS": deploy_accounts}

        # The resources moto's CloudFormation skips, created through moto's APIs from the
        # template's own (rendered) properties instead.
        rendered = Renderer(template, params)
        assert rendered.ref("ArtifactsBucket") == outputs["ArtifactsBucketName"]
        bucket_policy = rendered.properties("ArtifactsBucketPolicy")["PolicyDocument"]
        s3.put_bucket_policy(
            Bucket=outputs["ArtifactsBucketName"], Policy=json.dumps(bucket_policy)
        )
        stored = json.loads(s3.get_bucket_policy(Bucket=outputs["ArtifactsBucketName"])["Policy"])
        assert stored == bucket_policy
        if deploy_accounts:
            (read,) = [s for s in statements(stored) if s["Effect"] == "Allow"]
            assert read["Principal"] == {"AWS": deploy_accounts}
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        group_props = rendered.properties("ModelPackageGroup")
        # CreateModelPackageGroup takes no policy (PutModelPackageGroupPolicy does, which moto
        # does not implement): the policy is checked in layer 2.
        group_policy = group_props.pop("ModelPackageGroupPolicy", None)
        assert (group_policy is not None) == bool(deploy_accounts)
        group = sagemaker.create_model_package_group(**group_props)
        assert group["ModelPackageGroupArn"].endswith(
            f":model-package-group/{outputs['ModelPackageGroupName']}"
        )

        exec_role_name = outputs["SageMakerExecutionRoleArn"].rsplit("/", 1)[1]
        assert iam.list_role_policies(RoleName=exec_role_name)["PolicyNames"] == [
            "smbridge-sagemaker-execution"
        ]
