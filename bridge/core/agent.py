"""Azure Pipelines agent integration: logging commands, output variables, run identity.

Only string formatting lives here; :mod:`bridge.core.output` decides when to use it.
See https://learn.microsoft.com/azure/devops/pipelines/scripts/logging-commands

The agent reads a step's stdout AND stderr line by line (a line ends at ``\\n``, ``\\r\\n`` or a
bare ``\\r``) and executes every line holding ``##vso[`` anywhere (``Command.TryParse``: the
first ``##vso[`` starts the command, the first ``]`` after it ends the properties, the rest is
data); lines starting with ``##[`` are formatting commands (``##[error]``, ``##[group]``...).
So every text smbridge did not write itself goes through :func:`neutralize` (lines) or
:func:`neutralize_json` (documents) before it is printed on an agent; only the command builders
below write ``##vso[`` or ``##[``, and they neutralise the foreign text they carry.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass


def on_agent(environ: Mapping[str, str] | None = None) -> bool:
    """True when running inside an Azure Pipelines job (the agent sets ``TF_BUILD=True``)."""
    environ = os.environ if environ is None else environ
    return environ.get("TF_BUILD", "").lower() == "true"


# ``##vso[`` and ``##[``, also with characters in between that a culture-sensitive match skips:
# older agents search with ``message.IndexOf("##vso[")`` (current culture), which ignores
# zero-width and control characters (U+200B, U+00AD, U+0000...). Any character outside
# printable ASCII counts as such here; matching too much only costs a changed ``#``.
_SKIPPABLE = r"[^\x20-\x7e]*"
_COMMAND = re.compile(
    "#" + _SKIPPABLE + "#" + _SKIPPABLE + f"(?:v{_SKIPPABLE}s{_SKIPPABLE}o{_SKIPPABLE})?\\[",
    re.IGNORECASE,
)


def neutralize(text: str) -> str:
    """``text`` (from a service, a user, an exception) made inert for the agent: each ``#`` of a
    ``##vso[`` or ``##[`` becomes ``*``, as the agent itself does to output it must not execute
    (``**vso[``). The result holds neither sequence on any line, however it is split, and the
    replacement cannot form a new one. Everything else is unchanged."""
    return _COMMAND.sub(lambda match: match.group(0).replace("#", "*"), text)


def neutralize_json(document: str) -> str:
    """A JSON document without ``##vso[`` or ``##[``: the ``[`` ending each becomes the escape
    ``\\u005b``, so the document still parses to exactly the same values. In JSON ``#`` occurs
    only inside strings, and a match cannot leave one (``"`` is printable ASCII)."""
    return _COMMAND.sub(lambda match: match.group(0)[:-1] + "\\u005b", document)


def _escape_data(value: str) -> str:
    return value.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace("]", "%5D").replace(";", "%3B")


def group_start(title: str) -> str:
    """A collapsible section; ``title`` may hold foreign text (it stays one line)."""
    return f"##[group]{_escape_data(neutralize(title))}"


def group_end() -> str:
    return "##[endgroup]"


def log_issue(kind: str, message: str) -> str:
    """``kind`` is ``error`` or ``warning``; the agent shows it in the run summary. ``message``
    may hold foreign text: it is neutralised, then escaped onto this one line."""
    return f"##vso[task.logissue type={_escape_property(kind)}]{_escape_data(neutralize(message))}"


def set_output_variable(name: str, value: str, *, secret: bool = False) -> str:
    """An output variable usable by later steps as ``$(<step name>.<name>)``.

    ``value`` is kept exactly (escaped, never neutralised): it is the command's data, after the
    first ``]``, which the agent stores and never parses for another command."""
    flags = f"variable={_escape_property(name)};isoutput=true"
    if secret:
        flags += ";issecret=true"
    return f"##vso[task.setvariable {flags}]{_escape_data(value)}"


@dataclass(frozen=True)
class AgentRun:
    """The identity of the Azure DevOps run this process belongs to (empty off an agent)."""

    build_id: str = ""
    build_number: str = ""
    job_attempt: str = ""
    collection_id: str = ""
    project_id: str = ""
    definition_name: str = ""
    repository: str = ""
    commit: str = ""
    source_branch: str = ""
    job_id: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> AgentRun:
        env = os.environ if environ is None else environ
        if not on_agent(env):
            return cls()
        return cls(
            build_id=env.get("BUILD_BUILDID", ""),
            build_number=env.get("BUILD_BUILDNUMBER", ""),
            job_attempt=env.get("SYSTEM_JOBATTEMPT", ""),
            collection_id=env.get("SYSTEM_COLLECTIONID", ""),
            project_id=env.get("SYSTEM_TEAMPROJECTID", ""),
            definition_name=env.get("BUILD_DEFINITIONNAME", ""),
            repository=env.get("BUILD_REPOSITORY_NAME", ""),
            commit=env.get("BUILD_SOURCEVERSION", ""),
            source_branch=env.get("BUILD_SOURCEBRANCH", ""),
            job_id=env.get("SYSTEM_JOBID", ""),
        )

    @property
    def present(self) -> bool:
        return bool(self.build_id)

    def tags(self) -> dict[str, str]:
        """AWS tags that tie a resource to this run (empty off an agent)."""
        if not self.present:
            return {}
        tags = {
            "azdo:build-id": self.build_id,
            "azdo:build-number": self.build_number,
            "azdo:repository": self.repository,
            "azdo:commit": self.commit,
            "azdo:pipeline": self.definition_name,
        }
        return {key: value[:256] for key, value in tags.items() if value}

    def request_token(self, *scope: str) -> str | None:
        """A ClientRequestToken stable across retries of one step in one job attempt.

        A retried step (same build, job and attempt) gets the same token, so SageMaker returns the
        execution it already started; a re-run of the job (a new attempt) starts a new one.
        """
        if not self.present:
            return None
        material = "\n".join(
            (
                self.collection_id,
                self.project_id,
                self.build_id,
                self.job_id,
                self.job_attempt,
                *scope,
            )
        )
        return "azdo-" + hashlib.sha256(material.encode()).hexdigest()[:59]
