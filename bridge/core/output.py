"""How smbridge talks to people and programs: terminal lines, agent logging commands, or JSON.

* ``text``: readable lines on stdout, errors on stderr.
* ``agent`` (chosen automatically when ``TF_BUILD`` is set): the same lines plus ``##[group]``,
  ``##vso[task.logissue]`` for errors and ``##vso[task.setvariable …;isoutput=true]`` for outputs.
* ``json``: progress on stderr, exactly one JSON document (the result) on stdout.

On an agent (``TF_BUILD``, whatever the mode) the agent executes any line of stdout or stderr
holding ``##vso[`` (or starting with ``##[``). Every line goes through :meth:`Reporter._write`:
our own logging commands are written as built by :mod:`bridge.core.agent` (which neutralises what
they carry), everything else is neutralised there, and the JSON result is escaped so that it
parses to the same values. :class:`AgentSafeStream` does the same for other writers (a logger).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, cast

from bridge.core import agent
from bridge.errors import mask, without_secrets

Mode = Literal["text", "agent", "json"]


class _Discard(io.TextIOBase):
    """A text stream that drops what it is given."""

    def write(self, text: str) -> int:
        return len(text)


class Reporter:
    """Progress, outputs and results for one command. Every secret registered is masked; on an
    agent, no text it did not write itself can become a logging command."""

    def __init__(
        self,
        mode: Mode = "text",
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        agent_safe: bool | None = None,
    ) -> None:
        self.mode: Mode = mode
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        # agent mode, or any mode inside a job (an SDK caller's default Reporter(), --output json)
        self.agent_safe = (
            (mode == "agent" or agent.on_agent()) if agent_safe is None else agent_safe
        )
        self._secrets: set[str] = set()
        self._secret_sources: list[Callable[[], Iterable[str]]] = []
        self.outputs: dict[str, str] = {}

    @classmethod
    def silent(cls) -> Reporter:
        """Prints nothing (the SDK's default): output variables are still kept in
        :attr:`outputs`."""
        return cls("text", out=_Discard(), err=_Discard(), agent_safe=False)

    @classmethod
    def for_environment(cls, output: str | None = None) -> Reporter:
        if output == "json":
            return cls("json")
        return cls("agent" if agent.on_agent() else "text")

    def add_secret(self, value: str | None) -> None:
        """Never print ``value`` (a token, a key): it is replaced by ``***``."""
        if value and len(value) >= 4:
            self._secrets.add(value)

    def add_secret_source(self, source: Callable[[], Iterable[str]]) -> None:
        """Mask whatever ``source()`` returns at the time of printing (a credential learns its
        secrets when it first reads them)."""
        self._secret_sources.append(source)

    def redact(self, text: str) -> str:
        secrets = set(self._secrets)
        for source in self._secret_sources:
            secrets.update(s for s in source() if len(s) >= 4)
        return mask(text, secrets)

    def _write(self, text: str, *, stream: TextIO | None = None, command: bool = False) -> None:
        """The one place a line is printed. ``command``: one of our own logging commands, built
        by :mod:`bridge.core.agent`; anything else is neutralised on an agent."""
        target = stream or (self._err if self.mode == "json" else self._out)
        text = self.redact(text)
        if self.agent_safe and not command:
            text = agent.neutralize(text)
        print(text, file=target, flush=True)

    def _line(self, text: str, *, stream: TextIO | None = None) -> None:
        self._write(text, stream=stream)

    def _command(self, line: str) -> None:
        self._write(line, command=True)

    def info(self, message: str) -> None:
        self._line(message)

    def progress(self, message: str) -> None:
        """A timestamped line for long waits."""
        stamp = datetime.now(UTC).strftime("%H:%M:%SZ")
        self._line(f"[{stamp}] {message}")

    def warning(self, message: str) -> None:
        if self.mode == "agent":
            self._command(agent.log_issue("warning", self.redact(message)))
        else:
            self._line(f"warning: {message}", stream=self._err)

    def error(self, message: str) -> None:
        if self.mode == "agent":
            self._command(agent.log_issue("error", self.redact(message)))
        else:
            self._line(f"error: {message}", stream=self._err)

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        if self.mode == "agent":
            self._command(agent.group_start(self.redact(title)))
            try:
                yield
            finally:
                self._command(agent.group_end())
        else:
            self._line(f"== {title}")
            yield

    def traceback(self, text: str) -> None:
        """A traceback (``--debug``): on stderr, secrets masked like everything else, and any
        part shaped like a credential described (exception messages quote their inputs: a
        profile name, a header)."""
        self._line(without_secrets(self.redact(text.rstrip())), stream=self._err)

    def output_variable(self, name: str, value: str) -> None:
        """Publish ``name`` for later pipeline steps (agent) and in the JSON result."""
        self.outputs[name] = value
        if self.mode == "agent":
            # masked before escaping: an escaped secret (``%`` -> ``%AZP25``) would not match
            self._command(agent.set_output_variable(name, self.redact(value)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        for line in format_table(headers, rows):
            self._line(line)

    def result(self, data: dict[str, Any]) -> None:
        """The command's result: one JSON document in ``json`` mode, nothing more otherwise."""
        if self.mode == "json":
            document = self.redact(json.dumps(data, indent=2, sort_keys=True, default=str))
            if self.agent_safe:
                document = agent.neutralize_json(document)
            print(document, file=self._out, flush=True)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(str(cell))) for w, cell in zip(widths, row, strict=True)]
    render = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return [render(headers).rstrip(), render(["-" * w for w in widths]).rstrip()] + [
        render(row).rstrip() for row in rows
    ]


class AgentSafeStream:
    """A line-buffered text stream for writers other than :class:`Reporter` (a logging handler,
    which writes whole records): each line is neutralised as it completes, so nothing written
    through it is executed by the agent, and JSON log lines still parse to the same values
    (:func:`agent.neutralize_json`). A partial line waits for its end (or :meth:`close`): written
    early, it could join the next write into a command."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._target.write(agent.neutralize_json(line) + "\n")
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def close(self) -> None:
        if self._pending:
            self._target.write(agent.neutralize_json(self._pending))
            self._pending = ""
        self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def agent_safe_stream(target: TextIO) -> TextIO:
    """``target`` itself off an agent; on an agent, an :class:`AgentSafeStream` around it."""
    return cast(TextIO, AgentSafeStream(target)) if agent.on_agent() else target
