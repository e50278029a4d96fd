"""Triton Python-backend model `summarizer`: ReviewSum's ONNX Runtime engine behind the tensor contract.

Inputs (each [batch, 1]): TEXT (bytes, UTF-8), optional MAX_NEW_TOKENS, NUM_BEAMS, LENGTH_PENALTY,
NO_REPEAT_NGRAM_SIZE. Outputs (each [batch, 1]): SUMMARY, INPUT_TOKENS, OUTPUT_TOKENS, FINISH_REASON.

Every row of every request in a dynamic batch is validated on its own; a request with a bad value gets
its own INVALID_ARG error response while the others run, all together in one engine call. A request
the client cancelled gets a CANCELLED error response. Exactly one response per request, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from reviewsum_engine import GenerationOptions
from reviewsum_engine.triton_support import (
    CancellationProbe,
    ParsedRequest,
    RequestError,
    load_model,
    parse_request,
)

OUTPUT_NAMES = ("SUMMARY", "INPUT_TOKENS", "OUTPUT_TOKENS", "FINISH_REASON")
# Optional input -> (GenerationOptions field, Python type); absent inputs keep the engine defaults.
OPTION_INPUTS: dict[str, tuple[str, type]] = {
    "MAX_NEW_TOKENS": ("max_new_tokens", int),
    "NUM_BEAMS": ("num_beams", int),
    "LENGTH_PENALTY": ("length_penalty", float),
    "NO_REPEAT_NGRAM_SIZE": ("no_repeat_ngram_size", int),
}
# How long one request's is_cancelled() answer is reused (each call is an IPC round trip to the server).
CANCEL_POLL_INTERVAL_S = 0.02


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        loaded = load_model(args, "summarizer", OUTPUT_NAMES, pb_utils)
        self._engine, self._output_dtypes = loaded.engine, loaded.output_dtypes

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        texts: list[str] = []
        options: list[GenerationOptions] = []
        owners: list[int] = []  # request index of each engine row
        for index, request in enumerate(requests):
            try:
                parsed = self._parse(request)
            except RequestError as error:
                responses[index] = _error_response(str(error), pb_utils.TritonError.INVALID_ARG)
                continue
            texts += parsed.texts
            options += parsed.options
            owners += [index] * len(parsed.texts)
        if texts:
            self._run_batch(requests, texts, options, owners, responses)
        return responses

    def _run_batch(
        self,
        requests: list[Any],
        texts: list[str],
        options: list[GenerationOptions],
        owners: list[int],
        responses: list[Any],
    ) -> None:
        probes = {index: CancellationProbe(requests[index], CANCEL_POLL_INTERVAL_S) for index in set(owners)}
        is_cancelled: Callable[[int], bool] = lambda row: probes[owners[row]]()  # noqa: E731
        try:
            generations = self._engine.summarize(texts, options, is_cancelled=is_cancelled)
        except Exception as error:  # the engine failed for the whole batch: tell every request, keep serving
            pb_utils.Logger.log_error(f"summarizer: engine failure for {len(texts)} rows: {error!r}")
            for index in set(owners):
                responses[index] = _error_response("internal error while summarizing", pb_utils.TritonError.INTERNAL)
            return
        for index in sorted(set(owners)):
            rows = [row for row, owner in enumerate(owners) if owner == index]
            if any(generations[row].finish_reason == "cancelled" for row in rows):
                responses[index] = _error_response("request cancelled", pb_utils.TritonError.CANCELLED)
            else:
                responses[index] = self._response([generations[row] for row in rows])

    def _parse(self, request: Any) -> ParsedRequest:
        return parse_request(lambda name: _input_array(request, name), OPTION_INPUTS, self._engine.check_options)

    def _response(self, generations: list[Any]) -> Any:
        columns = {
            "SUMMARY": [g.text.encode("utf-8") for g in generations],
            "INPUT_TOKENS": [g.input_tokens for g in generations],
            "OUTPUT_TOKENS": [g.output_tokens for g in generations],
            "FINISH_REASON": [g.finish_reason.encode("utf-8") for g in generations],
        }
        tensors = [
            pb_utils.Tensor(name, np.array(values, dtype=self._output_dtypes[name]).reshape(len(generations), 1))
            for name, values in columns.items()
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        pb_utils.Logger.log_info("summarizer: unloaded")


def _input_array(request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _error_response(message: str, code: int) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
