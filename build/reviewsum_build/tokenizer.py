"""Train the ReviewSum tokenizer: byte-level-fallback BPE over Chinese and English review text.

Conventions every other part relies on (the engine reads them from the files):
- special tokens `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>`=4;
- encoding appends `</s>`; the decoder starts from `<s>` (T5-style, no BOS on the source);
- characters outside the vocabulary fall back to `<0xNN>` byte tokens, so no text is lost;
- NFC normalization only: NFKC would turn full-width `，` into `,` in summaries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
BOS_ID, PAD_ID, EOS_ID, UNK_ID, MASK_ID = range(5)
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_FILES = (TOKENIZER_FILE, "tokenizer_config.json")  # what save_tokenizer writes


def _empty_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.NFC()
    # Pieces never cross punctuation, so a clause boundary like `，` stays its own token.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"), pre_tokenizers.Punctuation("isolated")]
    )
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return tokenizer


def _add_byte_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """Append the 256 `<0xNN>` pieces that byte fallback emits; BPE training does not create them."""
    spec = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    for piece in BYTE_TOKENS:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))


def _set_post_processor(tokenizer: Tokenizer) -> None:
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", EOS_ID)]
    )


def train_tokenizer(texts: Iterable[str], vocab_size: int, limit_alphabet: int = 6000) -> Tokenizer:
    """Learn merges from `texts`; `vocab_size` counts special and byte tokens too."""
    tokenizer = _empty_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(BYTE_TOKENS),
        special_tokens=SPECIAL_TOKENS,
        limit_alphabet=limit_alphabet,
        min_frequency=2,
        show_progress=True,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer = _add_byte_tokens(tokenizer)
    _set_post_processor(tokenizer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, out_dir: Path, model_max_length: int = 512) -> Path:
    """Write `tokenizer.json` plus the files `transformers.AutoTokenizer` needs to load it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / TOKENIZER_FILE
    tokenizer.save(str(path))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def load_tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
