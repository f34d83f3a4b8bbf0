"""How smbridge talks to people and programs: terminal lines, agent logging commands, or JSON.

* ``text``: readable lines on stdout, errors on stderr.
* ``agent`` (chosen automatically when ``TF_BUILD`` is set): the same lines plus ``##[group]``,
  ``##vso[task.logissue]`` for errors and ``##vso[task.setvariable …;isoutput=true]`` for outputs.
* ``json``: progress on stderr, exactly one JSON document (the result) on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from bridge import agent
from bridge.errors import mask

Mode = Literal["text", "agent", "json"]


class Reporter:
    """Progress, outputs and results for one command. Every secret registered is masked."""

    def __init__(
        self, mode: Mode = "text", *, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.mode: Mode = mode
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._secrets: set[str] = set()
        self._secret_sources: list[Callable[[], Iterable[str]]] = []
        self.outputs: dict[str, str] = {}

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

    def _line(self, text: str, *, stream: TextIO | None = None) -> None:
        target = stream or (self._err if self.mode == "json" else self._out)
        print(self.redact(text), file=target, flush=True)

    def info(self, message: str) -> None:
        self._line(message)

    def progress(self, message: str) -> None:
        """A timestamped line for long waits."""
        stamp = datetime.now(UTC).strftime("%H:%M:%SZ")
        self._line(f"[{stamp}] {message}")

    def warning(self, message: str) -> None:
        if self.mode == "agent":
            self._line(agent.log_issue("warning", self.redact(message)))
        else:
            self._line(f"warning: {message}", stream=self._err)

    def error(self, message: str) -> None:
        if self.mode == "agent":
            self._line(agent.log_issue("error", self.redact(message)))
        else:
            self._line(f"error: {message}", stream=self._err)

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        if self.mode == "agent":
            self._line(agent.group_start(title))
            try:
                yield
            finally:
                self._line(agent.group_end())
        else:
            self._line(f"== {title}")
            yield

    def traceback(self, text: str) -> None:
        """A traceback (``--debug``): on stderr, secrets masked like everything else."""
        self._line(text.rstrip(), stream=self._err)

    def output_variable(self, name: str, value: str) -> None:
        """Publish ``name`` for later pipeline steps (agent) and in the JSON result."""
        self.outputs[name] = value
        if self.mode == "agent":
            self._line(agent.set_output_variable(name, value))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        for line in format_table(headers, rows):
            self._line(line)

    def result(self, data: dict[str, Any]) -> None:
        """The command's result: one JSON document in ``json`` mode, nothing more otherwise."""
        if self.mode == "json":
            document = json.dumps(data, indent=2, sort_keys=True, default=str)
            print(self.redact(document), file=self._out, flush=True)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(str(cell))) for w, cell in zip(widths, row, strict=True)]
    render = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return [render(headers).rstrip(), render(["-" * w for w in widths]).rstrip()] + [
        render(row).rstrip() for row in rows
    ]
