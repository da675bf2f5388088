"""The Dockerfile's last stage as scripts/image_spec.py reads it, and what the image promises."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_image_spec() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_spec", ROOT / "scripts" / "image_spec.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["image_spec"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


image_spec = load_image_spec()


def test_instructions_join_continuations_and_drop_comments() -> None:
    text = "FROM a\n# a comment\nRUN one \\\n  && two\n\nENV A=1\n"
    assert image_spec.instructions(text) == [("FROM", "a"), ("RUN", "one && two"), ("ENV", "A=1")]


def test_last_stage_reads_only_the_final_stage_and_expands_its_args() -> None:
    text = (
        "FROM base AS build\nUSER builder\nEXPOSE 1\n"
        "FROM base\nARG UID=7\nUSER ${UID}:${UID}\nEXPOSE 8080 9090/udp\n"
        'ENV A="x y" B=2\nCMD ["serve"]\n'
    )
    spec = image_spec.last_stage(text)
    assert spec.user == "7:7"
    assert spec.exposed_ports == ["8080/tcp", "9090/udp"]
    assert spec.env == {"A": "x y", "B": "2"}
    assert spec.cmd == ["serve"]


def test_last_stage_refuses_what_it_cannot_carry_over() -> None:
    with pytest.raises(image_spec.DockerfileError, match="LABEL"):
        image_spec.last_stage('FROM a\nLABEL x="y"\n')
    with pytest.raises(image_spec.DockerfileError, match="exec"):
        image_spec.last_stage("FROM a\nCMD stellara serve\n")
    with pytest.raises(image_spec.DockerfileError, match=r"\$UID"):
        image_spec.last_stage("FROM a\nUSER $UID\n")


def test_healthcheck_durations_become_nanoseconds() -> None:
    spec = image_spec.last_stage(
        'FROM a\nHEALTHCHECK --interval=1m30s --timeout=500ms --retries=2 CMD ["true"]\n'
    )
    assert spec.healthcheck == {
        "Test": ["CMD", "true"],
        "Interval": 90 * 10**9,
        "Timeout": 500 * 10**6,
        "Retries": 2,
    }


def dockerfile() -> Any:  # image_spec.ImageSpec: loaded from a path, unknown to mypy
    return image_spec.last_stage((ROOT / "Dockerfile").read_text())


def test_dockerfile_runs_the_gateway_as_a_non_root_user_on_its_exposed_port() -> None:
    spec = dockerfile()
    uid, _, gid = spec.user.partition(":")
    assert int(uid) > 0
    assert int(gid) > 0
    assert spec.entrypoint == ["stellara"]
    assert spec.cmd == [
        "serve", "--config", "/etc/stellara/stellara.yaml", "--host", "0.0.0.0", "--port", "4000",
    ]  # fmt: skip
    assert spec.exposed_ports == ["4000/tcp"]
    assert spec.stop_signal == "SIGTERM"


def test_dockerfile_health_check_asks_healthz_on_the_served_port_without_curl() -> None:
    test = dockerfile().healthcheck["Test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:4000/healthz" in test[3]


def test_dockerfile_writable_paths_are_the_volume_and_tmp() -> None:
    spec = dockerfile()
    # The default usage store (sqlite:///stellara.db) is relative to the working directory.
    assert spec.volumes == [spec.working_dir]
    assert spec.env["TMPDIR"] == "/tmp"
    assert spec.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert spec.env["PATH"].startswith("/opt/stellara/bin:")
