"""Moved to :mod:`bridge.sandbox.ado_contract` (the sandbox and the tests share it); kept as a
re-export for the importers outside tests/ (benchmarks/bench_trigger_delivery.py). New code
imports from ``bridge.sandbox.ado_contract``."""

from __future__ import annotations

from bridge.sandbox.ado_contract import (
    APPROVAL_CHECK_TYPE_ID,
    CHECK_CONFIGURATION_TYPES,
    CHECK_CONFIGURATION_WRITES,
    EXCLUSIVE_LOCK_CHECK_TYPE_ID,
    REFERENCE_DIR,
    SPEC_FILES,
    AzureDevOpsContract,
    ContractViolation,
    Operation,
)

__all__ = [
    "APPROVAL_CHECK_TYPE_ID",
    "CHECK_CONFIGURATION_TYPES",
    "CHECK_CONFIGURATION_WRITES",
    "EXCLUSIVE_LOCK_CHECK_TYPE_ID",
    "REFERENCE_DIR",
    "SPEC_FILES",
    "AzureDevOpsContract",
    "ContractViolation",
    "Operation",
]
