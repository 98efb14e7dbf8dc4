"""The installed version, read once from the package metadata (pyproject.toml's ``version``).

A leaf so that the CLI (``runner --version``) and the check (its User-Agent) say the same
thing, and neither can drift from what was installed.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("urltester")
except PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "0+unknown"

USER_AGENT = f"urltester/{VERSION}"
