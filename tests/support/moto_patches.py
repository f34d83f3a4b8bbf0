"""The moto fixes of :mod:`bridge.sandbox.moto_fixes` as pytest fixtures (each named in the test
that uses it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.sandbox.moto_fixes import (
    MOTO_UNSUPPORTED,
    change_sets_adopt_their_template,
    moto_compatible,
)

__all__ = ["MOTO_UNSUPPORTED", "moto_change_sets_with_outputs", "moto_compatible"]


@pytest.fixture
def moto_change_sets_with_outputs() -> Iterator[None]:
    """moto executes a change set without adopting its template or computing the stack's
    Outputs (create_stack does both); real CloudFormation does."""
    with change_sets_adopt_their_template():
        yield
