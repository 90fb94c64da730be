"""CPython's own test_socketserver, run against muxserver.socketserver on every interpreter here.

For each Python from 3.10 to 3.13 that is installed, the interpreter's ``test.test_socketserver``
runs twice in a subprocess: once against the real standard library module and once with
``sys.modules["socketserver"]`` pointing at ``muxserver.socketserver`` (set before the test
module is imported, so its ``import socketserver`` gets ours). The two runs must agree: the same
number of tests, the same failures and errors, and exactly the same skipped tests with the same
reasons.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

# Runs inside the interpreter under test: argv = [mode, repo, result file].
DRIVER = r"""
import json, sys, unittest
mode, repo, out = sys.argv[1:4]
if mode == "muxserver":
    sys.path.insert(0, repo)
    import muxserver.socketserver
    sys.modules["socketserver"] = muxserver.socketserver
report = {"python": sys.version.split()[0]}
try:
    import test.test_socketserver as module
except unittest.SkipTest as exc:
    report["module_skipped"] = str(exc)
else:
    report["socketserver"] = module.socketserver.__name__
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromModule(module).run(result)
    report.update(
        run=result.testsRun,
        failures={test.id(): text for test, text in result.failures},
        errors={test.id(): text for test, text in result.errors},
        skipped={test.id(): reason for test, reason in result.skipped},
        unexpected_successes=[test.id() for test in result.unexpectedSuccesses],
    )
with open(out, "w") as f:
    json.dump(report, f)
"""

VERSIONS = ["3.10", "3.11", "3.12", "3.13"]


def find_interpreter(version: str) -> str | None:
    """An installed ``python<version>`` that has its ``test.test_socketserver``, or None."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python3"))
    )
    check = (
        "import sys, importlib.util; "
        f"assert sys.version_info[:2] == {tuple(int(p) for p in version.split('.'))}; "
        "assert importlib.util.find_spec('test.test_socketserver')"
    )
    for candidate in candidates:
        if candidate is None:
            continue
        probe = subprocess.run(
            [candidate, "-I", "-c", check], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return candidate
    return None


def run_suite(python: str, mode: str, workdir: Path) -> dict[str, Any]:
    """Run test_socketserver under ``python`` against ``mode`` ("stdlib" or "muxserver")."""
    workdir.mkdir()
    out = workdir / "result.json"
    proc = subprocess.run(
        [python, "-I", "-c", DRIVER, mode, str(REPO), str(out)],
        cwd=workdir,  # the tests write their scratch files (TESTFN) in the current directory
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.exists(), f"{mode} run under {python} crashed:\n{proc.stdout}\n{proc.stderr}"
    report: dict[str, Any] = json.loads(out.read_text())
    return report


@pytest.mark.timeout(150)
@pytest.mark.parametrize("version", VERSIONS)
def test_cpython_test_socketserver_passes_against_muxserver(version: str, tmp_path: Path) -> None:
    python = find_interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} with its test.test_socketserver is installed")
    stdlib = run_suite(python, "stdlib", tmp_path / "stdlib")
    ours = run_suite(python, "muxserver", tmp_path / "muxserver")

    assert ours.get("module_skipped") == stdlib.get("module_skipped")
    if "module_skipped" in stdlib:
        return
    assert ours["socketserver"] == "muxserver.socketserver"  # the aliasing really took
    problems = {**ours["failures"], **ours["errors"]}
    assert set(ours["failures"]) == set(stdlib["failures"]), "\n".join(problems.values())
    assert set(ours["errors"]) == set(stdlib["errors"]), "\n".join(problems.values())
    assert ours["skipped"] == stdlib["skipped"]
    assert ours["unexpected_successes"] == stdlib["unexpected_successes"]
    assert ours["run"] == stdlib["run"]
    if sys.platform.startswith("linux"):
        # On the platform muxserver is developed on, the whole suite must really run and pass.
        assert ours["run"] >= 25 and not problems
