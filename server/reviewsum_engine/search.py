"""Greedy and beam search over a `Seq2SeqBackend`, reproducing transformers' `generate()` token for token.

Both loops drop a request's rows from the batch as soon as it is finished (end of sequence, its own
max_new_tokens, beam search's stopping rule, or cancellation), so finished requests stop costing compute.
Beam search follows transformers 4.57 `GenerationMixin._beam_search` (per request instead of per batch,
so requests with different options share one batch): keep the 2*num_beams best continuations, the
num_beams best unfinished ones continue, the finished ones compete for num_beams slots with score
sum(logprobs) / generated_len**length_penalty, and `early_stopping` (False, True or "never") decides when
a request can no longer improve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reviewsum_engine.artifacts import DecodingRules
from reviewsum_engine.backend import Seq2SeqBackend
from reviewsum_engine.generation import FinishReason, GenerationOptions
from reviewsum_engine.logits import log_softmax, process_scores

# transformers marks impossible beams by adding -1e9 in float32; the same constant keeps ties identical.
_NEG = np.float32(-1.0e9)

CancelCheck = Callable[[int], bool]
TokenSink = Callable[[int, int], None]
FinishSink = Callable[[int, "SearchResult"], None]


@dataclass(frozen=True)
class SearchRequest:
    index: int  # the caller's row index, passed to is_cancelled / on_token
    options: GenerationOptions


@dataclass(frozen=True)
class SearchResult:
    token_ids: list[int]  # generated ids, decoder start token excluded, final `</s>` included if produced
    finish_reason: FinishReason


def _never_cancelled(_: int) -> bool:
    return False


def _ignore_token(_: int, __: int) -> None:
    return None


def _ignore_finish(_: int, __: SearchResult) -> None:
    return None


def _finish_reason(token_ids: Sequence[int], max_new_tokens: int, rules: DecodingRules) -> FinishReason:
    if not token_ids or token_ids[-1] != rules.eos_token_id:
        return "length"
    # At the last position forced_eos_token_id leaves the model no choice: that is a length stop.
    forced = rules.forced_eos_token_id == rules.eos_token_id and len(token_ids) == max_new_tokens
    return "length" if forced else "eos"


def greedy_search(
    backend: Seq2SeqBackend[Any],
    state: Any,
    requests: Sequence[SearchRequest],
    rules: DecodingRules,
    is_cancelled: CancelCheck = _never_cancelled,
    on_token: TokenSink = _ignore_token,
    on_finish: FinishSink = _ignore_finish,
) -> list[SearchResult]:
    """Decode one row per request (`state` holds those rows, in order) by argmax of the processed logits.

    `on_finish(index, result)` runs as soon as a row ends, before the rest of the batch does.
    """
    max_new = np.array([request.options.max_new_tokens for request in requests], dtype=np.int64)
    ngram = np.array([request.options.no_repeat_ngram_size for request in requests], dtype=np.int64)
    results: list[SearchResult | None] = [None] * len(requests)
    active = np.arange(len(requests))  # request positions of the batch rows, in row order
    sequences = np.full((len(requests), 1), rules.decoder_start_token_id, dtype=np.int64)
    while len(active):
        cancelled = np.array([is_cancelled(requests[position].index) for position in active], dtype=bool)
        for row in np.flatnonzero(cancelled):
            results[active[row]] = SearchResult(sequences[row, 1:].tolist(), "cancelled")
            on_finish(requests[active[row]].index, results[active[row]])
        if cancelled.any():
            active, sequences, state = _keep_rows(backend, state, ~cancelled, active, sequences)
            if not len(active):
                break
        logits, state = backend.decode_step(state, sequences[:, -1])
        scores = process_scores(logits, sequences, ngram[active], max_new[active] + 1, rules)
        next_tokens = scores.argmax(axis=-1)
        sequences = np.concatenate([sequences, next_tokens[:, None]], axis=1)
        for position, token in zip(active, next_tokens, strict=True):
            on_token(requests[position].index, int(token))
        generated = sequences.shape[1] - 1
        done = (next_tokens == rules.eos_token_id) | (generated >= max_new[active])
        for row in np.flatnonzero(done):
            position = active[row]
            token_ids = sequences[row, 1:].tolist()
            results[position] = SearchResult(token_ids, _finish_reason(token_ids, int(max_new[position]), rules))
            on_finish(requests[position].index, results[position])
        if done.any():
            active, sequences, state = _keep_rows(backend, state, ~done, active, sequences)
    return [result for result in results if result is not None]


def _keep_rows(
    backend: Seq2SeqBackend[Any], state: Any, keep: np.ndarray, active: np.ndarray, sequences: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Any]:
    if keep.any():
        state = backend.select_rows(state, np.flatnonzero(keep))
    return active[keep], sequences[keep], state


@dataclass
class _BeamGroup:
    """Per-request beam state for the requests still in the batch; arrays are [requests, num_beams, ...]."""

    positions: np.ndarray  # request positions
    running: np.ndarray  # int64 [R, k, cur_len], decoder start token included
    running_scores: np.ndarray  # float32 [R, k], sum of log-probs
    finished_scores: np.ndarray  # float32 [R, k], length-penalised; -1e9 for empty slots
    finished_flags: np.ndarray  # bool [R, k]
    finished_tokens: list[list[list[int]]]  # [R][k] generated ids of the finished slots
    improvable: np.ndarray  # bool [R], transformers' is_early_stop_heuristic_unsatisfied

    def keep(self, mask: np.ndarray) -> None:
        self.positions = self.positions[mask]
        self.running = self.running[mask]
        self.running_scores = self.running_scores[mask]
        self.finished_scores = self.finished_scores[mask]
        self.finished_flags = self.finished_flags[mask]
        self.finished_tokens = [tokens for tokens, kept in zip(self.finished_tokens, mask, strict=True) if kept]
        self.improvable = self.improvable[mask]


def beam_search(
    backend: Seq2SeqBackend[Any],
    state: Any,
    requests: Sequence[SearchRequest],
    num_beams: int,
    rules: DecodingRules,
    is_cancelled: CancelCheck = _never_cancelled,
) -> list[SearchResult]:
    """Beam search for requests sharing `num_beams`; `state` holds num_beams copies of each request's row."""
    k = num_beams
    count = len(requests)
    max_new = np.array([request.options.max_new_tokens for request in requests], dtype=np.int64)
    penalty = np.array([request.options.length_penalty for request in requests], dtype=np.float64)
    ngram = np.array([request.options.no_repeat_ngram_size for request in requests], dtype=np.int64)
    initial_scores = np.zeros((count, k), dtype=np.float32)
    # Only the first beam starts alive, so the first step does not pick the same token k times.
    initial_scores[:, 1:] = _NEG
    group = _BeamGroup(
        positions=np.arange(count),
        running=np.full((count, k, 1), rules.decoder_start_token_id, dtype=np.int64),
        running_scores=initial_scores,
        finished_scores=np.full((count, k), _NEG, dtype=np.float32),
        finished_flags=np.zeros((count, k), dtype=bool),
        finished_tokens=[[[] for _ in range(k)] for _ in range(count)],
        improvable=np.ones(count, dtype=bool),
    )
    results: list[SearchResult | None] = [None] * count
    while len(group.positions):
        cancelled = np.array([is_cancelled(requests[position].index) for position in group.positions], dtype=bool)
        if cancelled.any():
            for r in np.flatnonzero(cancelled):
                results[group.positions[r]] = SearchResult(_best_so_far(group, r), "cancelled")
            state = _drop_requests(backend, state, group, ~cancelled, k)
            if not len(group.positions):
                break
        logits, state = backend.decode_step(state, group.running[:, :, -1].reshape(-1))
        beam_order, done = _beam_step(group, logits, k, max_new, penalty, ngram, rules)
        rows = (np.arange(len(group.positions))[:, None] * k + beam_order).reshape(-1)
        state = backend.select_rows(state, rows, encoder_rows=np.arange(len(rows)))
        for r in np.flatnonzero(done):
            position = group.positions[r]
            token_ids = group.finished_tokens[r][0]
            results[position] = SearchResult(token_ids, _finish_reason(token_ids, int(max_new[position]), rules))
        if done.any():
            state = _drop_requests(backend, state, group, ~done, k)
    return [result for result in results if result is not None]


def _beam_step(
    group: _BeamGroup,
    logits: np.ndarray,
    k: int,
    max_new_all: np.ndarray,
    penalty_all: np.ndarray,
    ngram_all: np.ndarray,
    rules: DecodingRules,
) -> tuple[np.ndarray, np.ndarray]:
    """One beam-search update of `group` from the logits of its rows; returns (beam order [R, k], done [R])."""
    count, _, cur_len = group.running.shape
    vocab = logits.shape[-1]
    max_new, penalty = max_new_all[group.positions], penalty_all[group.positions]
    flat_running = group.running.reshape(count * k, cur_len)
    log_probs = process_scores(
        log_softmax(logits), flat_running, np.repeat(ngram_all[group.positions], k), np.repeat(max_new + 1, k), rules
    )
    accumulated = (log_probs.reshape(count, k, vocab) + group.running_scores[:, :, None]).reshape(count, k * vocab)

    # c. the 2k best continuations over all beams of each request
    top = _top_indices(accumulated, 2 * k)
    top_scores = np.take_along_axis(accumulated, top, axis=1)
    top_beams, top_tokens = top // vocab, top % vocab
    candidates = np.concatenate(
        [np.take_along_axis(group.running, top_beams[:, :, None], axis=1), top_tokens[:, :, None]], axis=2
    )
    generated_len = cur_len  # tokens generated including this step's (the decoder start is not generated)
    # d. which continuations stop here: end of sequence, or the request's max_new_tokens reached
    hits = (top_tokens == rules.eos_token_id) | (generated_len >= max_new)[:, None]

    # e. the k best unfinished continuations run on
    running_candidates = top_scores + hits.astype(np.float32) * _NEG
    next_order = _top_indices(running_candidates, k)
    beam_order = np.take_along_axis(top_beams, next_order, axis=1)
    previous_improvable = group.improvable
    group.running = np.take_along_axis(candidates, next_order[:, :, None], axis=1)
    group.running_scores = np.take_along_axis(running_candidates, next_order, axis=1)

    # f. finished continuations among the k best compete with earlier ones for the k result slots
    just_finished = hits & (np.arange(2 * k) < k)[None, :]
    _update_finished(
        group, top_scores, candidates, just_finished, generated_len, penalty, previous_improvable, rules, k
    )

    # g. can any request still improve? (transformers' _check_early_stop_heuristic)
    if rules.early_stopping == "never":
        hypothetical_len = np.where(penalty > 0.0, max_new, generated_len)
    else:
        hypothetical_len = np.full(count, generated_len)
    best_running = group.running_scores[:, 0] / _length_norm(hypothetical_len, penalty)
    worst_finished = np.where(group.finished_flags, group.finished_scores.min(axis=1, keepdims=True), _NEG)
    group.improvable = previous_improvable & np.any(best_running[:, None] > worst_finished, axis=1)
    all_finished = group.finished_flags.all(axis=1) & (rules.early_stopping is True)
    done = ~group.improvable | all_finished | hits.all(axis=1)
    return beam_order, done


def _update_finished(
    group: _BeamGroup,
    top_scores: np.ndarray,
    candidates: np.ndarray,
    just_finished: np.ndarray,
    generated_len: int,
    penalty: np.ndarray,
    improvable: np.ndarray,
    rules: DecodingRules,
    k: int,
) -> None:
    scores = top_scores / _length_norm(np.full(len(penalty), generated_len), penalty)[:, None]
    full = group.finished_flags.all(axis=1) & (rules.early_stopping is True)
    scores = scores + full[:, None].astype(np.float32) * _NEG
    scores = scores + (~improvable)[:, None].astype(np.float32) * _NEG
    scores = scores + (~just_finished).astype(np.float32) * _NEG
    merged_scores = np.concatenate([group.finished_scores, scores], axis=1)
    merged_flags = np.concatenate([group.finished_flags, just_finished], axis=1)
    order = _top_indices(merged_scores, k)
    group.finished_scores = np.take_along_axis(merged_scores, order, axis=1)
    group.finished_flags = np.take_along_axis(merged_flags, order, axis=1)
    group.finished_tokens = [
        [previous[j] if j < k else candidates[r, j - k, 1:].tolist() for j in order[r]]
        for r, previous in enumerate(group.finished_tokens)
    ]


def _length_norm(lengths: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    # transformers divides float32 scores by a Python float `len ** penalty`; torch casts it to float32 first.
    return np.power(lengths.astype(np.float64), penalty).astype(np.float32)


def _top_indices(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` largest scores per row, best first (ties: lower index first)."""
    if scores.shape[1] > 4 * count:
        # A full sort of num_beams * vocab scores per step is the slowest part of the loop; partition first.
        candidates = np.argpartition(-scores, count - 1, axis=1)[:, :count]
    else:
        candidates = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    values = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -values), axis=1)[:, :count]
    return np.take_along_axis(candidates, order, axis=1)


def _best_so_far(group: _BeamGroup, r: int) -> list[int]:
    if group.finished_flags[r, 0]:
        return group.finished_tokens[r][0]
    return group.running[r, 0, 1:].tolist()


def _drop_requests(backend: Seq2SeqBackend[Any], state: Any, group: _BeamGroup, keep: np.ndarray, k: int) -> Any:
    rows = (np.flatnonzero(keep)[:, None] * k + np.arange(k)).reshape(-1)
    group.keep(keep)
    return backend.select_rows(state, rows) if len(rows) else state
