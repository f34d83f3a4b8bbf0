from __future__ import annotations

import io
import json

from bridge.core import agent
from bridge.core.output import Reporter


def test_logging_commands_escape_values():
    assert agent.log_issue("error", "line1\nline2 100%") == (
        "##vso[task.logissue type=error]line1%0Aline2 100%AZP25"
    )
    assert agent.set_output_variable("executionArn", "a;b]c") == (
        "##vso[task.setvariable variable=executionArn;isoutput=true]a;b]c"
    )
    assert agent.set_output_variable("x;y", "v") == (
        "##vso[task.setvariable variable=x%3By;isoutput=true]v"
    )


def test_agent_run_identity_and_request_token():
    env = {
        "TF_BUILD": "True",
        "BUILD_BUILDID": "12",
        "SYSTEM_JOBATTEMPT": "1",
        "SYSTEM_JOBID": "job",
        "BUILD_REPOSITORY_NAME": "repo",
        "BUILD_SOURCEVERSION": "c0ffee",
    }
    run = agent.AgentRun.from_environ(env)
    assert run.tags()["azdo:commit"] == "c0ffee"
    token = run.request_token("start", "demo")
    assert token == agent.AgentRun.from_environ(env).request_token("start", "demo")
    assert 32 <= len(token) <= 128
    retried = agent.AgentRun.from_environ({**env, "SYSTEM_JOBATTEMPT": "2"})
    assert retried.request_token("start", "demo") != token
    assert agent.AgentRun.from_environ({}).request_token("start") is None


def test_reporter_masks_secrets_everywhere():
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter("agent", out=out, err=err)
    reporter.add_secret("s3cr3t-token")
    reporter.info("token is s3cr3t-token")
    reporter.error("failed with s3cr3t-token")
    reporter.output_variable("x", "s3cr3t-token")
    assert "s3cr3t-token" not in out.getvalue() + err.getvalue()
    assert out.getvalue().count("***") == 3


def test_json_mode_keeps_stdout_for_the_result():
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter("json", out=out, err=err)
    reporter.info("progress")
    reporter.table(["a"], [["1"]])
    reporter.result({"status": "ok"})
    assert json.loads(out.getvalue()) == {"status": "ok"}
    assert "progress" in err.getvalue()


def test_neutralised_text_reads_like_the_agents_own_and_only_on_an_agent(monkeypatch):
    """``#`` -> ``*`` (the agent's own ``**vso`` rewrite); off an agent text is printed as is."""
    hostile = "a ##vso[task.complete result=Succeeded]b\n##[error]c"
    assert agent.neutralize(hostile) == "a **vso[task.complete result=Succeeded]b\n**[error]c"
    assert agent.log_issue("error", hostile) == (
        "##vso[task.logissue type=error]a **vso[task.complete result=Succeeded]b%0A**[error]c"
    )
    out = io.StringIO()
    Reporter("text", out=out).info(hostile)
    assert out.getvalue() == hostile + "\n"
    monkeypatch.setenv("TF_BUILD", "True")
    out = io.StringIO()
    Reporter("text", out=out).info(hostile)
    assert out.getvalue() == agent.neutralize(hostile) + "\n"
