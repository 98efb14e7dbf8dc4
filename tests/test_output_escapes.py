"""No output a person may read in a terminal writes C1 controls or bidi overrides raw: the
stored URL has them, every `runner results` format shows them escaped, and JSON and XML
still give the original text to a parser."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from tests.support.services import run_cli, runner_env

RAW = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_results_in_every_format_escape_c1_controls_and_bidi_overrides(sqlite_url, target) -> None:
    env = runner_env(sqlite_url, None)
    url = target.url("/ok") + "?a=\u202egnp.exe\x9b31m\x85\u2066x"
    out = run_cli(["submit", url, "--wait"], env)
    assert out.returncode == 0, out.stderr
    assert not RAW.search(out.stdout + out.stderr)
    outputs = {fmt: run_cli(["results", "--format", fmt], env) for fmt in ("table", "json", "csv", "junit")}
    for fmt, result in outputs.items():
        assert result.returncode == 0, (fmt, result.stderr)
        assert not RAW.search(result.stdout), (fmt, result.stdout)
        assert "\\u202e" in result.stdout or "&#x202e;" in result.stdout, (fmt, result.stdout)
    assert json.loads(outputs["json"].stdout)["url"] == url  # escaped, not changed
    case = ET.fromstring(outputs["junit"].stdout).find(".//testcase")
    assert case is not None and case.get("name") == url
