"""The step interface the search code drives; one implementation per runtime (ONNX Runtime now, TensorRT later).

A backend owns the tensors of a batch (encoder output, KV cache) behind an opaque state value, so the
search code never touches device memory: it asks for logits of the last position, and tells the backend
which rows to keep and in which order.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import numpy as np

StateT = TypeVar("StateT")


class Seq2SeqBackend(Protocol[StateT]):
    @property
    def vocab_size(self) -> int: ...

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> StateT:
        """Run the encoder on int64 [rows, source_len] right-padded ids; return a state with an empty decoder cache."""
        ...

    def decode_step(self, state: StateT, input_ids: np.ndarray) -> tuple[np.ndarray, StateT]:
        """Feed one int64 token per row ([rows]); return float32 logits [rows, vocab] and the extended state.

        All rows share the same decoder length: the search code starts them together and only ever drops
        or reorders rows, so no decoder-side padding is needed.
        """
        ...

    def select_rows(self, state: StateT, rows: np.ndarray, encoder_rows: np.ndarray | None = None) -> StateT:
        """Gather rows of a state along the batch axis (drop finished rows, reorder or expand beams).

        `rows` indexes the decoder self-attention cache. `encoder_rows` indexes what derives from the
        encoder (hidden states, mask, cross-attention cache) and defaults to `rows`; beam reordering passes
        the identity there, because all beams of one request share the same encoder-side tensors, which
        spares copying the largest part of the cache every step.
        """
        ...
