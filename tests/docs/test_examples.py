"""Every full example config in the docs and the README passes `stellara config check`.

A full example is a `yaml` block whose first line is exactly `# stellara.yaml`; other yaml
blocks are fragments. Each `${VAR}` gets a dummy value of its own (keys must differ from one
another); `${VAR:-default}` keeps its default, which is how an example shows a value that must
have a certain form (a database URL, a port).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stellara.assembly.config import parse_config
from stellara.cli import describe_routes
from stellara.errors import ConfigError
from tests.docs import DOCS, ROOT, FencedBlock, fenced_blocks

MARKER = "# stellara.yaml"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def doc_files() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


def config_blocks(paths: list[Path]) -> list[FencedBlock]:
    return [
        block
        for path in paths
        for block in fenced_blocks(path)
        if block.language == "yaml" and block.text.split("\n", 1)[0] == MARKER
    ]


def config_problems(block: FencedBlock) -> list[str]:
    """What `stellara config check` reports for the block (nothing when it passes)."""
    references = _ENV_REF.findall(block.text)
    environ = {name: f"dummy-value-{name.lower()}" for name, default in references if not default}
    try:
        config = parse_config(block.text, source=block.where, environ=environ)
    except ConfigError as exc:
        return exc.problems
    describe_routes(config)  # the rest of what `config check` prints
    return []


EXAMPLES = config_blocks(doc_files())


def test_docs_contain_full_example_configs() -> None:
    assert EXAMPLES, f"no yaml block starting with {MARKER!r} in docs/**/*.md or README.md"


@pytest.mark.parametrize("block", EXAMPLES, ids=[block.where for block in EXAMPLES])
def test_example_config_passes_config_check(block: FencedBlock) -> None:
    problems = config_problems(block)
    assert not problems, f"{block.where}: the example config is invalid:\n" + "\n".join(problems)


def test_config_blocks_found_top_level_and_nested_only_with_marker(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "```yaml\n# stellara.yaml\nmodels: []\n```\n\n"
        '!!! example "Nested"\n\n'
        '    ```yaml title="stellara.yaml"\n    # stellara.yaml\n    keys: []\n    ```\n\n'
        "```yaml\nserver: {port: 4000}\n```\n\n"
        "```text\n# stellara.yaml\n```\n\n"
        "````yaml\n # stellara.yaml\n````\n",
        encoding="utf-8",
    )
    found = config_blocks([page])
    assert [(block.line, block.text) for block in found] == [
        (3, "# stellara.yaml\nmodels: []\n"),
        (10, "# stellara.yaml\nkeys: []\n"),
    ]


def test_config_problems_name_the_broken_keys(tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text(
        "```yaml\n# stellara.yaml\nserver: {prot: 4000}\n"
        "models: [{name: m, targets: [{provider: nope, model: x}]}]\n```\n",
        encoding="utf-8",
    )
    [block] = config_blocks([page])
    problems = "\n".join(config_problems(block))
    assert "server.prot" in problems
    assert "models[0].targets[0].provider" in problems


def test_env_references_get_dummies_and_defaults_are_kept(tmp_path: Path) -> None:
    page = tmp_path / "env.md"
    page.write_text(
        "```yaml\n# stellara.yaml\n"
        "server: {master_key: ${MASTER_KEY}, port: ${PORT:-4100}}\n"
        "usage_store: {url: '${DATABASE_URL:-postgresql://u@h/db}'}\n"
        "keys: [{key: ${APP_KEY}, user: alice}, {key: ${BOB_KEY}, user: bob}]\n```\n",
        encoding="utf-8",
    )
    [block] = config_blocks([page])
    assert config_problems(block) == []
