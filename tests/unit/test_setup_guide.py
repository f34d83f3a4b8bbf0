"""docs/setup.md, the guide from zero to the first deployed model (issue 10, items 4 and 6), is
held to the repository it describes. Each rule is a function returning its problems (empty when
the guide keeps it); the tests at the end feed each one a broken input to show it can fail.

- ``placeholder_problems``: every placeholder of the configuration files has a row in the guide's
  checklist (the table under the heading with "checklist" in it), in the file it is in, under
  its key, with its value. Placeholders are found in ``bridge.yaml``,
  ``model-deploy/config/*.json|yaml``, the ``variables:`` of ``azure-pipelines/model-deploy.yml``
  and ``examples/routes.json`` by four rules, not from a list: a value containing an AWS account
  id of one repeated digit (``111111111111``: the id, or an ARN, bucket name or S3 URI built on
  it), a GUID, or text in angle brackets; or the value of a key named ``organization``,
  ``project``, ``pipeline_id`` or ``pipelineId`` (outside ``tags``: a tag ``project`` is a
  label, not an Azure DevOps locator). A row whose key no longer exists in its file
  is a problem too; a row whose value was replaced (a filled-in fork) is not.
- ``cli_problems``: every ``smbridge …`` command of the guide (shell blocks, and inline code
  that starts with ``smbridge``) names a real command, and each of its flags is one that command
  accepts, walking the parser ``bridge.cli.app.build_parser(complete=True)`` builds.
  ``smbridge doctor`` is being added concurrently; until ``COMMANDS`` has it, its invocations
  are left out (and checked as soon as it exists).
- ``cloudformation_problems``: every ``aws cloudformation deploy`` of the guide names an existing
  template, passes only parameters that template declares, every parameter it requires (no
  ``Default``), literal values its ``AllowedValues``/``AllowedPattern`` accept, and the IAM
  capability its roles need; and every ``infra/*.yaml`` template is deployed by some command.
- ``routes_problems``: ``examples/routes.json`` parses with the trigger's own
  ``bridge.trigger.routing.parse_routes``, its ``templateParameters`` are only parameters
  ``azure-pipelines/model-deploy.yml`` declares, and it routes ``bridge.yaml``'s
  ``model_package_group`` to ``bridge.yaml``'s organization, project and model-deploy
  ``pipeline_id``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli.app import COMMANDS, build_parser, main
from bridge.errors import ConfigError
from bridge.trigger.routing import RoutingTable, parse_routes

REPO_ROOT = Path(__file__).resolve().parents[2]
GUIDE = REPO_ROOT / "docs" / "setup.md"
BRIDGE_YAML = REPO_ROOT / "bridge.yaml"
STAGE_CONFIG_DIR = REPO_ROOT / "model-deploy" / "config"
MODEL_DEPLOY = REPO_ROOT / "azure-pipelines" / "model-deploy.yml"
INFRA = REPO_ROOT / "infra"
EXAMPLES = REPO_ROOT / "examples"
ROUTES = EXAMPLES / "routes.json"
EVENT = EXAMPLES / "approval-event.json"

# --------------------------------------------------------------------------- placeholders

REPEATED_DIGIT_ACCOUNT = re.compile(r"(?<!\d)(\d)\1{11}(?!\d)")
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
ANGLE_BRACKETS = re.compile(r"<[^<>\n]+>")
LOCATOR_KEYS = frozenset({"organization", "project", "pipeline_id", "pipelineId"})


def is_placeholder(path: str, value: str) -> bool:
    """The four rules of the module docstring, for the leaf at key path ``path``."""
    last = re.sub(r"\[\d+\]$", "", path).rsplit(".", 1)[-1]
    return (
        (last in LOCATOR_KEYS and not re.search(r"(^|\.)tags\.", path))
        or REPEATED_DIGIT_ACCOUNT.search(value) is not None
        or GUID.search(value) is not None
        or ANGLE_BRACKETS.search(value) is not None
    )


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(key path, value) of every scalar: ``a.b``, list items as ``a[0].b``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, f"{path}[{index}]")
    elif node is not None:
        yield path, node


def config_documents() -> dict[str, Any]:
    """The scanned files (path relative to the repository) → their parsed content; for
    model-deploy.yml only its root variables, as ``{"variables": {name: value}}``."""
    documents: dict[str, Any] = {"bridge.yaml": yaml.safe_load(BRIDGE_YAML.read_text())}
    for file in sorted(STAGE_CONFIG_DIR.iterdir()):
        relative = file.relative_to(REPO_ROOT).as_posix()
        if file.suffix == ".json":
            documents[relative] = json.loads(file.read_text())
        elif file.suffix in (".yaml", ".yml"):
            documents[relative] = yaml.safe_load(file.read_text())
    pipeline = yaml.safe_load(MODEL_DEPLOY.read_text())
    variables = {v["name"]: v["value"] for v in pipeline.get("variables") or [] if "name" in v}
    documents[MODEL_DEPLOY.relative_to(REPO_ROOT).as_posix()] = {"variables": variables}
    documents[ROUTES.relative_to(REPO_ROOT).as_posix()] = json.loads(ROUTES.read_text())
    return documents


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def find_placeholders(documents: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(file, key path, value) of every placeholder."""
    return {
        (file, path, scalar(value))
        for file, document in documents.items()
        for path, value in leaves(document)
        if is_placeholder(path, scalar(value))
    }


def section(text: str, word: str) -> str:
    """The section under the first heading containing ``word`` (to the next heading of the same
    or a higher level)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        heading = re.match(r"(#+)\s", line)
        if heading and word in line.lower():
            level = len(heading.group(1))
            body = []
            for following in lines[index + 1 :]:
                other = re.match(r"(#+)\s", following)
                if other and len(other.group(1)) <= level:
                    break
                body.append(following)
            return "\n".join(body)
    raise AssertionError(f"{GUIDE.name}: no heading containing {word!r}")


def checklist_rows(text: str) -> list[tuple[str, str, str]]:
    """(file, key, placeholder) of each row of the checklist table, backticks removed."""
    rows = []
    for line in section(text, "checklist").splitlines():
        if not line.startswith("|") or re.match(r"\|\s*-", line):
            continue
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] != "file":
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def placeholder_problems(guide: str, documents: dict[str, Any]) -> list[str]:
    rows = set(checklist_rows(guide))
    problems = [
        f"{file}: {path} = {value!r} is a placeholder without a checklist row "
        f"(| `{file}` | `{path}` | `{value}` | … |)"
        for file, path, value in sorted(find_placeholders(documents))
        if (file, path, value) not in rows
    ]
    paths = {file: {path for path, _ in leaves(doc)} for file, doc in documents.items()}
    for file, path, _ in sorted(rows):
        if file not in paths:
            problems.append(f"checklist row for {file}: not one of the scanned files")
        elif path not in paths[file]:
            problems.append(f"checklist row {file} {path}: no such key in the file")
    return problems


# --------------------------------------------------------------------------- shell snippets

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
# smbridge in command position: at the start of a line, after $( or after | ; & , possibly after
# environment assignments (NAME=value, NAME="quoted value").
ASSIGNMENTS = r"""(?:[A-Za-z_]\w*=(?:"[^"]*"|'[^']*'|[^\s"'])*\s+)*"""
SMBRIDGE = re.compile(rf"(?:^\s*|\$\(|[|;&]\s*){ASSIGNMENTS}(?:\S*/)?smbridge(?=\s|$)")
INLINE_SMBRIDGE = re.compile(r"`((?:\S*/)?smbridge\s[^`]*)`")


FENCE = re.compile(r"^([ \t]*)```(\w*)\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)


def shell_blocks(text: str) -> list[str]:
    """Fenced shell blocks (also indented ones, in lists), continuation lines joined."""
    return [
        textwrap.dedent(body).replace("\\\n", " ")
        for _, lang, body in FENCE.findall(text)
        if lang in SHELL_LANGUAGES
    ]


def command_text(rest: str) -> str:
    """``rest`` up to the end of the command: an unquoted |, ;, &, > or ) ends it."""
    quote = ""
    for index, char in enumerate(rest):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "|;&>)":
            return rest[:index]
    return rest


def smbridge_invocations(text: str) -> list[list[str]]:
    """The argument lists (after ``smbridge``) of every smbridge command in the guide."""
    found = []
    for block in shell_blocks(text):
        for line in block.splitlines():
            for match in SMBRIDGE.finditer(line):
                found.append(shlex.split(command_text(line[match.end() :])))
    prose = FENCE.sub("", text)
    for span in INLINE_SMBRIDGE.findall(prose):
        found.append(shlex.split(span.split(None, 1)[1]))
    return found


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def invocation_problems(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """What argparse would refuse in ``smbridge <argv>``: an unknown command, an incomplete
    one, or a flag the command does not take (values are not checked)."""
    shown = " ".join(["smbridge", *argv])
    node, words, index = parser, [], 0
    while index < len(argv):
        token = argv[index]
        if token.startswith("-") and token != "-":
            flag = token.split("=", 1)[0]
            action = _option(node, flag)
            if action is None:
                where = " ".join(["smbridge", *words])
                return [f"{shown}: {where} has no option {flag}"]
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                return []  # prints and exits: no command needed
            takes_value = action.nargs != 0 and "=" not in token
            index += 2 if takes_value else 1
            continue
        commands = _subcommands(node)
        if commands is not None:
            if token not in commands.choices:
                where = " ".join(["smbridge", *words])
                return [f"{shown}: {where} has no command {token!r}"]
            node = commands.choices[token]
            words.append(token)
        index += 1
    if _subcommands(node) is not None:
        return [
            f"{shown}: incomplete command, {' '.join(['smbridge', *words])} needs one more word"
        ]
    return []


def pending(argv: list[str]) -> bool:
    """``smbridge doctor`` before the command exists (see the module docstring)."""
    words = [word for word in argv if not word.startswith("-")]
    return bool(words) and words[0] == "doctor" and "doctor" not in COMMANDS


def cli_problems(guide: str, parser: argparse.ArgumentParser) -> list[str]:
    problems = []
    for argv in smbridge_invocations(guide):
        if not pending(argv):
            problems.extend(invocation_problems(argv, parser))
    return problems


# --------------------------------------------------------------------------- CloudFormation


class _TemplateLoader(yaml.SafeLoader):
    """Reads a CloudFormation template's structure; intrinsic functions (``!Ref``, …) are kept
    as ``None``: only Parameters, Resources' types and role names are looked at."""


_TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def load_template(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_TemplateLoader)  # a SafeLoader subclass


def deploy_commands(text: str) -> list[list[str]]:
    """The argument lists of every ``aws cloudformation deploy`` of the guide."""
    found = []
    for block in shell_blocks(text):
        for line in block.splitlines():
            match = re.search(r"\baws cloudformation deploy\b", line)
            if match:
                found.append(shlex.split(command_text(line[match.end() :])))
    return found


def option_value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def parameter_overrides(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``Name=Value`` pairs after ``--parameter-overrides``, and the tokens that are not one
    (an unquoted value with a space splits into several)."""
    if "--parameter-overrides" not in argv:
        return {}, []
    pairs, bad = {}, []
    for token in argv[argv.index("--parameter-overrides") + 1 :]:
        if token.startswith("--"):
            break
        name, sep, value = token.partition("=")
        if sep:
            pairs[name] = value
        else:
            bad.append(token)
    return pairs, bad


def _is_literal(value: str) -> bool:
    return "$" not in value and ANGLE_BRACKETS.search(value) is None


def value_problems(name: str, spec: dict[str, Any], value: str) -> list[str]:
    """A literal value the template would refuse (AllowedValues, AllowedPattern per member)."""
    if not _is_literal(value):
        return []
    members = value.split(",") if spec.get("Type") == "CommaDelimitedList" else [value]
    allowed = spec.get("AllowedValues")
    pattern = spec.get("AllowedPattern")
    problems = []
    for member in members:
        if allowed is not None and member not in [str(a) for a in allowed]:
            problems.append(f"{name}={member!r} is not one of {allowed}")
        if pattern is not None and re.fullmatch(pattern, member) is None:
            problems.append(f"{name}={member!r} does not match {pattern}")
    return problems


def capability_needed(template: dict[str, Any]) -> str | None:
    resources = (template.get("Resources") or {}).values()
    iam = [r for r in resources if str(r.get("Type", "")).startswith("AWS::IAM::")]
    if any("RoleName" in (r.get("Properties") or {}) for r in iam):
        return "CAPABILITY_NAMED_IAM"
    return "CAPABILITY_IAM" if iam else None


def cloudformation_problems(guide: str, repo: Path = REPO_ROOT) -> list[str]:
    problems: list[str] = []
    deployed: set[str] = set()
    for argv in deploy_commands(guide):
        template_file = option_value(argv, "--template-file")
        if template_file is None or not (repo / template_file).is_file():
            problems.append(f"aws cloudformation deploy: no template {template_file!r}")
            continue
        deployed.add(template_file)
        template = load_template(repo / template_file)
        declared = template.get("Parameters") or {}
        given, bad = parameter_overrides(argv)
        where = f"{template_file} ({option_value(argv, '--stack-name')})"
        problems += [f"{where}: {token!r} is not Name=Value (quote it)" for token in bad]
        for name, value in given.items():
            if name not in declared:
                problems.append(f"{where}: the template has no parameter {name}")
            else:
                problems += [f"{where}: {p}" for p in value_problems(name, declared[name], value)]
        missing = [n for n, spec in declared.items() if "Default" not in spec and n not in given]
        problems += [f"{where}: required parameter {name} not given" for name in missing]
        needed = capability_needed(template)
        capabilities = option_value(argv, "--capabilities") or ""
        if needed == "CAPABILITY_NAMED_IAM" and capabilities != needed:
            problems.append(f"{where}: named IAM roles need --capabilities {needed}")
        if needed == "CAPABILITY_IAM" and not capabilities.startswith("CAPABILITY_"):
            problems.append(f"{where}: IAM resources need --capabilities {needed}")
    for template_path in sorted((repo / "infra").glob("*.yaml")):
        relative = template_path.relative_to(repo).as_posix()
        if relative not in deployed:
            problems.append(f"{relative}: no aws cloudformation deploy of it in the guide")
    return problems


# --------------------------------------------------------------------------- routes


def declared_parameters(pipeline: Path = MODEL_DEPLOY) -> set[str]:
    document = yaml.safe_load(pipeline.read_text())
    return {parameter["name"] for parameter in document.get("parameters") or []}


def routes_problems(text: str, bridge: dict[str, Any], declared: set[str]) -> list[str]:
    try:
        table: RoutingTable = parse_routes(text, source=ROUTES.name)
    except ConfigError as exc:
        return [str(exc)]
    targets = {**table.routes, **({"default": table.default} if table.default else {})}
    problems = [
        f"{name}.templateParameters.{key}: not a parameter of {MODEL_DEPLOY.name}"
        for name, route in targets.items()
        for key in route.template_parameters
        if key not in declared
    ]
    group = bridge.get("model_package_group")
    route = table.route_for(group)
    if route is None:
        return [*problems, f"no route for bridge.yaml's model_package_group {group!r}"]
    ado = bridge.get("azure_devops") or {}
    expected = {
        "organization": ado.get("organization"),
        "project": ado.get("project"),
        "pipelineId": (ado.get("environments") or {}).get("pipeline_id"),
    }
    actual = {
        "organization": route.organization,
        "project": route.project,
        "pipelineId": route.pipeline_id,
    }
    problems += [
        f"route of {group}: {key} is {actual[key]!r}, bridge.yaml says {expected[key]!r}"
        for key in expected
        if actual[key] != expected[key]
    ]
    return problems


# =========================================================================== the files


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser(complete=True)


def bridge_config() -> dict[str, Any]:
    return yaml.safe_load(BRIDGE_YAML.read_text())


def test_every_placeholder_has_a_checklist_row(guide):
    documents = config_documents()
    assert placeholder_problems(guide, documents) == []


def test_every_smbridge_command_and_flag_in_the_guide_exists(guide, parser):
    invocations = smbridge_invocations(guide)
    commands = {" ".join(a for a in argv if not a.startswith("-"))[:40] for argv in invocations}
    assert any(argv[:2] == ["ado", "setup"] for argv in invocations), commands
    assert any(argv[:1] == ["doctor"] for argv in invocations), "the final doctor step"
    assert cli_problems(guide, parser) == []


def test_every_cloudformation_parameter_in_the_guide_exists(guide):
    assert len(deploy_commands(guide)) >= 5
    assert cloudformation_problems(guide) == []


def test_the_example_routes_parse_and_target_model_deploy():
    assert routes_problems(ROUTES.read_text(), bridge_config(), declared_parameters()) == []


def test_the_example_event_goes_where_the_routes_say(capsys, monkeypatch):
    for name in ("SMBRIDGE_ROUTES", "SMBRIDGE_ROUTES_PARAMETER", "SMBRIDGE_REGISTRY_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)
    bridge = bridge_config()
    event = json.loads(EVENT.read_text())
    assert event["detail"]["ModelPackageGroupName"] == bridge["model_package_group"]
    assert event["account"] == str(bridge["model_registry"]["account_id"])
    argv = ["trigger", "simulate", "--event", str(EVENT), "--routes", str(ROUTES)]
    assert main([*argv, "--dry-run", "--output", "json"]) == 0
    (step,) = json.loads(capsys.readouterr().out)["steps"]
    ado = bridge["azure_devops"]
    pipeline_id = ado["environments"]["pipeline_id"]
    assert step["operation"] == (
        f"POST https://dev.azure.com/{ado['organization']}/{ado['project']}"
        f"/_apis/pipelines/{pipeline_id}/runs?api-version=7.1"
    )
    parameters = step["arguments"]["templateParameters"]
    assert set(parameters) <= declared_parameters()


def test_the_examples_readme_describes_every_file():
    readme = (EXAMPLES / "README.md").read_text()
    for file in sorted(EXAMPLES.iterdir()):
        if file.name != "README.md":
            assert f"`{file.name}`" in readme, file.name


# =========================================================================== each rule can fail


def test_a_new_placeholder_without_a_row_is_reported(guide):
    documents = config_documents()
    documents["bridge.yaml"] = {**documents["bridge.yaml"], "kms_key": "<your key ARN>"}
    documents["model-deploy/config/staging.json"] = {
        **documents["model-deploy/config/staging.json"],
        "external_id": "arn:aws:iam::444444444444:role/x",
    }
    problems = placeholder_problems(guide, documents)
    assert len(problems) == 2
    assert "bridge.yaml: kms_key = '<your key ARN>'" in problems[0]
    assert "staging.json: external_id" in problems[1]


def test_the_placeholder_rules():
    assert is_placeholder("account_id", "111111111111")
    assert is_placeholder("data_capture.s3_uri", "s3://bucket-999999999999-eu-west-1/x/")
    assert is_placeholder("approvers[0].id", "3b6f1c2e-8d4a-4f5b-9c1d-2e7a6b8c9d01")
    assert is_placeholder("arn", "arn:aws:iam::<automation>:role/x")
    assert is_placeholder("routes.g.pipelineId", "7")
    assert is_placeholder("azure_devops.project", "mlops")
    assert not is_placeholder("pipeline.tags.project", "smbridge-demo")  # a tag, not a locator
    assert not is_placeholder("account_id", "123456789012")  # a real-looking id is yours
    assert not is_placeholder("region", "eu-west-1")
    assert not is_placeholder("name", "smbridge-demo-build")


CHECKLIST = """## 7. Fill in the placeholders (checklist)

| file | key | placeholder | your value |
|---|---|---|---|
| `bridge.yaml` | `pipeline.artifact_bucket` | `bucket-111111111111` | output |
| `bridge.yaml` | `azure_devops.organization` | `contoso` | yours |

## 8. Next
"""


def test_a_stale_or_misfiled_row_is_reported():
    documents = {"bridge.yaml": {"pipeline": {"bucket": "bucket-111111111111"}}}
    assert placeholder_problems(CHECKLIST, documents) == [
        "bridge.yaml: pipeline.bucket = 'bucket-111111111111' is a placeholder without a "
        "checklist row (| `bridge.yaml` | `pipeline.bucket` | `bucket-111111111111` | … |)",
        "checklist row bridge.yaml azure_devops.organization: no such key in the file",
        "checklist row bridge.yaml pipeline.artifact_bucket: no such key in the file",
    ]
    misfiled = {"staging.json": {"pipeline": {"artifact_bucket": "bucket-111111111111"}}}
    problems = placeholder_problems(CHECKLIST, misfiled)
    assert "checklist row for bridge.yaml: not one of the scanned files" in problems


def test_a_replaced_placeholder_leaves_its_row_harmless():
    filled = {
        "bridge.yaml": {
            "pipeline": {"artifact_bucket": "bucket-123456789012"},
            "azure_devops": {"organization": "fabrikam"},
        }
    }
    assert placeholder_problems(CHECKLIST, filled) == [
        "bridge.yaml: azure_devops.organization = 'fabrikam' is a placeholder without a "
        "checklist row (| `bridge.yaml` | `azure_devops.organization` | `fabrikam` | … |)"
    ]
    kept = {
        "bridge.yaml": {
            "pipeline": {"artifact_bucket": "bucket-123456789012"},
            "azure_devops": {"organization": "contoso"},
        }
    }
    assert placeholder_problems(CHECKLIST, kept) == []


def test_an_unknown_command_or_flag_is_reported(parser):
    snippet = "\n".join(
        [
            "```bash",
            "smbridge ado setup --pipline-id 12 --config bridge.yaml",
            'X=$(smbridge registry lastest --group g -o json | python -c "print(1)")',
            "smbridge registry --group g",
            'smbridge registry approve "$ARN" --comment "a; b | c" --no-role',
            'A=1 B="$(stack_output a b c)" \\',
            "  smbridge trigger replay --queue-url q --routs r.json",
            "az repos create --name smbridge",
            "```",
            "Then `smbridge pipeline launch --wait`.",
        ]
    )
    assert cli_problems(snippet, parser) == [
        "smbridge ado setup --pipline-id 12 --config bridge.yaml: smbridge ado setup has no "
        "option --pipline-id",
        "smbridge registry lastest --group g -o json: smbridge registry has no command 'lastest'",
        "smbridge registry --group g: smbridge registry has no option --group",
        "smbridge trigger replay --queue-url q --routs r.json: smbridge trigger replay has no "
        "option --routs",
        "smbridge pipeline launch --wait: smbridge pipeline has no command 'launch'",
    ]


def test_a_flag_of_another_command_is_reported(parser):
    assert invocation_problems(["trigger", "package", "--config", "bridge.yaml"], parser) == [
        "smbridge trigger package --config bridge.yaml: smbridge trigger package has no option "
        "--config"
    ]
    assert invocation_problems(["ado"], parser) == [
        "smbridge ado: incomplete command, smbridge ado needs one more word"
    ]
    assert invocation_problems(["-o", "json", "pipeline", "status", "--dry-run"], parser) == []


def test_doctor_is_checked_once_it_exists(parser, monkeypatch):
    snippet = "```bash\nsmbridge doctor --config bridge.yaml\n```\n"
    if "doctor" in COMMANDS:
        assert cli_problems(snippet, parser) == []
    else:
        assert cli_problems(snippet, parser) == []
        monkeypatch.setitem(COMMANDS, "doctor", ("bridge.cli.config", "test"))
        assert cli_problems(snippet, parser) == [
            "smbridge doctor --config bridge.yaml: smbridge has no command 'doctor'"
        ]


def test_a_wrong_cloudformation_parameter_is_reported(guide):
    broken = (
        guide.replace("AllowedSubjects=sc://contoso", "AllowedSubject=sc://contoso", 1)
        .replace("TrustMode=AutomationAccount \\", "TrustMode=Automation \\", 1)
        .replace("--capabilities CAPABILITY_NAMED_IAM", "--capabilities CAPABILITY_IAM", 1)
        .replace('"DeployAccountIds=222222222222,333333333333"', "DeployAccountIds=2222,3", 1)
        .replace('"AzureDevOpsSecretArn=$SECRET_ARN" \\', "\\", 1)
    )
    problems = cloudformation_problems(broken)
    assert problems == [
        "infra/automation-account.yaml (smbridge-automation): DeployAccountIds='2222' does not "
        "match ^$|^[0-9]{12}$",
        "infra/automation-account.yaml (smbridge-automation): DeployAccountIds='3' does not "
        "match ^$|^[0-9]{12}$",
        "infra/automation-account.yaml (smbridge-automation): named IAM roles need "
        "--capabilities CAPABILITY_NAMED_IAM",
        "infra/deploy-role.yaml (smbridge-deploy-role): TrustMode='Automation' is not one of "
        "['AutomationAccount', 'AzureDevOpsOidc']",
        "infra/deploy-role.yaml (smbridge-deploy-role): the template has no parameter "
        "AllowedSubject",
        "infra/trigger.yaml (smbridge-trigger): required parameter AzureDevOpsSecretArn not given",
    ]


def test_a_missing_template_or_an_unquoted_value_is_reported():
    snippet = "\n".join(
        [
            "```bash",
            "aws cloudformation deploy --template-file infra/nothing.yaml --stack-name x",
            "aws cloudformation deploy --template-file infra/registry-forwarding.yaml \\",
            "  --stack-name f --capabilities CAPABILITY_IAM \\",
            "  --parameter-overrides TargetEventBusArn=$(stack_output a b EventBusArn)",
            "```",
        ]
    )
    problems = cloudformation_problems(snippet)
    assert "aws cloudformation deploy: no template 'infra/nothing.yaml'" in problems
    assert "infra/registry-forwarding.yaml (f): 'a' is not Name=Value (quote it)" in problems
    assert "infra/trigger.yaml: no aws cloudformation deploy of it in the guide" in problems


def test_bad_routes_are_reported():
    bridge = bridge_config()
    declared = declared_parameters()
    ado = bridge["azure_devops"]
    group = bridge["model_package_group"]
    pipeline_id = ado["environments"]["pipeline_id"]
    route = {
        "organization": ado["organization"],
        "project": ado["project"],
        "pipelineId": pipeline_id,
    }
    assert routes_problems(json.dumps({"routes": {group: route}}), bridge, declared) == []
    undeclared = {"routes": {group: {**route, "templateParameters": {"stage": "x"}}}}
    assert routes_problems(json.dumps(undeclared), bridge, declared) == [
        f"{group}.templateParameters.stage: not a parameter of {MODEL_DEPLOY.name}"
    ]
    as_string = {"routes": {group: {**route, "pipelineId": str(pipeline_id)}}}
    (message,) = routes_problems(json.dumps(as_string), bridge, declared)
    assert "pipelineId: expected an integer, not a string" in message
    other_group = {"routes": {f"{group}-other": route}}
    assert routes_problems(json.dumps(other_group), bridge, declared) == [
        f"no route for bridge.yaml's model_package_group {group!r}"
    ]
    other_pipeline = {"routes": {group: {**route, "pipelineId": pipeline_id + 1}}}
    assert routes_problems(json.dumps(other_pipeline), bridge, declared) == [
        f"route of {group}: pipelineId is {pipeline_id + 1}, bridge.yaml says {pipeline_id}"
    ]
    via_default = {"default": route}
    assert routes_problems(json.dumps(via_default), bridge, declared) == []
