"""all-MiniLM-L6-v2 sentence embeddings in plain numpy, from weights shipped with Stellara.

The semantic cache needs one 384-d vector per prompt, on CPU, with nothing fetched at run
time. The weights ship in this package's `model/` folder (a safetensors file, matrices stored
as float16, plus the model's `tokenizer.json`; `scripts/vendor_minilm.py` tells where they came
from), and this module reads them without sentence-transformers or torch:

* tokenization: the Rust `tokenizers` library on the shipped `tokenizer.json` (BERT uncased
  WordPiece; its fixed padding to 128 is switched off and truncation set to the model's 256);
* weights: the safetensors header is parsed here (it is a length-prefixed JSON index of raw
  little-endian arrays), so the `safetensors` package is not needed;
* forward pass: the 6-layer BERT encoder in numpy, with Q/K/V fused into one matrix product,
  then mean pooling over real tokens and L2 normalisation, as the model's sentence-transformers
  configuration (`1_Pooling/config.json`, `Normalize`) prescribes.

A short prompt takes a few milliseconds; see `benchmarks/semantic.py`.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from stellara.errors import ConfigError

__all__ = ["EMBEDDING_DIM", "SentenceEmbedder", "default_model_dir", "missing_model_files"]

Matrix = npt.NDArray[np.float32]

EMBEDDING_DIM = 384
_MODEL_FILES = ("model.safetensors", "tokenizer.json")
_HEADS = 12
_LAYER_NORM_EPS = 1e-12
# all-MiniLM-L6-v2 was trained with 256-token inputs (sentence_bert_config.json); the rest of a
# longer prompt is ignored, as sentence-transformers does.
_MAX_TOKENS = 256
_BATCH = 32
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def default_model_dir() -> Path:
    """The model folder shipped inside this package."""
    return Path(__file__).resolve().parent / "model"


def missing_model_files(model_dir: Path | None = None) -> list[Path]:
    """The files of the model in `model_dir` (by default the shipped one) that are absent.

    Empty for a sound install; a list means the package was installed without its data (a
    wheel built from a checkout without `model/`, or files deleted after installing).
    """
    folder = model_dir or default_model_dir()
    return [folder / name for name in _MODEL_FILES if not (folder / name).is_file()]


def read_safetensors(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Read every tensor of a safetensors file into numpy arrays.

    Args:
        path: the `.safetensors` file.

    Returns:
        Tensor name to a C-contiguous array (a copy, so that alignment is guaranteed).
    """
    data = path.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, npt.NDArray[np.generic]] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES[meta["dtype"]]
        start, end = meta["data_offsets"]
        flat = np.frombuffer(
            data, dtype=np.dtype(dtype).newbyteorder("<"), count=-1, offset=base + start
        )[: (end - start) // np.dtype(dtype).itemsize]
        tensors[name] = flat.reshape(meta["shape"]).astype(dtype, copy=True)
    return tensors


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer, with weights pre-transposed so that `x @ w` needs no `.T`."""

    qkv_w: Matrix
    qkv_b: Matrix
    out_w: Matrix
    out_b: Matrix
    ln1_g: Matrix
    ln1_b: Matrix
    ff_in_w: Matrix
    ff_in_b: Matrix
    ff_out_w: Matrix
    ff_out_b: Matrix
    ln2_g: Matrix
    ln2_b: Matrix


@dataclass(frozen=True, slots=True)
class _Weights:
    word: Matrix
    position: Matrix
    token_type: Matrix
    ln_g: Matrix
    ln_b: Matrix
    layers: tuple[_Layer, ...]


def _weights_from(tensors: dict[str, npt.NDArray[np.generic]]) -> _Weights:
    def get(name: str) -> Matrix:
        return np.ascontiguousarray(tensors[name], dtype=np.float32)

    def linear_t(name: str) -> Matrix:
        # torch stores Linear weights as (out, in); numpy wants (in, out) for `x @ w`.
        return np.ascontiguousarray(get(name + ".weight").T)

    layers = []
    count = sum(1 for n in tensors if n.endswith(".attention.self.query.weight"))
    for i in range(count):
        p = f"encoder.layer.{i}."
        attn = p + "attention.self."
        layers.append(
            _Layer(
                qkv_w=np.concatenate([linear_t(attn + s) for s in ("query", "key", "value")], 1),
                qkv_b=np.concatenate([get(attn + s + ".bias") for s in ("query", "key", "value")]),
                out_w=linear_t(p + "attention.output.dense"),
                out_b=get(p + "attention.output.dense.bias"),
                ln1_g=get(p + "attention.output.LayerNorm.weight"),
                ln1_b=get(p + "attention.output.LayerNorm.bias"),
                ff_in_w=linear_t(p + "intermediate.dense"),
                ff_in_b=get(p + "intermediate.dense.bias"),
                ff_out_w=linear_t(p + "output.dense"),
                ff_out_b=get(p + "output.dense.bias"),
                ln2_g=get(p + "output.LayerNorm.weight"),
                ln2_b=get(p + "output.LayerNorm.bias"),
            )
        )
    return _Weights(
        word=get("embeddings.word_embeddings.weight"),
        position=get("embeddings.position_embeddings.weight"),
        token_type=get("embeddings.token_type_embeddings.weight"),
        ln_g=get("embeddings.LayerNorm.weight"),
        ln_b=get("embeddings.LayerNorm.bias"),
        layers=tuple(layers),
    )


def _layer_norm(x: Matrix, gain: Matrix, bias: Matrix) -> Matrix:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    normed: Matrix = centred / np.sqrt(var + _LAYER_NORM_EPS) * gain + bias
    return normed


def _gelu(x: Matrix) -> Matrix:
    """BERT's exact (erf) GELU; numpy has no erf, so Abramowitz & Stegun 7.1.26 stands in.

    Its absolute error (1.5e-7) is below float32 resolution at these magnitudes, unlike the
    tanh approximation, which would drift from the reference vectors by ~1e-3.
    """
    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = t * (
        np.float32(0.254829592)
        + t
        * (
            np.float32(-0.284496736)
            + t
            * (
                np.float32(1.421413741)
                + t * (np.float32(-1.453152027) + t * np.float32(1.061405429))
            )
        )
    )
    erf_abs = 1 - poly * np.exp(-z * z)
    erf = np.where(x >= 0, erf_abs, -erf_abs)
    out: Matrix = np.float32(0.5) * x * (1 + erf)
    return out


def _encoder_layer(x: Matrix, mask_bias: Matrix, layer: _Layer) -> Matrix:
    batch, length, width = x.shape
    head = width // _HEADS
    qkv = x @ layer.qkv_w + layer.qkv_b
    # (batch, length, 3, heads, head) -> three (batch, heads, length, head) views
    q, k, v = qkv.reshape(batch, length, 3, _HEADS, head).transpose(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1 / math.sqrt(head))
    scores += mask_bias
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
    x = _layer_norm(x + context @ layer.out_w + layer.out_b, layer.ln1_g, layer.ln1_b)
    hidden = _gelu(x @ layer.ff_in_w + layer.ff_in_b)
    return _layer_norm(x + hidden @ layer.ff_out_w + layer.ff_out_b, layer.ln2_g, layer.ln2_b)


def _forward(weights: _Weights, ids: npt.NDArray[np.int64], mask: Matrix) -> Matrix:
    """Sentence vectors for a padded batch: encoder, mean pooling, L2 normalisation."""
    length = ids.shape[1]
    x = weights.word[ids] + weights.position[:length] + weights.token_type[0]
    x = _layer_norm(x, weights.ln_g, weights.ln_b)
    # Padding gets a large negative score so that softmax gives it no weight.
    mask_bias = ((1 - mask) * np.float32(-1e9))[:, None, None, :]
    for layer in weights.layers:
        x = _encoder_layer(x, mask_bias, layer)
    summed = np.einsum("bld,bl->bd", x, mask)
    pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return np.asarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


class SentenceEmbedder:
    """Turns prompts into normalised all-MiniLM-L6-v2 vectors, offline.

    Construction is free; the weights (45 MB on disk, 90 MB in memory as float32) are read on
    the first `embed` (or an explicit `load`, which a server may call at start-up so that the
    first request does not pay for it).
    After loading, the object is read-only, so `embed` may run in several threads at once —
    call it through `asyncio.to_thread`, never on the event loop.

    Args:
        model_dir: a folder holding `model.safetensors` and `tokenizer.json`; by default the
            one shipped in this package.
        max_tokens: inputs are cut to this many tokens (the model was trained on 256).
    """

    dimension = EMBEDDING_DIM

    def __init__(self, model_dir: Path | None = None, *, max_tokens: int = _MAX_TOKENS) -> None:
        self._model_dir = model_dir
        self._max_tokens = max_tokens
        self._lock = threading.Lock()
        self._model: tuple[Tokenizer, _Weights] | None = None

    @property
    def is_loaded(self) -> bool:
        """Whether the weights are in memory (the next `embed` will not read the disk)."""
        return self._model is not None

    def load(self) -> tuple[Tokenizer, _Weights]:
        """Read the tokenizer and the weights; a no-op once done. Safe to call from threads.

        Raises:
            ConfigError: one of the model's files is missing.
        """
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is not None:
                return self._model
            model_dir = self._model_dir or default_model_dir()
            missing = missing_model_files(model_dir)
            if missing:
                raise ConfigError(
                    [f"semantic cache: embedding model file missing: {path}" for path in missing]
                )
            weights_file, tokenizer_file = (model_dir / name for name in _MODEL_FILES)
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            # The shipped file pads every input to 128 tokens; padding is done per batch here.
            tokenizer.no_padding()
            tokenizer.enable_truncation(self._max_tokens)
            # One assignment publishes both, so a thread never sees half a model.
            self._model = (tokenizer, _weights_from(read_safetensors(weights_file)))
            return self._model

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Embed prompts; blocking and CPU-bound (a few ms for a short prompt).

        Args:
            texts: the prompts; empty strings are allowed.

        Returns:
            A float32 array of shape (len(texts), 384) whose rows have unit length, so that a
            dot product is the cosine similarity.
        """
        tokenizer, weights = self.load()
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        encodings = tokenizer.encode_batch(list(texts))
        # Sorting by length keeps padding (wasted work) small when a batch mixes lengths.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(order), _BATCH):
            chunk = order[start : start + _BATCH]
            length = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), length), dtype=np.int64)
            mask = np.zeros((len(chunk), length), dtype=np.float32)
            for row, i in enumerate(chunk):
                token_ids = encodings[i].ids
                ids[row, : len(token_ids)] = token_ids
                mask[row, : len(token_ids)] = 1
            out[chunk] = _forward(weights, ids, mask)
        return out
