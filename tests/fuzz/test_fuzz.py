"""Each fuzz target (tests/fuzz/targets.py) for the profile's number of examples."""

from __future__ import annotations

import pytest
from hypothesis import given

from tests.fuzz.targets import TARGETS, Target


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_fuzz(target: Target) -> None:
    given(target.strategy)(target.check)()
