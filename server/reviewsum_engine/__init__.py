"""Generation engine: tokenizer + ONNX Runtime encoder/decoder with a KV cache, greedy and beam search."""

from reviewsum_engine.artifacts import DecodingRules, ModelArtifacts, load_artifacts
from reviewsum_engine.backend import Seq2SeqBackend
from reviewsum_engine.generation import (
    MAX_NUM_BEAMS,
    FinishReason,
    Generation,
    GenerationOptions,
    InvalidOptionsError,
)
from reviewsum_engine.onnx_backend import OrtSeq2SeqBackend
from reviewsum_engine.summarizer import OnnxSummarizer, Summarizer

__all__ = [
    "MAX_NUM_BEAMS",
    "DecodingRules",
    "FinishReason",
    "Generation",
    "GenerationOptions",
    "InvalidOptionsError",
    "ModelArtifacts",
    "OnnxSummarizer",
    "OrtSeq2SeqBackend",
    "Seq2SeqBackend",
    "Summarizer",
    "load_artifacts",
]
