"""Tests that keep the documentation site honest, and the fenced-block reader they share.

A page's fenced code blocks are what these tests run or check: full example configs (a `yaml`
block whose first line is `# stellara.yaml`) and the quick start's `sh` and `python` blocks.
Blocks may sit indented inside admonitions or content tabs; their indentation is removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"

_OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class FencedBlock:
    """One fenced code block: where it opens, its language (the info string's first word),
    and its text without the fences."""

    path: Path
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        """`path:line`, relative to the repository when inside it; a stable test id."""
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown}:{self.line}"


def fenced_blocks(path: Path) -> list[FencedBlock]:
    """Every fenced block of the Markdown file `path`, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[FencedBlock] = []
    index = 0
    while index < len(lines):
        opening = _OPENING.match(lines[index])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            line = lines[end]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            end += 1
        language = _language(opening["info"])
        blocks.append(FencedBlock(path, index + 1, language, "\n".join(body) + "\n"))
        index = end + 1
    return blocks


def _language(info: str) -> str:
    """`yaml`, `yaml title="x"`, `{ .yaml }` and `{.yaml .copy}` all name `yaml`."""
    words = info.strip().lstrip("{").strip().lstrip(".").split()
    return words[0].lower() if words else ""
