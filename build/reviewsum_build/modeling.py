"""The ReviewSum model: a small BART (`transformers.BartForConditionalGeneration`) sized for CPU serving.

Token ids follow `reviewsum_build.tokenizer`: `<s>`=0 starts the decoder, `<pad>`=1, `</s>`=2 ends
both sides; the source carries no BOS. `forced_bos_token_id` is None: the first generated token is
already content.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

from reviewsum_build.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class ModelSize:
    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    ffn: int


SIZES = {
    # ~9.6M parameters with a 12k vocabulary; ~1.1 s per batch-32 step on 2 cores.
    "small": ModelSize(d_model=256, encoder_layers=4, decoder_layers=3, heads=4, ffn=1024),
    "tiny": ModelSize(d_model=64, encoder_layers=1, decoder_layers=1, heads=2, ffn=128),  # tests only
    "base": ModelSize(d_model=384, encoder_layers=6, decoder_layers=3, heads=6, ffn=1536),
}

MAX_POSITIONS = 256
MAX_SOURCE_TOKENS = 160
MAX_SUMMARY_TOKENS = 64
MAX_NEW_TOKENS = 48  # the serving engine's default
NO_REPEAT_NGRAM_SIZE = 3  # the serving engine's default


def build_config(vocab_size: int, size: str = "small", dropout: float = 0.1) -> BartConfig:
    s = SIZES[size]
    return BartConfig(
        vocab_size=vocab_size,
        d_model=s.d_model,
        encoder_layers=s.encoder_layers,
        decoder_layers=s.decoder_layers,
        encoder_attention_heads=s.heads,
        decoder_attention_heads=s.heads,
        encoder_ffn_dim=s.ffn,
        decoder_ffn_dim=s.ffn,
        max_position_embeddings=MAX_POSITIONS,
        dropout=dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="gelu",
        scale_embedding=True,
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        is_encoder_decoder=True,
    )


def generation_config(num_beams: int = 1, max_new_tokens: int = MAX_NEW_TOKENS) -> GenerationConfig:
    """Greedy with no repeated 3-grams, as the served ONNX engine decodes by default, so `generate` matches it."""
    return GenerationConfig(
        decoder_start_token_id=BOS_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        num_beams=num_beams,
        do_sample=False,
        no_repeat_ngram_size=NO_REPEAT_NGRAM_SIZE,
        max_new_tokens=max_new_tokens,
    )


def build_model(vocab_size: int, size: str = "small", dropout: float = 0.1) -> BartForConditionalGeneration:
    model = BartForConditionalGeneration(build_config(vocab_size, size, dropout))
    model.generation_config = generation_config()
    return model


def count_parameters(model) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
