"""A missing server or referee skips the suite on a laptop and fails it in CI."""

from __future__ import annotations

import pytest

from . import servers


def test_missing_tool_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-server-xyz is not installed.*scripts/test"):
        servers.require("no-such-server-xyz")


def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-server-xyz is not installed"):
        servers.require("no-such-server-xyz")
