"""The demo program: examples/demo.x and muxserver.rpc.demo describe the same program."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from muxserver.rpc import demo
from muxserver.rpc.demo import DEMO_PROGRAM, DemoStore, Figure, PutArgs, Rect, ShapeKind
from muxserver.rpc.xdr import UnionValue

DEMO_X = Path(__file__).resolve().parents[2] / "examples" / "demo.x"


def parse_program(text: str) -> tuple[int, dict[int, dict[int, str]]]:
    """Return (program number, {version: {procedure number: name}}) from a .x file."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    program = re.search(r"program\s+\w+\s*\{(.*)\}\s*=\s*(\w+)\s*;", text, re.DOTALL)
    assert program, "no program definition found"
    versions: dict[int, dict[int, str]] = {}
    for body, number in re.findall(
        r"version\s+\w+\s*\{(.*?)\}\s*=\s*(\w+)\s*;", program[1], re.DOTALL
    ):
        procedures = re.findall(r"(\w+)\s*\([^)]*\)\s*=\s*(\w+)\s*;", body)
        versions[int(number, 0)] = {int(n, 0): name for name, n in procedures}
    return int(program[2], 0), versions


def test_demo_x_and_the_python_definition_agree() -> None:
    number, versions = parse_program(DEMO_X.read_text())
    assert number == DEMO_PROGRAM.number == 0x20000001
    assert versions == {
        v.number: {p.number: p.name for p in v.procedures.values()}
        for v in DEMO_PROGRAM.versions.values()
    }


def test_demo_x_constants_match() -> None:
    constants = dict(re.findall(r"const\s+(\w+)\s*=\s*(\w+)\s*;", DEMO_X.read_text()))
    for name, value in constants.items():
        assert getattr(demo, name) == int(value, 0), name


@pytest.mark.external
@pytest.mark.skipif(shutil.which("rpcgen") is None, reason="rpcgen is not installed")
def test_rpcgen_accepts_demo_x(tmp_path: Path) -> None:
    target = tmp_path / "demo.x"
    target.write_text(DEMO_X.read_text())
    result = subprocess.run(
        ["rpcgen", "-h", "demo.x"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert "#define DEMO_PROG 0x20000001" in result.stdout


def test_the_store_measures_every_shape() -> None:
    store = DemoStore()
    context = None  # the store does not look at the context
    point = Figure("p", UnionValue(ShapeKind.SHAPE_POINT))
    circle = Figure("c", UnionValue(ShapeKind.SHAPE_CIRCLE, 1))
    box = Figure("b", UnionValue(ShapeKind.SHAPE_RECT, Rect(2, 5)))
    assert store.measure(point, context).area == 0.0  # type: ignore[arg-type]
    assert round(store.measure(circle, context).area, 5) == 3.14159  # type: ignore[arg-type]
    assert store.measure(box, context).area == 10.0  # type: ignore[arg-type]
    store.put(PutArgs("k", b"v"), context)  # type: ignore[arg-type]
    assert store.list(None, context) == ["k"]  # type: ignore[arg-type]
