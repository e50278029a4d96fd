"""Read an artifacts directory (written by `reviewsum_build.export`) into one typed description."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model_merged.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
METADATA_FILE = "reviewsum.json"
REQUIRED_FILES = (ENCODER_FILE, DECODER_FILE, TOKENIZER_FILE, CONFIG_FILE, METADATA_FILE)
DEFAULT_MAX_INPUT_TOKENS = 256

# generation_config keys that change transformers' output but that this engine does not implement:
# loading such a checkpoint is allowed, but parity with `generate()` is then lost, so say so loudly.
_UNSUPPORTED_GENERATION_KEYS = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "min_new_tokens": None,
    "exponential_decay_length_penalty": None,
    "do_sample": False,
}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodingRules:
    """The checkpoint-level parts of transformers' generate() that apply to every request."""

    decoder_start_token_id: int
    eos_token_id: int
    pad_token_id: int
    forced_bos_token_id: int | None
    forced_eos_token_id: int | None
    min_length: int  # counts the decoder start token, as transformers' MinLengthLogitsProcessor does
    early_stopping: bool | str  # True, False or "never", transformers' beam-search stopping rule


@dataclass(frozen=True)
class ModelArtifacts:
    directory: Path
    model_name: str
    model_version: str
    languages: tuple[str, ...]
    max_input_tokens: int
    max_decoder_positions: int
    source_checkpoint: str | None
    rules: DecodingRules

    @property
    def encoder_path(self) -> Path:
        return self.directory / ENCODER_FILE

    @property
    def decoder_path(self) -> Path:
        return self.directory / DECODER_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.directory / TOKENIZER_FILE

    @property
    def max_new_tokens_limit(self) -> int:
        # The decoder start token takes position 0, so one position fewer remains for generated tokens.
        return self.max_decoder_positions - 1


def load_artifacts(directory: Path) -> ModelArtifacts:
    directory = Path(directory)
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"artifacts directory {directory} lacks {', '.join(missing)}")
    metadata = _read_json(directory / METADATA_FILE)
    config = _read_json(directory / CONFIG_FILE)
    # Without generation_config.json, transformers derives the generation defaults from config.json.
    generation_path = directory / GENERATION_CONFIG_FILE
    generation = _read_json(generation_path) if generation_path.is_file() else config
    _warn_about_unsupported_generation_keys(generation)
    max_input_tokens = int(metadata.get("max_input_tokens", DEFAULT_MAX_INPUT_TOKENS))
    max_positions = int(config.get("max_position_embeddings", 1024))
    if max_input_tokens > max_positions:
        raise ValueError(f"max_input_tokens {max_input_tokens} exceeds max_position_embeddings {max_positions}")
    return ModelArtifacts(
        directory=directory,
        model_name=str(metadata.get("model_name", "reviewsum")),
        model_version=str(metadata.get("model_version", "1")),
        languages=tuple(metadata.get("languages", ())),
        max_input_tokens=max_input_tokens,
        max_decoder_positions=max_positions,
        source_checkpoint=metadata.get("source_checkpoint"),
        rules=_decoding_rules(config, generation),
    )


def _decoding_rules(config: dict[str, Any], generation: dict[str, Any]) -> DecodingRules:
    def pick(key: str, default: Any) -> Any:
        # generate() lets generation_config.json override config.json, which overrides the library default.
        if key in generation:
            return generation[key]
        return config.get(key, default)

    eos = pick("eos_token_id", 2)
    if isinstance(eos, list):
        if len(eos) != 1:
            raise ValueError(f"exactly one eos_token_id is supported, got {eos}")
        eos = eos[0]
    return DecodingRules(
        decoder_start_token_id=int(pick("decoder_start_token_id", 0)),
        eos_token_id=int(eos),
        pad_token_id=int(pick("pad_token_id", 1)),
        forced_bos_token_id=_optional_int(generation.get("forced_bos_token_id")),
        forced_eos_token_id=_optional_int(generation.get("forced_eos_token_id")),
        min_length=int(generation.get("min_length") or 0),
        early_stopping=generation.get("early_stopping", False),
    )


def _optional_int(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else int(value)


def _warn_about_unsupported_generation_keys(generation: dict[str, Any]) -> None:
    for key, neutral in _UNSUPPORTED_GENERATION_KEYS.items():
        if generation.get(key, neutral) not in (neutral, None):
            logger.warning("generation_config.json sets %s=%r, which the engine ignores", key, generation[key])


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
