"""Tags we write fit SageMaker's and CloudFormation's models.

botocore's SageMaker model: Tag.Key 1-128 and Tag.Value 0-256 characters matching
``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*``; CloudFormation's: Key 1-128, Value 1-256 (and stack tags
reach the SageMaker resources the stack creates). Azure DevOps names are freer (a second
pipeline of a repository is "<repo> (1)"). Every request in the tests is held to botocore's
model (tests/conftest.py), so the upsert below would fail without the cleaning.
"""

from __future__ import annotations

import io
import random

import pytest

from bridge.aws.tags import MAX_VALUE, clean_tags, tag_list
from bridge.core.agent import AgentRun
from bridge.core.output import Reporter
from bridge.pipeline.operations import upsert_pipeline
from tests.support.strict_botocore import validate_request
from tests.unit.test_upsert import aws, definition, params  # noqa: F401 (fixture)

AZURE_DEVOPS_NAMES = [
    "churn-model (1)",
    "R&D models",
    "team#7, nightly",
    "refs/heads/feature/ünïcode",
    "quote\"and'apostrophe",
    "tab\tnew\nline",
    "$(System.AccessToken) ${{ parameters.x }} $[ variables.y ]",
    "x" * 400,
    "",
    "   ",
]


@pytest.mark.parametrize("name", AZURE_DEVOPS_NAMES)
def test_cleaned_tags_fit_both_models(name):
    tags = tag_list({"azdo:definition": name, "smbridge:spec-sha256": "a" * 64})
    validate_request(
        "sagemaker",
        "AddTags",
        {"ResourceArn": "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p", "Tags": tags},
    )
    validate_request(
        "cloudformation", "CreateChangeSet", {"StackName": "s", "ChangeSetName": "c", "Tags": tags}
    )


def test_random_text_always_fits():
    rng = random.Random(5)
    alphabet = [chr(c) for c in range(0x20, 0x250)] + ["\u2028", "\u200b", "\U0001f600", "\x00"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        tags = tag_list({"k": text})
        validate_request(
            "sagemaker",
            "AddTags",
            {"ResourceArn": "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p", "Tags": tags},
        )


def test_readable_and_bounded():
    assert clean_tags({"azdo:definition": "churn-model (1)"}) == {
        "azdo:definition": "churn-model _1_"
    }
    assert len(clean_tags({"k": "x" * 999})["k"]) == MAX_VALUE
    assert clean_tags({"k": "", "j": "(())"}) == {"j": "_"}


def test_upsert_with_an_azure_devops_name_that_sagemaker_would_refuse(aws, tmp_path):  # noqa: F811
    clients, _ = aws
    run = AgentRun(
        build_id="42",
        build_number="20261201.1",
        definition_name="churn-model (1)",
        repository="R&D/churn",
        commit="abc",
        source_branch="refs/heads/main",
    )
    reporter = Reporter("text", out=io.StringIO(), err=io.StringIO())
    result = upsert_pipeline(
        params(tmp_path, definition()), clients=clients, reporter=reporter, agent_run=run
    )
    assert result.action == "created"
    tags = clients.client("sagemaker").list_tags(ResourceArn=result.pipeline_arn)["Tags"]
    assert {"Key": "azdo:repository", "Value": "R_D/churn"} in tags


def test_stack_tags_from_a_stage_config_are_cleaned():
    import json
    from pathlib import Path

    from bridge.aws.registry import ModelPackageArn
    from bridge.deploy.operations import render_stage
    from bridge.settings.stage import StageConfig

    document = json.loads(
        (Path(__file__).resolve().parents[2] / "model-deploy/config/staging.json").read_text()
    )
    document["tags"] = {"team": "R&D (ml), #7", "empty": ""}
    config = StageConfig.model_validate(document)
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn-xgb/4"
    plan = render_stage(config, ModelPackageArn.parse(arn))
    assert plan.tags["team"] == "R_D _ml_ _7"
    assert "empty" not in plan.tags
    validate_request(
        "cloudformation",
        "CreateChangeSet",
        {"StackName": "s", "ChangeSetName": "c", "Tags": tag_list(plan.tags)},
    )
