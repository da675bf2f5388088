"""What the Dockerfile's last stage says about the image it makes, read by the offline build.

The Dockerfile is the one place the image's user, environment, ports, health check and
command are written. `scripts/build-image-offline` has no Docker, so it reads them here: it
runs the stage's RUN lines in its chroot (they create the user) and writes the rest as the
image's config (`config.json`, the OCI image config with Docker's Healthcheck).

Only what the Dockerfile uses is understood: line continuations, comments, `ARG` defaults,
`${NAME}` references to them, and the exec (JSON) form of `CMD`, `ENTRYPOINT`, `VOLUME` and
`HEALTHCHECK CMD`. Anything else in the last stage is an error, not silently dropped.

    python3 scripts/image_spec.py Dockerfile config   # the image config, JSON
    python3 scripts/image_spec.py Dockerfile run      # the RUN lines, for `sh -c`
    python3 scripts/image_spec.py Dockerfile args     # ARG defaults, NAME=value per line
"""

from __future__ import annotations

import json
import platform
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_DURATION = re.compile(r"(\d+)(ms|s|m|h)")
_NANOSECONDS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}  # uname -m → OCI names
# Instructions that change the image's config; COPY adds files the offline build puts there
# itself (the venv), and FROM starts the stage.
_KNOWN = {
    "ARG", "ENV", "USER", "WORKDIR", "VOLUME", "EXPOSE", "STOPSIGNAL", "HEALTHCHECK",
    "ENTRYPOINT", "CMD", "RUN", "COPY",
}  # fmt: skip


class DockerfileError(ValueError):
    """The Dockerfile uses something this reader does not understand."""


@dataclass
class ImageSpec:
    """The last stage of a Dockerfile, as the image config it produces."""

    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    working_dir: str = ""
    volumes: list[str] = field(default_factory=list)
    exposed_ports: list[str] = field(default_factory=list)
    stop_signal: str = ""
    healthcheck: dict[str, Any] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    run: list[str] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        """The image config as Docker and the OCI image spec write it (`config` section)."""
        return {
            "User": self.user,
            "Env": [f"{name}={value}" for name, value in self.env.items()],
            "WorkingDir": self.working_dir,
            "Volumes": {path: {} for path in self.volumes},
            "ExposedPorts": {port: {} for port in self.exposed_ports},
            "StopSignal": self.stop_signal,
            "Healthcheck": self.healthcheck,
            "Entrypoint": self.entrypoint,
            "Cmd": self.cmd,
        }


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    pairs = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def last_stage(text: str) -> ImageSpec:
    """Read the Dockerfile's final stage (after its last FROM)."""
    pairs = instructions(text)
    starts = [index for index, (keyword, _) in enumerate(pairs) if keyword == "FROM"]
    if not starts:
        raise DockerfileError("no FROM line")
    spec = ImageSpec()
    for keyword, rest in pairs[starts[-1] + 1 :]:
        if keyword not in _KNOWN:
            raise DockerfileError(f"{keyword} in the last stage is not understood")
        _apply(spec, keyword, rest)
    return spec


def _apply(spec: ImageSpec, keyword: str, rest: str) -> None:
    if keyword == "ARG":
        name, _, default = rest.partition("=")
        spec.args[name] = default
    elif keyword == "ENV":
        for pair in shlex.split(_expand(rest, spec.args)):
            name, _, value = pair.partition("=")
            spec.env[name] = value
    elif keyword == "USER":
        spec.user = _expand(rest, spec.args)
    elif keyword == "WORKDIR":
        spec.working_dir = _expand(rest, spec.args)
    elif keyword == "VOLUME":
        spec.volumes.extend(_exec_form(rest, keyword))
    elif keyword == "EXPOSE":
        spec.exposed_ports.extend(p if "/" in p else f"{p}/tcp" for p in rest.split())
    elif keyword == "STOPSIGNAL":
        spec.stop_signal = rest
    elif keyword == "HEALTHCHECK":
        spec.healthcheck = _healthcheck(rest)
    elif keyword == "ENTRYPOINT":
        spec.entrypoint = _exec_form(rest, keyword)
    elif keyword == "CMD":
        spec.cmd = _exec_form(rest, keyword)
    elif keyword == "RUN":
        spec.run.append(rest)


def _expand(value: str, args: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in args:
            raise DockerfileError(f"${name} is not an ARG of the last stage")
        return args[name]

    return _REFERENCE.sub(replace, value)


def _exec_form(rest: str, keyword: str) -> list[str]:
    try:
        words = json.loads(rest)
    except json.JSONDecodeError as exc:
        raise DockerfileError(f"{keyword} must use the exec (JSON) form") from exc
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise DockerfileError(f"{keyword} must be a JSON list of strings")
    return words


def _healthcheck(rest: str) -> dict[str, Any]:
    options, marker, command = rest.partition("CMD ")
    if not marker:
        raise DockerfileError("HEALTHCHECK needs CMD [...]")
    check: dict[str, Any] = {"Test": ["CMD", *_exec_form(command, "HEALTHCHECK CMD")]}
    for option in options.split():
        name, _, value = option.removeprefix("--").partition("=")
        key = "".join(part.capitalize() for part in name.split("-"))
        check[key] = int(value) if name == "retries" else _nanoseconds(value)
    return check


def _nanoseconds(duration: str) -> int:
    parts = _DURATION.findall(duration)
    if "".join(n + unit for n, unit in parts) != duration:
        raise DockerfileError(f"duration {duration!r} is not understood")
    return sum(int(n) * _NANOSECONDS[unit] for n, unit in parts)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("config", "run", "args"):
        print(__doc__, file=sys.stderr)
        return 2
    spec = last_stage(Path(argv[0]).read_text())
    if argv[1] == "config":
        architecture = _ARCHITECTURES.get(platform.machine(), platform.machine())
        image = {"architecture": architecture, "os": "linux", "config": spec.config()}
        print(json.dumps(image, indent=2))
    elif argv[1] == "run":
        print(" && ".join(f"({command})" for command in spec.run))
    else:
        print("\n".join(f"{name}={value}" for name, value in spec.args.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
