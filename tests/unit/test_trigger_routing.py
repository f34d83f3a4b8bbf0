"""bridge.trigger.routing: the routing examples, strict types, hostile input, group names.

Sources of the rules checked here:
- Azure DevOps "Runs - Run Pipeline" (reference/ado-openapi-pipelines-7.1-pipelines.json,
  ``RunPipelineParameters.templateParameters``: a map of strings) answers 400 to a parameter the
  pipeline's YAML does not declare; the YAML's ``parameters`` section defines which exist
  (https://learn.microsoft.com/en-us/azure/devops/pipelines/process/runtime-parameters).
- Model package group names: botocore's sagemaker service model, shape ``EntityName``.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml

from bridge.errors import ConfigError
from bridge.trigger import routing
from bridge.trigger.routing import (
    GROUP_NAME_MAX,
    GROUP_NAME_PATTERN,
    MAX_ROUTES_BYTES,
    RESERVED_PARAMETERS,
    RoutingTable,
    parse_routes,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
MODEL_DEPLOY = REPO_ROOT / "azure-pipelines" / "model-deploy.yml"
ROUTE = {"organization": "contoso", "project": "mlops", "pipelineId": 12}


def routes_text(route: dict[str, Any] | None = None, *, group: str = "churn-xgb") -> str:
    return json.dumps({"routes": {group: {**ROUTE, **(route or {})}}})


def refused(text: str) -> str:
    """The ConfigError message parse_routes gives for ``text`` (always one line)."""
    with pytest.raises(ConfigError) as info:
        parse_routes(text, source="test")
    message = str(info.value)
    assert "\n" not in message and message.startswith("test: ")
    return message


# --- 1. the examples only use parameters model-deploy.yml declares ----------------------------


def declared_parameters(pipeline: Path) -> set[str]:
    document = yaml.safe_load(pipeline.read_text())
    return {parameter["name"] for parameter in document.get("parameters") or []}


def readme_routing_example() -> str:
    """The JSON block after "Routing (" in the README's "## The approval trigger" section."""
    text = README.read_text()
    section = text.split("\n## The approval trigger\n", 1)[1].split("\n## ", 1)[0]
    paragraph = section.split("\nRouting (", 1)[1]
    match = re.search(r"```json\n(.*?)```", paragraph, re.DOTALL)
    assert match, "README: no ```json block after 'Routing (' in 'The approval trigger'"
    return match.group(1)


def docstring_routing_example() -> str:
    """The literal block after ``::`` in bridge/trigger/routing.py's docstring."""
    doc = routing.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return textwrap.dedent(block)


def undeclared_parameters(table: RoutingTable, declared: set[str]) -> list[str]:
    targets = {**table.routes, **({"default": table.default} if table.default else {})}
    return [
        f"{name}.templateParameters.{key}"
        for name, route in targets.items()
        for key in route.template_parameters
        if key not in declared
    ]


@pytest.mark.parametrize(
    "example", [readme_routing_example, docstring_routing_example], ids=["README", "docstring"]
)
def test_routing_examples_only_use_parameters_model_deploy_declares(example) -> None:
    table = parse_routes(example(), source=example.__name__)
    assert table.routes or table.default
    assert undeclared_parameters(table, declared_parameters(MODEL_DEPLOY)) == []


def test_the_example_check_catches_an_undeclared_parameter() -> None:
    table = parse_routes(routes_text({"templateParameters": {"region": "eu"}}), source="test")
    declared = declared_parameters(MODEL_DEPLOY)
    assert declared >= RESERVED_PARAMETERS  # parsed from the YAML, not a copy of the list
    assert undeclared_parameters(table, declared) == ["churn-xgb.templateParameters.region"]


def test_reserved_parameters_are_refused_in_a_route() -> None:
    message = refused(routes_text({"templateParameters": {"modelPackageArn": "x"}}))
    assert "routes.churn-xgb.templateParameters: modelPackageArn: set by the trigger" in message


# --- 2. strict types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "where"),
    [
        ({"pipelineId": True}, "pipelineId"),
        ({"pipelineId": False}, "pipelineId"),
        ({"pipelineId": "12"}, "pipelineId"),
        ({"pipelineId": 12.0}, "pipelineId"),
        ({"pipelineId": 12.5}, "pipelineId"),
        ({"pipelineId": None}, "pipelineId"),
        ({"templateParameters": {"environmentSet": 4}}, "templateParameters.environmentSet"),
        ({"templateParameters": {"environmentSet": True}}, "templateParameters.environmentSet"),
        ({"templateParameters": {"environmentSet": None}}, "templateParameters.environmentSet"),
        ({"templateParameters": {"environmentSet": ["eu"]}}, "templateParameters.environmentSet"),
        ({"templateParameters": ["environmentSet"]}, "templateParameters"),
        ({"branch": 5}, "branch"),
        ({"branch": True}, "branch"),
        ({"organization": 3}, "organization"),
        ({"project": ["mlops"]}, "project"),
    ],
)
def test_values_of_the_wrong_json_type_are_refused_not_coerced(route, where) -> None:
    message = refused(routes_text(route))
    assert message.startswith(f"test: routes.churn-xgb.{where}: expected ")


def test_pipeline_id_true_does_not_start_pipeline_1() -> None:
    # Lax pydantic turned true into 1: the run went to whichever pipeline has id 1.
    assert "expected an integer, not a boolean" in refused(routes_text({"pipelineId": True}))


def test_a_valid_route_still_parses() -> None:
    text = routes_text({"branch": "release", "templateParameters": {"environmentSet": "eu"}})
    route = parse_routes(text, source="test").route_for("churn-xgb")
    assert route is not None
    assert (route.pipeline_id, route.ref_name) == (12, "refs/heads/release")
    assert route.template_parameters == {"environmentSet": "eu"}


# --- 3. hostile or malformed documents --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"routes": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"routes": {"churn-xgb": ' + '{"a": ' * 30_000 + "1" + "}" * 30_001 + "}",
    ],
    ids=["array", "inside-routes", "objects"],
)
def test_deep_nesting_is_a_config_error_not_a_recursion_error(text) -> None:
    assert len(text.encode()) <= MAX_ROUTES_BYTES  # reaches json.loads, not the size guard
    assert "nested too deeply" in refused(text)


def test_routes_over_the_size_limit_are_refused_before_parsing() -> None:
    text = routes_text()
    message = refused(text + " " * (MAX_ROUTES_BYTES - len(text) + 1))
    assert f"more than the {MAX_ROUTES_BYTES} allowed" in message
    assert parse_routes(text + " " * (MAX_ROUTES_BYTES - len(text)), source="test").routes


@pytest.mark.parametrize(
    ("text", "kind"),
    [("[]", "an array"), ('"x"', "a string"), ("null", "null"), ("3", "an integer"),
     ("true", "a boolean")],
)  # fmt: skip
def test_the_top_level_must_be_an_object(text, kind) -> None:
    assert refused(text) == f"test: routes must be a JSON object at the top level, not {kind}"


def test_invalid_json_names_the_source() -> None:
    assert refused("{").startswith("test: routes are not valid JSON (")


# --- 4. group names, control characters -------------------------------------------------------


def test_group_name_rule_is_botocores() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.shape_for("CreateModelPackageGroupInput").members["ModelPackageGroupName"]
    assert shape.metadata["pattern"] == GROUP_NAME_PATTERN.pattern
    assert shape.metadata["max"] == GROUP_NAME_MAX


@pytest.mark.parametrize("group", ["a", "churn-xgb", "Churn--XGB-2", "a" * 63])
def test_valid_group_names_are_accepted(group) -> None:
    assert parse_routes(routes_text(group=group), source="test").route_for(group)


@pytest.mark.parametrize(
    "group",
    ["", "churn_xgb", "churn xgb", "-churn", "churn-", "a" * 64, "churn-xgb\n", "chürn", "a/b"],
)
def test_invalid_group_names_are_refused(group) -> None:
    message = refused(routes_text(group=group))
    assert message.startswith(f"test: routes: {json.dumps(group)} is not a SageMaker model package")


@pytest.mark.parametrize("field", ["organization", "project", "branch"])
@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028"])
def test_control_characters_are_refused(field, char) -> None:
    message = refused(routes_text({field: f"contoso{char}evil"}))
    assert message == (
        f"test: routes.churn-xgb.{field}: contains a control character or line break "
        f"(U+{ord(char):04X})"
    )


def test_the_default_route_is_checked_the_same_way() -> None:
    text = json.dumps({"default": {**ROUTE, "pipelineId": "13"}})
    assert refused(text) == "test: default.pipelineId: expected an integer, not a string"
