"""``smbridge endpoint test``: real invocations of an endpoint with sample rows, checked against
expectations (status, shape, range, accuracy on labelled rows, latency budget), as a readable
report and JUnit XML."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.aws.endpoints import Invocation, invoke
from bridge.core.output import Reporter
from bridge.errors import ConfigError, UserError, first_error


class Expectations(BaseModel):
    """``model-deploy/tests/expect.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content_type: str = "text/csv"
    accept: str = "text/csv"
    values_per_row: int = Field(1, ge=1)
    min_value: float | None = 0.0
    max_value: float | None = 1.0
    labels: list[int] | None = None
    threshold: float = 0.5
    min_accuracy: float | None = Field(None, ge=0, le=1)
    latency_p95_ms: float = Field(1000, gt=0)


class Check(BaseModel):
    name: str
    passed: bool
    detail: str


class EndpointTestReport(BaseModel):
    endpoint: str
    rows: int
    checks: list[Check]
    latency_ms: dict[str, float]
    predictions: list[list[float]]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


class EndpointTestFailed(UserError):
    """At least one check failed (exit code 4, like a failed execution)."""

    exit_code = 4


def load_payload(path: str | Path) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--payload {path}: file not found")
    rows = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    rows = [row for row in rows if row and not row.startswith("#")]
    if not rows:
        raise UserError(f"--payload {path}: no rows")
    return rows


def load_expectations(path: str | Path | None) -> Expectations:
    if path is None:
        return Expectations()
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--expect {path}: file not found")
    try:
        return Expectations.model_validate(json.loads(file.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except ValidationError as exc:
        key, message = first_error(exc)
        raise ConfigError(f"{file}: {key}: {message}") from None


def _values(body: str) -> list[float]:
    text = body.strip()
    if text.startswith("{") or text.startswith("["):
        document = json.loads(text)
        if isinstance(document, dict):
            document = document.get("predictions", document.get("scores", []))
        flat = [x for item in document for x in (item if isinstance(item, list) else [item])]
        return [float(x["score"]) if isinstance(x, dict) else float(x) for x in flat]
    return [float(x) for x in text.replace("\n", ",").split(",") if x.strip()]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def run_endpoint_test(
    runtime: Any,
    endpoint: str,
    rows: list[str],
    expect: Expectations,
    *,
    reporter: Reporter | None = None,
    monotonic: Callable[[], float] = time.perf_counter,
) -> EndpointTestReport:
    """Invoke ``endpoint`` once per row and check every expectation."""
    reporter = reporter or Reporter.silent()
    if expect.labels is not None and len(expect.labels) != len(rows):
        raise UserError(f"expect.labels has {len(expect.labels)} entries for {len(rows)} rows")
    calls: list[Invocation] = []
    for row in rows:
        calls.append(
            invoke(
                runtime,
                endpoint,
                row,
                content_type=expect.content_type,
                accept=expect.accept,
                monotonic=monotonic,
            )
        )
    checks: list[Check] = []
    failed = [(i, c) for i, c in enumerate(calls) if c.status != 200]
    detail = "; ".join(f"row {i + 1}: HTTP {c.status} {c.error}".strip() for i, c in failed[:3])
    checks.append(
        Check(name="status 200 for every row", passed=not failed, detail=detail or "all 200")
    )
    predictions: list[list[float]] = []
    shape_errors: list[str] = []
    for index, call in enumerate(calls):
        if call.status != 200:
            predictions.append([])
            continue
        try:
            values = _values(call.body)
        except (ValueError, TypeError, KeyError):
            values = []
            shape_errors.append(f"row {index + 1}: unparseable response {call.body[:60]!r}")
        else:
            if len(values) != expect.values_per_row:
                shape_errors.append(
                    f"row {index + 1}: {len(values)} values, expected {expect.values_per_row}"
                )
        predictions.append(values)
    checks.append(
        Check(
            name=f"{expect.values_per_row} value(s) per row",
            passed=not shape_errors,
            detail="; ".join(shape_errors[:3]) or "all rows",
        )
    )
    flat = [v for values in predictions for v in values]
    low, high = expect.min_value, expect.max_value
    out_of_range = [
        v for v in flat if (low is not None and v < low) or (high is not None and v > high)
    ]
    checks.append(
        Check(
            name=f"values within [{low}, {high}]",
            passed=bool(flat) and not out_of_range,
            detail=f"{len(out_of_range)} outside" if out_of_range else f"{len(flat)} values",
        )
    )
    if expect.labels is not None and expect.min_accuracy is not None:
        correct = sum(
            1
            for values, label in zip(predictions, expect.labels, strict=True)
            if values and int(values[0] >= expect.threshold) == label
        )
        accuracy = correct / len(rows)
        checks.append(
            Check(
                name=f"accuracy >= {expect.min_accuracy}",
                passed=accuracy >= expect.min_accuracy,
                detail=f"{accuracy:.3f} on {len(rows)} labelled rows",
            )
        )
    latencies = [c.latency_ms for c in calls]
    p50, p95 = _percentile(latencies, 0.5), _percentile(latencies, 0.95)
    checks.append(
        Check(
            name=f"latency p95 <= {expect.latency_p95_ms:g} ms",
            passed=p95 <= expect.latency_p95_ms,
            detail=f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(latencies):.0f} ms",
        )
    )
    report = EndpointTestReport(
        endpoint=endpoint,
        rows=len(rows),
        checks=checks,
        latency_ms={"p50": p50, "p95": p95, "max": max(latencies)},
        predictions=predictions,
    )
    reporter.table(
        ["check", "result", "detail"],
        [[c.name, "PASS" if c.passed else "FAIL", c.detail] for c in checks],
    )
    return report


def write_junit(report: EndpointTestReport, path: str | Path) -> None:
    """One test case per check, for PublishTestResults@2."""
    failures = sum(1 for c in report.checks if not c.passed)
    suite = ElementTree.Element(
        "testsuite",
        name=f"endpoint {report.endpoint}",
        tests=str(len(report.checks)),
        failures=str(failures),
    )
    for check in report.checks:
        case = ElementTree.SubElement(
            suite, "testcase", classname=f"endpoint.{report.endpoint}", name=check.name
        )
        if not check.passed:
            ElementTree.SubElement(case, "failure", message=check.detail).text = check.detail
        else:
            ElementTree.SubElement(case, "system-out").text = check.detail
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(suite).write(target, encoding="utf-8", xml_declaration=True)
