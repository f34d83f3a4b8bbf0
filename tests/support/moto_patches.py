"""Small fixes for moto gaps the deploy tests meet (each named in the test that uses it)."""

from __future__ import annotations

import pytest


@pytest.fixture
def moto_change_sets_with_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto executes a change set without adopting its template or computing the stack's
    Outputs (create_stack does both); real CloudFormation does."""
    from moto.cloudformation.models import ChangeSet

    original = ChangeSet.apply

    def apply(self) -> None:  # type: ignore[no-untyped-def]
        original(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    monkeypatch.setattr(ChangeSet, "apply", apply)
