"""Bad input, part 3: the command line (``bridge.cli.app.main``) fuzzed with hypothesis.

Each example is one command with valid arguments (``--dry-run`` wherever the command has it, so
no call is made) in which one argument is replaced by a generated value: ``--param`` pairs,
ARNs, durations, approval ids, region names, ids, names, counts, the event and routing files of
``trigger simulate``, an ``SMBRIDGE_*`` variable; ``-o json`` is given or not, before or after
the command. Properties:
- nothing escapes ``main``: it returns, or raises argparse's ``SystemExit(2)`` for a usage
  error; the code is a documented one (``bridge.errors.exit_codes()``) and, as nothing is
  called, 0 or 2 (1 is "internal error": a bug);
- no traceback, no "internal error" in the output;
- a rejection is one ``error:`` line on stderr naming the argument (flag, positional's
  metavar, field or variable) that was changed, as the CLI formats it;
- with ``-o json``, stdout is exactly one JSON document, and a failure's document says
  ``status: error`` with the exit code returned.

Reproducible: ``derandomize=True``, no example database (see test_fuzz_events.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import string
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import tests.reliability.test_fuzz_configs as fuzz_configs
import tests.reliability.test_fuzz_events as fuzz_events
from bridge.cli.app import main
from bridge.errors import exit_codes
from tests.reliability.test_fuzz_events import (
    CHARS,
    INT_DIGITS,
    SEEDS,
    encode,
    fuzz_settings,
    mutated_string,
    run_counted,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {"cli": 1800}
COUNTS: dict[str, int] = {}
DOCUMENTED_EXIT_CODES = {code for code, _ in exit_codes()}
# A dry run calls nothing: it succeeds or refuses its input.
DRY_RUN_EXIT_CODES = {0, 2}

ACCOUNT = "111111111111"  # bridge.yaml's model_registry.account_id
PACKAGE_ARN = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model-package/smbridge-demo/3"
EXECUTION_ARN = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:pipeline/smbridge-demo-build/execution/a1"
APPROVAL_ID = "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"
QUEUE_URL = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/smbridge-trigger-dlq"
ROUTES = {"routes": {"smbridge-demo": {"organization": "contoso", "project": "mlops",
                                       "pipelineId": 12}},
          "default": {"organization": "contoso", "project": "mlops", "pipelineId": 13}}  # fmt: skip


def argv_text(max_size: int = 12) -> st.SearchStrategy[str]:
    """Text a command line can carry: any character but NUL, no lone surrogate."""
    return st.lists(CHARS, max_size=max_size).map("".join).map(_argv_safe)


def _argv_safe(text: str) -> str:
    return re.sub("[\x00\ud800-\udfff]", "", text)


def one_line(text: str) -> bool:
    """No line break in ``text``: none of the characters ``str.splitlines`` breaks at (\\n, \\r,
    \\v, \\f, \\x1c-\\x1e, \\x85, U+2028, U+2029)."""
    return len(f"{text}x".splitlines()) == 1


def around(valid: list[str], *odd: str) -> st.SearchStrategy[str]:
    """Valid values, each changed a little, odd ones, and any text."""
    return st.one_of(
        st.sampled_from(valid),
        st.sampled_from(valid).flatmap(mutated_string).map(_argv_safe),
        st.sampled_from(list(odd) or [""]),
        argv_text(),
    )


ARNS = around(
    [PACKAGE_ARN, PACKAGE_ARN.replace("eu-west-1", "us-east-1"), PACKAGE_ARN.replace("/3", "/0"),
     PACKAGE_ARN.replace(ACCOUNT, "222222222222"), PACKAGE_ARN.replace(":aws:", ":aws-cn:")],
    "arn:aws:sagemaker:eu-west-1:111111111111:model-package/smbridge-demo",
    "arn:aws:sagemaker:eu-west-1:\u0661\u0661\u0661111111111:model-package/g/1",
    "arn:aws:sagemaker:eu-west-1:111111111111:model-package/smbridge-demo/" + "9" * 400,
    "arn:aws:s3:::bucket", " " + PACKAGE_ARN, PACKAGE_ARN + "\n", "ARN",
)  # fmt: skip
DURATIONS = around(
    ["6h", "90m", "1h30m", "45s", "3600", "0.5s", "1h1m1s"],
    "0", "-1", "0s", "1e3", "1.5.2h", "h", "1x", "inf", "nan", "9" * 400, "9" * 5000 + "h",
    "\u0661h", "\uff11h", "1h 30m", " 6h ", "6H", "1\nh", "\u0663\u0660m",
)  # fmt: skip
REGIONS = around(
    ["eu-west-1", "us-east-1", "us-gov-west-1", "cn-north-1", "ap-southeast-2"],
    "eu-west-\u0661", "EU-WEST-1", "eu-west", "mars-1", "eu-west-1 ", "eu-west-10", "",
)  # fmt: skip
PARAMS = st.lists(
    st.one_of(
        st.sampled_from(["AucThreshold=0.8", "InstanceType=ml.m5.xlarge", "A=", "A=1=2"]),
        st.builds(lambda n, v: f"{n}={v}", argv_text(6), argv_text(10)),
        argv_text(),
        st.sampled_from(["=1", " =x", "noequals", "A=1"]),
    ),
    min_size=1,
    max_size=4,
)
UUIDS = around(
    [APPROVAL_ID, APPROVAL_ID.upper(), "{" + APPROVAL_ID + "}", APPROVAL_ID.replace("-", "")],
    "3b3db741-9d03-4e32-a7c0-6c3dfc2013c", "urn:uuid:" + APPROVAL_ID, " " + APPROVAL_ID,
    "not-a-uuid", "0" * 32,
)  # fmt: skip
INTEGERS = st.one_of(
    st.integers(-5, 1100).map(str),
    st.sampled_from(["0", "-1", "1e3", "1.5", "", "x", "9" * 30, "9" * 5000, "\u0661", "0x10"]),
    argv_text(4),
)
NAMES = around(["smbridge-demo", "churn-xgb", "a"], "-", "a" * 64, "a" * 300, "name with space")
TEXTS = st.one_of(argv_text(30), st.sampled_from(["", " ", "x" * 5000, "ok\nnext line"]))


class Slot:
    """One argument of a command: its flag (or positional metavar), values to try, and what a
    rejection of it may be named (the flag, and the field or key the CLI names instead)."""

    def __init__(self, flag: str, values: st.SearchStrategy[Any], *names: str) -> None:
        self.flag, self.values, self.names = flag, values, (flag, *names)


def common_slots(also_named: str = "") -> list[Slot]:
    """--region, --role-arn, --profile. ``also_named``: where a command reports the region (the
    registry's region is --region's when bridge.yaml names none: prepare and deploy refuse an
    ARN of another region at --model-package-arn)."""
    return [
        Slot("--region", REGIONS, *filter(None, [also_named])),
        Slot("--role-arn", around(["arn:aws:iam::111111111111:role/ci"], "arn:aws:iam::1:role/")),
        Slot("--profile", around(["default", "ci"])),
    ]


class Command:
    def __init__(self, words: list[str], base: dict[str, str | None], slots: list[Slot]) -> None:
        self.words, self.base, self.slots = words, base, slots

    def name(self) -> str:
        return " ".join(self.words)


@cache  # one set of strategies per work folder (new strategy objects cost on every draw)
def commands(work: Path) -> list[Command]:
    stage = str(work / "staging.json")
    templates = str(REPO / "model-deploy" / "templates")
    aws = common_slots()
    return [
        Command(["pipeline", "start"], {"--dry-run": None}, [
            Slot("--param", PARAMS),
            Slot("--timeout", DURATIONS),
            Slot("--display-name", TEXTS),
            Slot("--client-request-token", TEXTS),
            Slot("--pipeline-name", NAMES),
            *aws,
        ]),
        Command(["pipeline", "status"], {"--dry-run": None}, [
            Slot("--execution-arn", around([EXECUTION_ARN])), Slot("--pipeline-name", NAMES), *aws,
        ]),
        Command(["pipeline", "stop"], {"--dry-run": None, "--execution-arn": EXECUTION_ARN}, [
            Slot("--execution-arn", around([EXECUTION_ARN])), *aws,
        ]),
        Command(["registry", "latest"], {"--dry-run": None}, [
            Slot("--group", NAMES), Slot("--status", around(["Approved", "any"])), *aws,
        ]),
        Command(["registry", "describe"], {"ARN": PACKAGE_ARN, "--dry-run": None}, [
            Slot("ARN", ARNS), *aws,
        ]),
        Command(["registry", "approve"], {"ARN": PACKAGE_ARN, "--comment": "ok", "--dry-run": None},
                [Slot("ARN", ARNS), Slot("--comment", TEXTS), Slot("--approver", TEXTS), *aws]),
        Command(["registry", "reject"], {"ARN": PACKAGE_ARN, "--comment": "no", "--dry-run": None},
                [Slot("ARN", ARNS), Slot("--comment", TEXTS), *aws]),
        Command(["prepare"], {"--dry-run": None, "--out": str(work / "out"),
                              "--stage-config": stage, "--model-package-arn": PACKAGE_ARN},
                [Slot("--model-package-arn", ARNS), Slot("--out", TEXTS),
                 *common_slots(also_named="--model-package-arn")]),
        Command(["deploy"], {"--dry-run": None, "--stage": "staging", "--stage-config": stage,
                             "--templates-dir": templates, "--model-package-arn": PACKAGE_ARN},
                [Slot("--stage", around(["staging", "production"])),
                 Slot("--model-package-arn", ARNS), Slot("--timeout", DURATIONS),
                 *common_slots(also_named="--model-package-arn")]),
        Command(["endpoint", "test"], {
            "--dry-run": None, "--endpoint": "smbridge-demo-staging",
            "--payload": str(REPO / "model-deploy/tests/payload.csv"),
            "--expect": str(REPO / "model-deploy/tests/expect.json")},
            [Slot("--endpoint", NAMES), *aws]),
        Command(["trigger", "simulate"], {"--dry-run": None, "--event": "EVENT",
                                          "--routes": "ROUTES"},
                [Slot("--event", EVENT_FILES, "event", "detail-type"),
                 Slot("--routes", ROUTE_FILES),
                 Slot("SMBRIDGE_REGISTRY_ACCOUNTS", around([ACCOUNT, f"{ACCOUNT},222222222222"],
                                                           f"{ACCOUNT},", "\u0661" * 12)),
                 *aws]),
        Command(["trigger", "replay"], {"--dry-run": None, "--queue-url": QUEUE_URL,
                                        "--routes": "ROUTES"},
                [Slot("--queue-url", TEXTS), Slot("--max-messages", INTEGERS),
                 Slot("--routes", ROUTE_FILES), *aws]),
        Command(["trigger", "package"], {"--dry-run": None}, [
            Slot("--mode", around(["pip", "environment"])),
            Slot("--platform", around(["manylinux2014_aarch64", "manylinux2014_x86_64"])),
            Slot("--python-version", around(["3.12", "3.11"])),
            Slot("--out", TEXTS),
        ]),
        Command(["ado", "approvals", "approve"], {"ID": APPROVAL_ID, "--comment": "ok",
                                                  "--dry-run": None},
                [Slot("ID", UUIDS), Slot("--comment", TEXTS),
                 Slot("--organization", NAMES, "organization"),
                 Slot("--project", NAMES, "project")]),
        Command(["ado", "approvals", "list"], {"--dry-run": None}, [
            Slot("--state", around(["pending", "all"])), Slot("--top", INTEGERS, "--top"),
            Slot("--organization", NAMES, "organization"),
        ]),
        Command(["ado", "setup"], {"--dry-run": None}, [
            Slot("--prefix", NAMES, "--prefix"),
            Slot("--pipeline-id", INTEGERS, "--pipeline-id"),
        ]),
        Command(["config", "show"], {}, [
            *aws,
            Slot("SMBRIDGE_*", ENV_OVERRIDES),
        ]),
    ]  # fmt: skip


# -- files and variables ---------------------------------------------------------------------

# What `trigger simulate --event` reads: the events of test_fuzz_events.py as JSON text. Three
# kinds have their own tests instead (test_trigger_simulate_event_file_python_cannot_read):
# bytes that are not UTF-8, integers of more digits than Python reads, and deep nesting.
EVENT_FILES = (
    fuzz_events.cases()
    .filter(
        lambda case: (
            case.form in ("dict", "text")
            and case.kind != "deep"
            and not fuzz_events.contains_long_int(case.event)
        )
    )
    .map(lambda case: case.event if isinstance(case.event, str) else encode(case.event))
)
# `--routes`: the routing tables of test_fuzz_configs.py (its text, UTF-8: see above).
ROUTE_FILES = (
    fuzz_configs.routing_cases()
    .map(lambda case: case[0])
    .filter(lambda text: not re.search("[\ud800-\udfff]", text))
)
ENV_OVERRIDES = st.tuples(
    # names as an environment can hold them (no lone surrogate), and printable: the error line
    # shows others escaped (test_fuzz_configs.py checks those)
    fuzz_configs.override_names().filter(lambda item: item[0].isprintable()),
    fuzz_configs.override_values().map(_argv_safe),
)


def write_work(work: Path) -> None:
    # the repository's bridge.yaml, without its comments (every command reads it: faster)
    (work / "bridge.yaml").write_text(yaml.safe_dump(fuzz_configs.BRIDGE_YAML, sort_keys=False))
    shutil.copy(REPO / "model-deploy/config/staging.json", work / "staging.json")
    (work / "routes.json").write_text(json.dumps(ROUTES))
    (work / "event.json").write_text(json.dumps(SEEDS["model-package-approved.json"]))


@st.composite
def invocations(draw: st.DrawFn, work: Path) -> tuple[list[str], dict[str, str], Slot | None, bool]:
    """(argv, environment, the slot changed: None for the command as it is, -o json)."""
    command = draw(st.sampled_from(commands(work)))
    slot = draw(st.one_of(st.none(), st.sampled_from(command.slots)))
    values: dict[str, Any] = dict(command.base)
    environ: dict[str, str] = {}
    files = {"--event": work / "event.json", "--routes": work / "routes.json"}
    if slot is not None:
        value = draw(slot.values)
        if slot.flag in files:  # a file with this content
            path = work / f"fuzzed{slot.flag.replace('-', '_')}.json"
            path.write_bytes(value.encode("utf-8"))
            files[slot.flag] = path
        elif slot.flag == "SMBRIDGE_*":
            (name, _), override = value
            environ[name] = override
        elif slot.flag.startswith("SMBRIDGE_"):
            environ[slot.flag] = value
        else:
            values[slot.flag] = value
    words = list(command.words)
    positional = [values.pop(k) for k in list(values) if k.isupper() and not k.startswith("-")]
    options: list[str] = []
    for flag, value in values.items():
        if value is None:
            options.append(flag)
        elif isinstance(value, list):  # --param, repeated
            for item in value:
                options += [f"{flag}={item}"] if item.startswith("-") else [flag, item]
        elif value in ("EVENT", "ROUTES"):
            options += [flag, str(files[flag])]
        elif value.startswith("-") or draw(st.booleans()):
            options.append(f"{flag}={value}")  # argparse would read "-x" as an option
        else:
            options += [flag, value]
    if slot is not None and slot.flag == "--timeout" and command.words == ["pipeline", "start"]:
        options.append("--wait")
    # positionals must not read as options; "--" would end the options for all that follow
    positional = [p if p and not p.startswith("-") else "x" + p for p in positional]
    argv = [*words, *positional, *options]
    json_flag = draw(st.sampled_from([None, None, ["-o", "json"], ["--output=json"], ["-ojson"]]))
    if json_flag:
        argv = [*json_flag, *argv] if draw(st.booleans()) else [*argv, *json_flag]
    return argv, environ, slot, json_flag is not None


def run(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, environ),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's usage error
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def check_invocation(
    argv: list[str], environ: dict[str, str], slot: Slot | None, json_mode: bool
) -> None:
    code, out, err = run(argv, environ)
    note = f"smbridge {argv!r} with {environ!r}: exit {code}\nstdout: {out[:2000]}\nstderr: {err}"
    assert code in DOCUMENTED_EXIT_CODES, note
    assert code in DRY_RUN_EXIT_CODES, note
    for text in (out, err):
        assert "Traceback" not in text and "internal error" not in text, note
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    if json_mode:
        document = json.loads(out)  # exactly one document: anything after it fails here
        assert isinstance(document, dict), note
        if code != 0:
            assert document["status"] == "error" and document["exit_code"] == code, note
            assert one_line(document["error"]), note
    else:
        # every line on stderr is a warning or the error (nothing spills over a line break)
        if code != 0:
            others = [ln for ln in err.splitlines() if not ln.startswith(("error: ", "warning: "))]
            assert not others, note
    if code == 0:
        assert not errors, note
        return
    assert len(errors) == 1, note
    line = errors[0]
    if slot is not None:
        names = slot.names
        if slot.flag == "SMBRIDGE_*":  # the variable, or (SMBRIDGE_CONFIG) the file it names
            names = (*environ, *(v for v in environ.values() if v.strip()))
        assert any(name in line for name in names), f"names none of {names}: {note}"


def test_every_command_line_exits_0_or_2_in_one_line_naming_the_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_work(tmp_path)

    @fuzz_settings(EXAMPLES["cli"])
    @given(invocations(tmp_path))
    def prop(invocation: tuple[list[str], dict[str, str], Slot | None, bool]) -> None:
        COUNTS["cli"] += 1
        check_invocation(*invocation)

    run_counted(COUNTS, "cli", EXAMPLES["cli"], prop)


def test_the_total_budget_is_at_least_10000_examples():
    total = sum(sum(module.EXAMPLES.values()) for module in (fuzz_events, fuzz_configs)) + sum(
        EXAMPLES.values()
    )
    print(f"fuzz total: {total} examples over tests/reliability/test_fuzz_*.py")
    assert total >= 10_000


# -- regressions: bugs the fuzzing found ---------------------------------------------------------


@pytest.mark.parametrize(
    "duration", ["9" * 400, "9" * 400 + "h", "\u0661h", "\uff11\uff12m", "1.5\u0661s"]
)
def test_durations_are_finite_and_ascii(tmp_path, monkeypatch, duration):
    # was: accepted; "999...9" (400 digits) is float('inf') seconds, "\u0661h" an hour (\d and
    # float() read any Unicode digit)
    monkeypatch.chdir(tmp_path)
    write_work(tmp_path)
    code, _, err = run(["pipeline", "start", "--dry-run", "--wait", "--timeout", duration], {})
    assert code == 2
    assert err.startswith("error: --timeout ")


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe{}",
        b'{"a": ' + b"1" * (INT_DIGITS + 1) + b"}",
        b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
def test_trigger_simulate_event_file_python_cannot_read(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    write_work(tmp_path)
    (tmp_path / "bad.json").write_bytes(content)
    argv = ["trigger", "simulate", "--dry-run", "--event", "bad.json", "--routes", "routes.json"]
    code, _, err = run(argv, {})
    assert code == 2 and err.startswith("error: --event ")


def test_trigger_routes_file_not_utf8(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_work(tmp_path)
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{}")
    argv = ["trigger", "simulate", "--dry-run", "--event", "event.json", "--routes", "bad.json"]
    code, _, err = run(argv, {})
    assert code == 2 and err.startswith("error: --routes ")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["ado", "approvals", "list", "--top", "0"], "--top"),
        (["ado", "setup", "--prefix", "..x"], "--prefix"),
        (["ado", "setup", "--pipeline-id", "0"], "--pipeline-id"),
    ],
)
def test_ado_errors_name_the_flag(tmp_path, monkeypatch, argv, flag):
    monkeypatch.chdir(tmp_path)
    write_work(tmp_path)
    code, _, err = run([*argv, "--dry-run"], {})
    assert code == 2 and err.startswith(f"error: {flag}")


def test_cli_region_takes_ascii_digits_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_work(tmp_path)
    assert run(["pipeline", "status", "--dry-run", "--region", "eu-west-\u0661"], {})[0] == 2


def test_cli_arn_takes_ascii_digits_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_work(tmp_path)
    arn = PACKAGE_ARN.replace(ACCOUNT, "\u0661" * 12)
    assert run(["registry", "describe", "--dry-run", arn], {})[0] == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["pipeline", "start", "--param", "a\nb=1", "--param", "a\nb=2"],
        ["deploy", "--stage", "stag\ning", "--stage-config", "staging.json",
         "--templates-dir", str(REPO / "model-deploy/templates"), "--model-package-arn",
         PACKAGE_ARN],
    ],
)  # fmt: skip
def test_cli_echoes_stay_on_one_line(tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    write_work(tmp_path)
    code, _, err = run([*argv, "--dry-run"], {})
    assert code == 2
    assert len(err.splitlines()) == 1, err


def test_the_alphabet_of_argv():
    assert _argv_safe("a\x00b\ud800c") == "abc"
    assert set(string.printable) <= set(_argv_safe(string.printable))
