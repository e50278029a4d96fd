"""Score processors that reproduce transformers' generate() for the options the engine supports.

Same order as `GenerationMixin._get_logits_processor`: no-repeat n-grams, min length, forced BOS,
forced EOS. Greedy search applies them to raw logits, beam search to log-softmax scores, as
transformers does. Scores are float32 [rows, vocab] and are modified in place.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from reviewsum_engine.artifacts import DecodingRules


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def process_scores(
    scores: np.ndarray,
    sequences: np.ndarray,
    ngram_sizes: np.ndarray,
    max_lengths: np.ndarray,
    rules: DecodingRules,
) -> np.ndarray:
    """`sequences` int64 [rows, cur_len] holds the decoder ids so far, decoder start token included;
    `max_lengths` is per row 1 + max_new_tokens, transformers' `max_length` for an encoder-decoder."""
    ban_repeated_ngrams(scores, sequences, ngram_sizes)
    cur_len = sequences.shape[1]
    if cur_len < rules.min_length:
        scores[:, rules.eos_token_id] = -np.inf
    if rules.forced_bos_token_id is not None and cur_len == 1:
        _force_token(scores, np.ones(len(scores), dtype=bool), rules.forced_bos_token_id)
    if rules.forced_eos_token_id is not None:
        _force_token(scores, max_lengths - 1 == cur_len, rules.forced_eos_token_id)
    return scores


def ban_repeated_ngrams(scores: np.ndarray, sequences: np.ndarray, ngram_sizes: np.ndarray) -> None:
    """Ban every token that would complete an n-gram already present in the row (fairseq/transformers rule)."""
    cur_len = sequences.shape[1]
    for size in np.unique(ngram_sizes):
        size = int(size)
        if size <= 0 or cur_len < size:  # no complete n-gram yet
            continue
        rows = np.flatnonzero(ngram_sizes == size)
        windows = sliding_window_view(sequences[rows], size, axis=1)  # [rows, cur_len - size + 1, size]
        prefix = sequences[rows, cur_len - size + 1 :]  # the last size-1 ids, empty for unigrams
        matches = np.all(windows[:, :, : size - 1] == prefix[:, None, :], axis=2)
        match_rows, match_windows = np.nonzero(matches)
        scores[rows[match_rows], windows[match_rows, match_windows, size - 1]] = -np.inf


def _force_token(scores: np.ndarray, rows: np.ndarray, token_id: int) -> None:
    scores[rows, :] = -np.inf
    scores[rows, token_id] = 0.0
