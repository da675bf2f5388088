"""The image built offline (scripts/build-image-offline): the same image as the Dockerfile's,
and its demo answering from a read-only root filesystem, started as Docker would start it.

Needs root and mmdebstrap (scripts/image-tools). A build takes one to three minutes, so it is kept
in /var/cache/stellara-image keyed by the wheel's hash; without one for the current wheel the
tests skip, unless STELLARA_IMAGE_BUILD=1 asks for a build.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.test_image_spec import dockerfile

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build-image-offline"
CACHE = Path(os.environ.get("STELLARA_IMAGE_CACHE", "/var/cache/stellara-image"))

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def image() -> Path:
    """The offline image's directory (rootfs/, config.json): cached, built, or a skip."""
    if os.geteuid() != 0:
        pytest.skip("offline image: needs root (mmdebstrap, chroot)")
    if shutil.which("mmdebstrap") is None:
        pytest.skip("offline image: mmdebstrap is missing (scripts/image-tools installs it)")
    environment = {**os.environ, "PYTHON": sys.executable}
    command = [str(BUILD), str(CACHE)]
    if os.environ.get("STELLARA_IMAGE_BUILD") != "1":
        command.insert(1, "--cached-only")
    built = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if built.returncode == 3:
        pytest.skip(
            f"offline image: no cached build for this wheel in {CACHE}; "
            "STELLARA_IMAGE_BUILD=1 builds one (1 to 3 minutes)"
        )
    assert built.returncode == 0, built.stderr[-3000:]
    return Path(built.stdout.strip().splitlines()[-1])


def test_offline_image_config_is_the_dockerfiles(image: Path) -> None:
    written = json.loads((image / "config.json").read_text())["config"]
    assert written == dockerfile().config()


def test_offline_image_has_the_dockerfiles_user_python_and_paths(image: Path) -> None:
    spec, rootfs = dockerfile(), image / "rootfs"
    uid, _, gid = spec.user.partition(":")
    passwd = {
        fields[2]: fields
        for fields in (line.split(":") for line in (rootfs / "etc/passwd").read_text().splitlines())
    }
    assert passwd[uid][3] == gid
    assert passwd[uid][5] == spec.working_dir
    assert passwd[uid][6] == "/usr/sbin/nologin"
    workdir = (rootfs / spec.working_dir.lstrip("/")).stat()
    assert (str(workdir.st_uid), str(workdir.st_gid)) == (uid, gid)
    # The base's Python minor (python:3.11-slim-…) is the one the venv runs on.
    minor = spec_minor()
    assert (rootfs / f"opt/stellara/lib/python{minor}/site-packages/stellara").is_dir()
    assert (rootfs / "opt/stellara/bin/stellara").is_file()
    assert not (rootfs / "opt/stellara/bin/pip").exists()


def spec_minor() -> str:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG PYTHON_IMAGE="):
            return line.split("python:")[1].split("-")[0]
    raise AssertionError("the Dockerfile names no python:X.Y base")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chroot_command(rootfs: Path, command: list[str]) -> list[str]:
    """`command` run as `docker run --read-only --tmpfs /tmp -v data:/var/lib/stellara` would:
    in its own mount and PID namespaces (so the gateway is PID 1), root filesystem read-only,
    tmpfs on /tmp and on the data volume, as the image's user, with the image's environment and
    working directory and nothing of ours."""
    spec = dockerfile()
    uid, _, gid = spec.user.partition(":")
    data = rootfs / spec.working_dir.lstrip("/")
    setup = (
        f"mount --make-rprivate / && mount --bind {rootfs} {rootfs} "
        f"&& mount -o remount,bind,ro {rootfs} "
        f"&& mount -t proc proc {rootfs}/proc && mount --rbind /dev {rootfs}/dev "
        f"&& mount -t tmpfs -o mode=1777 tmpfs {rootfs}/tmp "
        f"&& mount -t tmpfs -o uid={uid},gid={gid},mode=0750 tmpfs {data} "
        f'&& exec "$@"'
    )
    inside = [
        "chroot", f"--userspec={uid}:{gid}", str(rootfs),
        "/usr/bin/env", "-i", f"--chdir={spec.working_dir}",
        *(f"{name}={value}" for name, value in spec.env.items()),
        *command,
    ]  # fmt: skip
    return ["unshare", "--mount", "--pid", "--fork", "sh", "-ec", setup, "sh", *inside]


@pytest.fixture
def demo(image: Path) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    """The image's entrypoint serving --demo (the CMD replaced, as `docker run IMAGE serve …`)."""
    port = free_port()
    spec = dockerfile()
    command = [*spec.entrypoint, "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        chroot_command(image / "rootfs", command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, port, demo_key(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def demo_key(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("Demo key: "):
            return line.removeprefix("Demo key: ").strip()
    raise AssertionError("the demo printed no key:\n" + "".join(seen))


def get(url: str, key: str | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def gateway_pid(process: subprocess.Popen[str]) -> int:
    """The gateway's PID on this side: unshare's child, which is PID 1 in its namespace."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_offline_image_demo_answers_from_a_read_only_root(
    demo: tuple[subprocess.Popen[str], int, str],
) -> None:
    _, port, key = demo
    base = f"http://127.0.0.1:{port}"
    assert get(f"{base}/healthz")[0] == 200
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "Hi"}]})
    status, answer = get(f"{base}/v1/chat/completions", key, body.encode())
    assert status == 200
    assert json.loads(answer)["choices"][0]["message"]["content"]
    status, metrics = get(f"{base}/metrics")
    assert status == 200
    assert b"stellara_requests_total" in metrics


def test_offline_image_health_check_passes_inside_the_image(
    image: Path, demo: tuple[subprocess.Popen[str], int, str]
) -> None:
    _, port, _ = demo
    test = dockerfile().healthcheck["Test"][1:]
    command = [*test[:-1], test[-1].replace("127.0.0.1:4000", f"127.0.0.1:{port}")]
    checked = subprocess.run(
        chroot_command(image / "rootfs", command), capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_offline_image_gateway_as_pid_1_drains_on_sigterm(
    demo: tuple[subprocess.Popen[str], int, str],
) -> None:
    process, port, _ = demo
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    os.kill(gateway_pid(process), signal.SIGTERM)
    assert process.wait(timeout=45) == 0
