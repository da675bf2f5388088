"""Every runnable snippet of docs/quickstart.md works against a real `stellara serve --demo`.

`sh` blocks run with `bash -euo pipefail`, `python` blocks with this venv's Python, each as its
own process in a scratch directory, with STELLARA_URL, STELLARA_KEY and STELLARA_ADMIN_KEY set
from the demo's banner; each must exit 0. Blocks that are not meant to run use `text` or
`console`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.docs import DOCS, FencedBlock, fenced_blocks

pytestmark = pytest.mark.e2e

QUICKSTART = DOCS / "quickstart.md"
COMMANDS = {"sh": ["bash", "-euo", "pipefail"], "python": [sys.executable]}
SUFFIXES = {"sh": ".sh", "python": ".py"}
# Languages a reader would take for runnable code, though the test would not run them.
AMBIGUOUS = {"bash", "shell", "zsh", "py", "python3", "pycon"}
_BANNER = {
    "key": re.compile(r"^Demo key: (\S+)", re.MULTILINE),
    "admin_key": re.compile(r"^Admin key: +(\S+)", re.MULTILINE),
    "dashboard": re.compile(r"^Dashboard: +(\S+)", re.MULTILINE),
}


class Demo(NamedTuple):
    url: str
    key: str
    admin_key: str
    log: Path


def runnable_blocks(path: Path) -> list[FencedBlock]:
    if not path.is_file():
        return []
    return [block for block in fenced_blocks(path) if block.language in COMMANDS]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_banner(process: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    """The banner's values, once all are printed (the gateway is listening by then)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace")
        found = {name: pattern.search(text) for name, pattern in _BANNER.items()}
        if all(found.values()):
            return {name: match.group(1) for name, match in found.items() if match}
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"the demo never printed its keys; its output:\n{log.read_text()}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("demo")
    log = workdir / "demo.log"
    port = _free_port()
    command = [sys.executable, "-m", "stellara.cli", "serve", "--demo", "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=workdir, stdout=output, stderr=output)
    try:
        banner = _wait_for_banner(process, log)
        yield Demo(f"http://127.0.0.1:{port}", banner["key"], banner["admin_key"], log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_block(block: FencedBlock, demo: Demo, workdir: Path) -> subprocess.CompletedProcess[str]:
    script = workdir / f"snippet-{block.line}{SUFFIXES[block.language]}"
    script.write_text(block.text, encoding="utf-8")
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "STELLARA_URL": demo.url,
        "STELLARA_KEY": demo.key,
        "STELLARA_ADMIN_KEY": demo.admin_key,
    }
    return subprocess.run(
        [*COMMANDS[block.language], str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )


def _report(block: FencedBlock, result: subprocess.CompletedProcess[str], demo: Demo) -> str:
    gateway = demo.log.read_text(encoding="utf-8", errors="replace")[-3000:]
    return (
        f"{block.where}: the {block.language} block exited {result.returncode}\n"
        f"--- block ---\n{block.text}--- stdout ---\n{result.stdout}"
        f"--- stderr ---\n{result.stderr}--- gateway log (end) ---\n{gateway}"
    )


SNIPPETS = runnable_blocks(QUICKSTART)


def test_quickstart_has_runnable_snippets() -> None:
    assert SNIPPETS, f"{QUICKSTART} is missing or has no ```sh or ```python block"


def test_quickstart_has_no_snippet_in_an_ambiguous_language() -> None:
    blocks = fenced_blocks(QUICKSTART) if QUICKSTART.is_file() else []
    ambiguous = [block.where for block in blocks if block.language in AMBIGUOUS]
    assert not ambiguous, (
        f"these blocks would not run: use `sh` or `python` to have them run, "
        f"`console` or `text` otherwise: {ambiguous}"
    )


@pytest.mark.parametrize("block", SNIPPETS, ids=[block.where for block in SNIPPETS])
def test_quickstart_snippet_exits_0(block: FencedBlock, demo: Demo, tmp_path: Path) -> None:
    result = run_block(block, demo, tmp_path)
    assert result.returncode == 0, _report(block, result, demo)


def _blocks(tmp_path: Path, markdown: str) -> list[FencedBlock]:
    page = tmp_path / "page.md"
    page.write_text(markdown, encoding="utf-8")
    return runnable_blocks(page)


def test_runner_passes_working_snippets_with_the_demo_env(demo: Demo, tmp_path: Path) -> None:
    blocks = _blocks(
        tmp_path,
        '```sh\ncurl -sf "$STELLARA_URL/v1/models" -H "Authorization: Bearer $STELLARA_KEY"\n'
        'curl -sf "$STELLARA_URL/admin/users" -H "Authorization: Bearer $STELLARA_ADMIN_KEY"\n'
        "```\n\n```console\n$ false\n```\n\n"
        "```python\nimport os\n\nfrom openai import OpenAI\n\n"
        'client = OpenAI(base_url=os.environ["STELLARA_URL"] + "/v1", '
        'api_key=os.environ["STELLARA_KEY"])\n'
        "print(client.models.list().data[0].id)\n```\n",
    )
    assert [block.language for block in blocks] == ["sh", "python"]
    results = [run_block(block, demo, tmp_path) for block in blocks]
    assert [result.returncode for result in results] == [0, 0], [r.stderr for r in results]
    assert results[1].stdout.strip() == "demo"


@pytest.mark.parametrize(
    "snippet",
    [
        "```sh\nfalse\necho not reached\n```\n",  # -e
        '```sh\necho "$NOT_SET_ANYWHERE"\n```\n',  # -u
        "```sh\nfalse | cat\n```\n",  # pipefail
        '```sh\ncurl -sf "$STELLARA_URL/v1/models" -H "Authorization: Bearer wrong-key"\n```\n',
        '```python\nraise SystemExit("broken")\n```\n',
    ],
    ids=["errexit", "nounset", "pipefail", "http-error", "python-error"],
)
def test_runner_fails_broken_snippets(snippet: str, demo: Demo, tmp_path: Path) -> None:
    [block] = _blocks(tmp_path, snippet)
    assert run_block(block, demo, tmp_path).returncode != 0
