"""The whole loop as production runs it, on this machine (``smbridge demo``, bridge/demo/loop.py):
moto's server and the Azure DevOps stand-in on loopback, the approval delivered through the
trigger rule of infra/trigger.yaml to the real trigger, every command a subprocess of the real
CLI, each Azure DevOps request held against the OpenAPI specs (a violation fails the run). What
the sandbox holds at the end (stacks per stage account, model-deploy runs) is read from it.

Scenarios (issue 10): the good path; the model below the AUC threshold (nothing registered,
nothing deployed); a failing staging test (production untouched); the production approval
rejected (production untouched); a duplicated approval event (one run); a re-approval after a
rejection (a second run)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from bridge.demo.loop import DemoOptions, DemoResult, run_demo

pytestmark = pytest.mark.slow

STAGING = ["smbridge-demo-staging"]
PRODUCTION = ["smbridge-demo-production"]


def demo(**options) -> tuple[DemoResult, str]:
    out = io.StringIO()
    result = run_demo(DemoOptions(**options), out=out)
    assert result.violations == [], result.violations
    return result, out.getvalue()


def test_an_approved_model_reaches_production():
    result, text = demo()
    assert result.ok, text
    assert result.outcome == "deployed to production"
    assert 0.9 <= result.auc <= 1.0
    (run,) = result.runs
    parameters = run["templateParameters"]
    assert parameters["modelPackageArn"] == result.model_package_arn
    assert parameters["modelPackageGroupName"] == "smbridge-demo"
    assert parameters["modelPackageVersion"] == "1"
    assert parameters["sourceEventId"]
    assert result.stacks == {"staging": STAGING, "production": PRODUCTION}
    assert result.production_approval
    assert [s.name for s in result.steps if not s.ok] == []
    assert "what was emulated:" in text


def test_a_model_below_the_threshold_registers_and_deploys_nothing():
    result, text = demo(auc_threshold=0.999)
    assert result.ok, text
    assert result.model_package_arn is None
    assert result.runs == []
    assert result.stacks == {"staging": [], "production": []}


def test_a_failing_staging_test_leaves_production_untouched():
    result, _ = demo(break_staging=True)
    assert not result.ok
    assert result.outcome == "the staging endpoint test failed: production untouched"
    assert result.stacks == {"staging": STAGING, "production": []}
    assert result.production_approval is None  # the run never reached the gate
    assert [s.name for s in result.steps if not s.ok] == ["TestStaging: smbridge endpoint test"]


def test_a_rejected_production_approval_leaves_production_untouched():
    result, text = demo(reject_production=True)
    assert result.ok, text
    assert result.outcome == "production approval rejected: production untouched"
    assert result.stacks == {"staging": STAGING, "production": []}
    assert "rejected by Dana Reviewer" in text


def test_a_duplicated_approval_event_starts_one_run():
    result, text = demo(duplicate_event=True)
    assert result.ok, text
    assert len(result.runs) == 1


def test_a_re_approval_after_a_rejection_starts_a_second_run():
    result, text = demo(reapprove=True)
    assert result.ok, text
    first, second = result.runs
    assert (
        first["templateParameters"]["sourceEventId"]
        != second["templateParameters"]["sourceEventId"]
    )
    assert first["templateParameters"]["modelPackageArn"] == result.model_package_arn
    assert second["templateParameters"]["modelPackageArn"] == result.model_package_arn


def test_the_command_prints_one_json_document_and_exits_4_on_a_failure(tmp_path):
    """``smbridge demo -o json`` as a user runs it: one document on stdout, the timeline on
    stderr; a failed step is exit 4 (ExecutionFailed)."""
    completed = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--break-staging", "-o", "json"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert completed.returncode == 4, completed.stderr
    document = json.loads(completed.stdout)
    assert document["exit_code"] == 4
    assert "staging endpoint test failed" in document["error"]
    assert "TestStaging" in completed.stderr


def test_ctrl_c_stops_everything_the_demo_started(tmp_path):
    """SIGINT while the sandbox runs: the clean-up runs (the servers are shut down in order, not
    killed with the process: "interrupted" comes after the unwinding), exit 130."""
    import re
    import signal
    import socket

    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "demo"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert process.stdout is not None
    ports: list[int] = []
    for line in process.stdout:
        if "start the sandbox" in line:
            ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", line)]
        if "set up the accounts" in line:  # the sandbox is busy: interrupt it now
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 130, rest
    assert "error: interrupted" in rest
    assert "Traceback" not in rest
    assert len(ports) == 3
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
