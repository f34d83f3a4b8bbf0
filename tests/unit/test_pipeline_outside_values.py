"""Values from outside in azure-pipelines/*.yml: never code, never a logging command, blank = empty.

Sources (Microsoft Learn unless said otherwise):

- "Logging commands" (azure/devops/pipelines/scripts/logging-commands): the agent scans each
  step's output and acts on ``##vso[area.action ...]`` lines and ``##[command]`` formatting
  lines. The agent (microsoft/azure-pipelines-agent, ``Command.TryParse``) finds ``##vso[``
  anywhere in a line, ``##[`` at its start; tests/unit/test_agent_injection.py covers what
  smbridge itself prints. Here: the YAML's own ``echo``/``printf``/``Write-Host`` lines print a
  value from outside only through an allow-list without ``#`` (``${NAME//[^A-Za-z0-9._:-]/_}``),
  and no script traces its commands (``set -x`` prints every expanded argument).
- "Securely use variables and parameters in your pipeline" (azure/devops/pipelines/security/
  inputs) and "Runtime parameters": ``${{ parameters.X }}`` is replaced in the YAML text before
  the run, and ``$(var)`` macros are replaced in a task's input (a script body) before the script
  runs, so either inside a script body is shell injection. Outside values reach scripts through
  ``env:`` and are read as quoted shell variables (tests/unit/test_azure_pipelines_yaml.py's
  ``script_violations`` checks the macros for every file; here: no ``${{ }}`` in any script).
  Every env: value that is not a literal is from outside, and so is anything the agent or a
  variable group puts in the environment (the commit message, a branch name).
- "Runtime parameters": parameters cannot be optional, a default must be given in the YAML or
  when running the pipeline; a string parameter defaulting to ``''`` is required in the Run
  pipeline panel (MicrosoftDocs/azure-devops-docs#7865).
  So model-deploy.yml's parameters default to ``' '``, which the panel accepts, and its scripts
  and run name trim values ("Expressions": ``trim``, and ``coalesce`` returns the first value
  that is neither null nor empty), so blank counts as not given.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit import test_azure_pipelines_yaml as shared
from tests.unit.test_model_deploy_yaml import PLACEHOLDER

MODEL_DEPLOY = shared.PIPELINES_DIR / "model-deploy.yml"
PIPELINES = [p for p in shared.YAML_FILES if "templates" not in p.parts]

# Environment variables whose value no one outside the pipeline's author chooses (paths).
FIXED_ENVIRONMENT = {
    "BUILD_ARTIFACTSTAGINGDIRECTORY",
    "BUILD_SOURCESDIRECTORY",
    "BUILD_BINARIESDIRECTORY",
    "PIPELINE_WORKSPACE",
    "AGENT_TEMPDIRECTORY",
    "SYSTEM_DEFAULTWORKINGDIRECTORY",
    "HOME",
    "PATH",
}
PRINTERS = r"echo|printf|Write-Host|Write-Output|Write-Information|Write-Warning|Write-Error"
PRINTING = re.compile(rf"(?:^|[;&|(]|\bthen|\belse|\bdo)\s*(?:{PRINTERS})\b", re.IGNORECASE)
# A variable expansion in bash or PowerShell: $NAME, ${NAME...}, $env:NAME, ${env:NAME}.
EXPANSION = re.compile(
    r"\$\{(?:env:)?(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\}"
    r"|\$(?:env:)?(?P<bare>[A-Za-z_][A-Za-z0-9_]*)",
    re.IGNORECASE,
)
# ${NAME//[^class]/replacement}: everything outside the class replaced.
ALLOW_LIST = re.compile(r"//\[\^(?P<cls>(?:\\.|[^\]\\])+)\]/(?P<repl>[^}]*)")
XTRACE = re.compile(r"\bset\s+-[A-Za-z]*x|\bxtrace\b|\bbash\s+-[A-Za-z]*x|Set-PSDebug\s+-Trace")


# --------------------------------------------------------------------------- the checks


def allowed_characters(cls: str) -> set[str]:
    """The characters a bash bracket expression (without the leading ``^``) lists."""
    chars: set[str] = set()
    items = re.findall(r"\[:\w+:\]|\\.|.", cls)
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("[:"):
            classes = {
                "[:alnum:]": string.ascii_letters + string.digits,
                "[:alpha:]": string.ascii_letters,
                "[:digit:]": string.digits,
            }
            if item not in classes:
                return {"#"}  # a class we do not know: assume the worst
            chars |= set(classes[item])
            i += 1
            continue
        char = item[-1]
        if i + 2 < len(items) and items[i + 1] == "-" and not items[i + 2].startswith("[:"):
            end = items[i + 2][-1]
            chars |= {chr(c) for c in range(ord(char), ord(end) + 1)}
            i += 3
            continue
        chars.add(char)
        i += 1
    return chars


def neutralised(rest: str) -> bool:
    """``rest`` (what follows the name in ``${NAME...}``) replaces every character outside an
    allow-list that cannot start a logging command: no ``#``, no line breaks."""
    match = ALLOW_LIST.fullmatch(rest)
    if not match:
        return False
    allowed = allowed_characters(match.group("cls"))
    return not allowed & {"#", "\n", "\r"} and "#" not in match.group("repl")


def print_problems(step: dict[str, Any]) -> list[str]:
    body = shared.script_body(step)
    if body is None:
        return []
    problems = []
    where = repr(step.get("displayName") or step.get("name") or body[:40])
    if XTRACE.search(body):
        problems.append(f"{where}: traces commands (prints every expanded argument)")
    fixed = {
        name for name, value in (step.get("env") or {}).items() if "$" not in str(value)
    } | FIXED_ENVIRONMENT
    for line in body.splitlines():
        if line.lstrip().startswith("#") or not PRINTING.search(line):
            continue
        for match in EXPANSION.finditer(line):
            name = match.group("braced") or match.group("bare")
            rest = match.group("rest") or ""
            if name.upper() in fixed:
                continue
            if not neutralised(rest):
                problems.append(f"{where}: prints ${name} raw: {line.strip()!r}")
    return problems


def parameter_sites(body: str) -> list[str]:
    return re.findall(r"\$\{\{[^}]*\}\}", body)


def all_script_steps() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in shared.YAML_FILES:
        for step in shared.file_steps(shared.load(path), path):
            if shared.script_body(step) is not None:
                yield path, step


# --------------------------------------------------------------------------- item 1


def test_no_script_prints_an_outside_value_raw() -> None:
    checked = 0
    for path, step in all_script_steps():
        assert print_problems(step) == [], path.name
        assert parameter_sites(shared.script_body(step) or "") == [], path.name
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize(
    ("body", "env"),
    [
        (
            'echo "approval event: ${SOURCE_EVENT_ID:-none}"',
            {"SOURCE_EVENT_ID": "${{ parameters.e }}"},
        ),
        ('echo "pipeline: ${PIPELINE_ARN}"', {"PIPELINE_ARN": "$(upsert.pipelineArn)"}),
        ("printf '%s\\n' \"$EXECUTION_ARN\"", {"EXECUTION_ARN": "$(start.executionArn)"}),
        ('Write-Host "comment: $env:APPROVAL_COMMENT"', {"APPROVAL_COMMENT": "$(comment)"}),
        ('if true; then echo "$BUILD_SOURCEVERSIONMESSAGE"; fi', {}),
        ('printf "%s\\n" "${V//[^A-Za-z0-9#]/_}"', {"V": "$(v)"}),  # '#' allowed through
        ('printf "%s\\n" "${V//[^ -~]/_}"', {"V": "$(v)"}),  # a range holding '#' and '['
        ('printf "%s\\n" "${V//[^a-z]/#}"', {"V": "$(v)"}),  # replaced by '#'
        ('set -euxo pipefail\nsmbridge prepare --group "$G"', {"G": "$(g)"}),
    ],
)
def test_the_print_check_catches(body: str, env: dict[str, str]) -> None:
    assert print_problems({"bash": body, "env": env})


def test_the_print_check_allows_the_neutralised_form() -> None:
    step = {
        "bash": (
            'printf "a: %s\\n" "${A//[^A-Za-z0-9._:\\/-]/_}"\n'
            'echo "dir: ${BUILD_ARTIFACTSTAGINGDIRECTORY}"'
        ),
        "env": {"A": "$(x.y)"},
    }
    assert print_problems(step) == []


HOSTILE = (
    "evt ##vso[task.setvariable variable=AWS_ROLE_ARN]arn:aws:iam::1:role/x"
    "\n##[error]fake\r##vso[task.complete result=Succeeded;]"
)


def agent_commands(text: str) -> list[str]:
    """The lines the agent would act on (tests/unit/test_agent_injection.py's rule)."""
    return [
        line
        for line in re.split(r"\r\n|\r|\n", text)
        if "##vso[" in line.lower() or line.lstrip().startswith("##[")
    ]


@pytest.fixture
def fake_smbridge(tmp_path: Path) -> tuple[Path, Path]:
    """A ``smbridge`` on PATH that records its arguments, one per line, in ``calls.txt``."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    script = bin_dir / "smbridge"
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{calls}"\nprintf -- "--\\n" >> "{calls}"\n'
    )
    script.chmod(0o755)
    return bin_dir, calls


def run_step(step: dict[str, Any], env: dict[str, str], bin_dir: Path, tmp: Path) -> str:
    """The step's bash body run as the agent would (env: values substituted by the caller)."""
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "LC_ALL": "C.UTF-8",
        "BUILD_ARTIFACTSTAGINGDIRECTORY": str(tmp / "staging"),
        **env,
    }
    done = subprocess.run(
        ["bash", "-c", shared.script_body(step) or ""],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout + done.stderr


def recorded(calls: Path) -> list[list[str]]:
    text = calls.read_text() if calls.exists() else ""
    return [chunk.strip("\n").split("\n") for chunk in text.split("--\n") if chunk.strip("\n")]


def prepare_step() -> dict[str, Any]:
    doc = shared.load(MODEL_DEPLOY)
    (job,) = next(s for s in doc["stages"] if s["stage"] == "Prepare")["jobs"]
    (step,) = [s for s in job["steps"] if s.get("name") == "prepare"]
    return step


def test_prepare_prints_a_hostile_event_id_harmlessly(
    fake_smbridge: tuple[Path, Path], tmp_path: Path
) -> None:
    bin_dir, calls = fake_smbridge
    output = run_step(
        prepare_step(),
        {
            "MODEL_PACKAGE_ARN": "arn:aws:sagemaker:eu-west-1:111111111111:model-package/g/4",
            "MODEL_PACKAGE_GROUP_NAME": "g",
            "SOURCE_EVENT_ID": HOSTILE,
        },
        bin_dir,
        tmp_path,
    )
    assert "approval event: evt_" in output
    assert agent_commands(output) == []
    assert recorded(calls)[0][:2] == ["prepare", "--model-package-arn"]


def test_model_build_summary_prints_service_output_harmlessly(
    fake_smbridge: tuple[Path, Path], tmp_path: Path
) -> None:
    bin_dir, _ = fake_smbridge
    doc = shared.load(shared.MODEL_BUILD)
    (summary,) = [s for _, s in shared.all_steps(doc) if s.get("displayName") == "Summary"]
    arn = "arn:aws:sagemaker:eu-west-1:111111111111:pipeline/p/execution/abc123"
    output = run_step(summary, {"PIPELINE_ARN": HOSTILE, "EXECUTION_ARN": arn}, bin_dir, tmp_path)
    assert agent_commands(output) == []
    assert f"execution: {arn}\n" in output  # an ARN itself passes unchanged


# --------------------------------------------------------------------------- item 14


def test_no_pipeline_parameter_is_required_by_hand() -> None:
    for path in PIPELINES:
        for parameter in shared.load(path).get("parameters") or []:
            if parameter.get("type", "string") == "string" and "values" not in parameter:
                assert parameter.get("default") not in (None, ""), (path.name, parameter["name"])


def test_model_deploy_defaults_are_a_blank_placeholder() -> None:
    parameters = shared.load(MODEL_DEPLOY)["parameters"]
    assert PLACEHOLDER.strip() == "" and PLACEHOLDER != ""
    assert {p["name"]: p["default"] for p in parameters} == dict.fromkeys(
        ("modelPackageArn", "modelPackageGroupName", "modelPackageVersion", "sourceEventId"),
        PLACEHOLDER,
    )


def evaluate(expression: str, parameters: dict[str, str]) -> str:
    """The template expressions the run name uses: coalesce, trim, parameters.X, 'literals'."""
    expression = expression.strip()
    if expression.startswith("'") and expression.endswith("'"):
        return expression[1:-1].replace("''", "'")
    if match := re.fullmatch(r"parameters\.(\w+)", expression):
        return parameters[match.group(1)]
    match = re.fullmatch(r"(\w+)\((.*)\)", expression, re.DOTALL)
    assert match, f"unsupported expression {expression!r}"
    function, inner = match.group(1).lower(), match.group(2)
    args, depth, current = [], 0, ""
    for char in inner:
        if char == "," and depth == 0:
            args.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    args.append(current)
    values = [evaluate(a, parameters) for a in args]
    if function == "trim":
        return values[0].strip()
    if function == "coalesce":
        return next((v for v in values if v != ""), "")
    raise AssertionError(f"unsupported function {function}")


def run_name(parameters: dict[str, str]) -> str:
    name = shared.load(MODEL_DEPLOY)["name"]
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: evaluate(m.group(1), parameters), name)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (PLACEHOLDER, "deploy-vauto-"),
        ("", "deploy-vauto-"),
        ("4", "deploy-v4-"),
        (" 12\t", "deploy-v12-"),
    ],
)
def test_run_name_treats_a_blank_version_as_none(version: str, expected: str) -> None:
    assert run_name({"modelPackageVersion": version}).startswith(expected)


@pytest.mark.parametrize(
    ("arn", "group", "expected"),
    [
        # by hand: only the group name, the rest left at the placeholder
        (PLACEHOLDER, "churn-xgb", ["prepare", "--group", "churn-xgb"]),
        (PLACEHOLDER, "  churn-xgb \n", ["prepare", "--group", "churn-xgb"]),
        # the trigger: both, the ARN wins
        (
            "arn:aws:sagemaker:eu-west-1:111111111111:model-package/churn-xgb/4",
            "churn-xgb",
            [
                "prepare",
                "--model-package-arn",
                "arn:aws:sagemaker:eu-west-1:111111111111:model-package/churn-xgb/4",
            ],
        ),
        (
            "\t arn:aws:sagemaker:eu-west-1:111111111111:model-package/churn-xgb/4 ",
            PLACEHOLDER,
            [
                "prepare",
                "--model-package-arn",
                "arn:aws:sagemaker:eu-west-1:111111111111:model-package/churn-xgb/4",
            ],
        ),
        # neither: the command itself reports the missing group
        (PLACEHOLDER, PLACEHOLDER, ["prepare", "--group", ""]),
    ],
)
def test_prepare_treats_the_placeholder_as_empty(
    fake_smbridge: tuple[Path, Path], tmp_path: Path, arn: str, group: str, expected: list[str]
) -> None:
    bin_dir, calls = fake_smbridge
    output = run_step(
        prepare_step(),
        {
            "MODEL_PACKAGE_ARN": arn,
            "MODEL_PACKAGE_GROUP_NAME": group,
            "SOURCE_EVENT_ID": PLACEHOLDER,
        },
        bin_dir,
        tmp_path,
    )
    (call,) = recorded(calls)
    assert call[:3] == expected
    assert call[3:] == [
        "--out",
        f"{tmp_path / 'staging'}/deploy-params",
        "--config",
        "bridge.yaml",
        "--web-identity",
    ]
    assert "approval event: none (started by hand)" in output


def test_every_parameter_value_is_trimmed_before_use() -> None:
    """Structurally, for any script that maps a runtime parameter (one the Run pipeline panel
    shows, free text): it trims that variable before anything else uses it."""
    checked = 0
    for path, step in all_script_steps():
        body = shared.script_body(step) or ""
        free_text = {
            p["name"]
            for p in shared.load(path).get("parameters") or []
            if "values" not in p and path in PIPELINES
        }
        for name, value in (step.get("env") or {}).items():
            match = re.fullmatch(r"\$\{\{\s*parameters\.(\w+)\s*\}\}", str(value))
            if not match or match.group(1) not in free_text:
                continue
            checked += 1
            trim = f"read -r -d '' {name} <<<\"${{{name}}}\" || true"
            assert trim in body, (path.name, name)
            first_use = min(
                (
                    m.start()
                    for m in re.finditer(rf"\$\{{?{name}\b", body)
                    if m.start() > body.index(trim)
                ),
                default=len(body),
            )
            assert body.index(trim) < first_use
    assert checked == 3  # Prepare: ARN, group name, event id


def test_the_placeholder_check_fails_on_an_untrimmed_script(
    fake_smbridge: tuple[Path, Path], tmp_path: Path
) -> None:
    """Without the trim, a blank ARN would be passed as the ARN: the run-based check sees it."""
    bin_dir, calls = fake_smbridge
    step = copy.deepcopy(prepare_step())
    step["bash"] = "\n".join(
        line for line in step["bash"].splitlines() if not line.lstrip().startswith("read ")
    )
    run_step(
        step,
        {
            "MODEL_PACKAGE_ARN": PLACEHOLDER,
            "MODEL_PACKAGE_GROUP_NAME": "g",
            "SOURCE_EVENT_ID": PLACEHOLDER,
        },
        bin_dir,
        tmp_path,
    )
    assert recorded(calls)[0][:3] == ["prepare", "--model-package-arn", PLACEHOLDER]


def test_yaml_round_trip_of_the_placeholder() -> None:
    """PyYAML (and Azure Pipelines) read the default as one space, not as an empty value."""
    text = MODEL_DEPLOY.read_text(encoding="utf-8")
    assert text.count('default: " "') == 4
    assert yaml.safe_load('default: " "') == {"default": PLACEHOLDER}
