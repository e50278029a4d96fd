"""The summarizer: tokenize, encode the batch once, decode each group of requests, detokenize."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from reviewsum_engine.artifacts import ModelArtifacts, load_artifacts
from reviewsum_engine.backend import Seq2SeqBackend
from reviewsum_engine.generation import Generation, GenerationOptions
from reviewsum_engine.onnx_backend import OrtSeq2SeqBackend
from reviewsum_engine.search import SearchRequest, SearchResult, beam_search, greedy_search
from reviewsum_engine.streaming import IncrementalDetokenizer, byte_token_ids

logger = logging.getLogger(__name__)

IsCancelled = Callable[[int], bool]
OnTokens = Callable[[int, str], None]
OnFinish = Callable[[int, Generation], None]


class Summarizer:
    """Runtime-independent engine: any `Seq2SeqBackend` (ONNX Runtime today, TensorRT later) plugs in."""

    def __init__(self, artifacts: ModelArtifacts, backend: Seq2SeqBackend[Any]) -> None:
        self.artifacts = artifacts
        self._backend = backend
        self._tokenizer = Tokenizer.from_file(str(artifacts.tokenizer_path))
        # Truncation keeps room for the `</s>` the post-processor appends.
        self._tokenizer.enable_truncation(max_length=artifacts.max_input_tokens)
        self._tokenizer.no_padding()
        self._byte_ids = byte_token_ids(self._tokenizer)

    @property
    def model_name(self) -> str:
        return self.artifacts.model_name

    @property
    def model_version(self) -> str:
        return self.artifacts.model_version

    def check_options(self, options: GenerationOptions) -> None:
        """Raise `InvalidOptionsError` if this model cannot honour `options` (callers validate per request)."""
        options.validate(self.artifacts.max_new_tokens_limit)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]

    def summarize(
        self,
        texts: list[str],
        options: list[GenerationOptions],
        is_cancelled: IsCancelled | None = None,
        on_tokens: OnTokens | None = None,
        on_finish: OnFinish | None = None,
    ) -> list[Generation]:
        """Summarize each text with its own options; results are in input order.

        `is_cancelled(i)` is polled before every decode step of row i. `on_tokens(i, delta)` receives text as
        it is generated for greedy rows, and the whole summary once for beam rows (beams may still reorder).
        `on_finish(i, generation)` runs as soon as row i ends (after its last delta), so a short summary need
        not wait for the longest one in its batch.
        """
        if len(texts) != len(options):
            raise ValueError(f"{len(texts)} texts but {len(options)} options")
        input_ids = self.tokenize(texts) if texts else []
        detokenizers = {
            i: IncrementalDetokenizer(self._tokenizer, self._byte_ids)
            for i, o in enumerate(options)
            if o.num_beams == 1
        }
        on_token = _streaming_sink(on_tokens, detokenizers) if on_tokens is not None else None

        def finish_row(index: int, result: SearchResult) -> None:
            generation = self._to_generation(input_ids[index], result)
            if on_tokens is not None:
                # Greedy rows flush held-back bytes; beam rows send their whole text once (beams may reorder).
                delta = detokenizers[index].finish() if index in detokenizers else generation.text
                _deliver(on_tokens, index, delta)
            if on_finish is not None:
                _notify_finished(on_finish, index, generation)

        results = self.generate_ids(input_ids, options, is_cancelled, on_token, finish_row)
        return [self._to_generation(ids, result) for ids, result in zip(input_ids, results, strict=True)]

    def generate_ids(
        self,
        input_ids: list[list[int]],
        options: list[GenerationOptions],
        is_cancelled: IsCancelled | None = None,
        on_token: Callable[[int, int], None] | None = None,
        on_finish: Callable[[int, SearchResult], None] | None = None,
    ) -> list[SearchResult]:
        """Token-level generation (what `summarize` runs after tokenizing); `on_token` sees greedy rows' ids,
        `on_finish` each row's result as soon as it ends."""
        if len(input_ids) != len(options):
            raise ValueError(f"{len(input_ids)} inputs but {len(options)} options")
        for option in options:
            self.check_options(option)
        if not input_ids:
            return []
        encoded = self._backend.encode(*_pad_right(input_ids, self.artifacts.rules.pad_token_id))
        cancelled = _safe_cancel_check(is_cancelled)
        rules = self.artifacts.rules
        results: list[SearchResult | None] = [None] * len(input_ids)
        for num_beams, indices in _group_by_num_beams(options).items():
            requests = [SearchRequest(index, options[index]) for index in indices]
            state = self._backend.select_rows(encoded, np.repeat(np.asarray(indices, dtype=np.int64), num_beams))
            finished = on_finish or _ignore_result
            if num_beams == 1:
                group_results = greedy_search(
                    self._backend, state, requests, rules, cancelled, on_token or _ignore, finished
                )
            else:
                group_results = beam_search(self._backend, state, requests, num_beams, rules, cancelled)
                for request, result in zip(requests, group_results, strict=True):
                    finished(request.index, result)
            for request, result in zip(requests, group_results, strict=True):
                results[request.index] = result
        return [_require(result) for result in results]

    def _to_generation(self, input_ids: list[int], result: SearchResult) -> Generation:
        text = self._tokenizer.decode(result.token_ids, skip_special_tokens=True)
        return Generation(text, len(input_ids), len(result.token_ids), result.finish_reason)


class OnnxSummarizer(Summarizer):
    """The summarizer over ONNX Runtime sessions loaded from an artifacts directory."""

    def __init__(self, artifacts_dir: Path, intra_op_threads: int | None = None, allow_spinning: bool = True) -> None:
        artifacts = load_artifacts(Path(artifacts_dir))
        backend = OrtSeq2SeqBackend(artifacts.encoder_path, artifacts.decoder_path, intra_op_threads, allow_spinning)
        super().__init__(artifacts, backend)


def _pad_right(input_ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(ids) for ids in input_ids)
    padded = np.full((len(input_ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, ids in enumerate(input_ids):
        padded[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return padded, mask


def _group_by_num_beams(options: list[GenerationOptions]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for index, option in enumerate(options):
        groups.setdefault(option.num_beams, []).append(index)
    return groups


def _streaming_sink(on_tokens: OnTokens, detokenizers: dict[int, IncrementalDetokenizer]) -> Callable[[int, int], None]:
    def on_token(index: int, token_id: int) -> None:
        _deliver(on_tokens, index, detokenizers[index].push(token_id))

    return on_token


def _require(result: SearchResult | None) -> SearchResult:
    if result is None:
        raise RuntimeError("search returned no result for a request")
    return result


def _ignore(_: int, __: int) -> None:
    return None


def _ignore_result(_: int, __: SearchResult) -> None:
    return None


def _notify_finished(on_finish: OnFinish, index: int, generation: Generation) -> None:
    try:
        on_finish(index, generation)
    except Exception:
        # One client's failing stream must not fail the other requests of the batch.
        logger.exception("on_finish(%d) raised", index)


def _safe_cancel_check(is_cancelled: IsCancelled | None) -> IsCancelled:
    if is_cancelled is None:
        return lambda _: False

    def check(index: int) -> bool:
        try:
            return bool(is_cancelled(index))
        except Exception:
            # A broken cancellation probe must not fail the other requests of the batch; stop this one.
            logger.exception("is_cancelled(%d) raised; treating the request as cancelled", index)
            return True

    return check


def _deliver(on_tokens: OnTokens, index: int, delta: str) -> None:
    if not delta:
        return
    try:
        on_tokens(index, delta)
    except Exception:
        # One client's failing stream must not fail the other requests of the batch.
        logger.exception("on_tokens(%d) raised; the delta was dropped", index)
