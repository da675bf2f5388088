"""What requirements/*.lock are made from, read from pyproject.toml for scripts/lock.

`digest` prints a hash of every input that changes what the locks resolve: requires-python, the
runtime dependencies, the dev extra and the packages locked without their dependencies. Each
lock records it, so `scripts/lock --check` finds a stale lock offline, in milliseconds, where
re-running the resolver would need the registry and would also see new releases as drift.
Order, comments and layout do not count: reordering a list does not call for a new lock.

`no-deps runtime|dev` prints the requirements that a lock pins but installs without their
declared dependencies ([tool.stellara.lock]); the dev lock has the runtime's too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def lock_inputs(pyproject: dict[str, Any]) -> dict[str, Any]:
    """The parts of pyproject.toml that the locks are resolved from, in a canonical order."""
    project = pyproject["project"]
    return {
        "requires-python": project["requires-python"],
        "dependencies": sorted(project["dependencies"]),
        "dev": sorted(project["optional-dependencies"]["dev"]),
        "runtime-no-deps": no_deps(pyproject, "runtime"),
        "dev-no-deps": no_deps(pyproject, "dev"),
    }


def no_deps(pyproject: dict[str, Any], lock: str) -> list[str]:
    """The requirements a lock pins without their dependencies; dev includes runtime's."""
    table = pyproject["tool"]["stellara"]["lock"]
    names = ["runtime-no-deps"] if lock == "runtime" else ["runtime-no-deps", "dev-no-deps"]
    return sorted(requirement for name in names for requirement in table[name])


def digest(pyproject: dict[str, Any]) -> str:
    """A sha256 of the lock inputs: equal exactly when the locks need not be made again."""
    canonical = json.dumps(lock_inputs(pyproject), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("digest")
    commands.add_parser("no-deps").add_argument("lock", choices=["runtime", "dev"])
    args = parser.parse_args(argv)
    pyproject = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))
    if args.command == "digest":
        print(digest(pyproject))
    else:
        print("\n".join(no_deps(pyproject, args.lock)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
