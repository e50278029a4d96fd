"""Triton Python-backend model `summarizer`: ReviewSum's ONNX Runtime engine behind the tensor contract.

Inputs (each [batch, 1]): TEXT (bytes, UTF-8), optional MAX_NEW_TOKENS, NUM_BEAMS, LENGTH_PENALTY,
NO_REPEAT_NGRAM_SIZE. Outputs (each [batch, 1]): SUMMARY, INPUT_TOKENS, OUTPUT_TOKENS, FINISH_REASON.

Every row of every request in a dynamic batch is validated on its own; a request with a bad value gets
its own INVALID_ARG error response while the others run, all together in one engine call. A request
the client cancelled gets a CANCELLED error response. Exactly one response per request, in order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from reviewsum_engine import GenerationOptions, InvalidOptionsError, OnnxSummarizer

OUTPUT_NAMES = ("SUMMARY", "INPUT_TOKENS", "OUTPUT_TOKENS", "FINISH_REASON")
# Optional input -> (GenerationOptions field, Python type); absent inputs keep the engine defaults.
OPTION_INPUTS: dict[str, tuple[str, type]] = {
    "MAX_NEW_TOKENS": ("max_new_tokens", int),
    "NUM_BEAMS": ("num_beams", int),
    "LENGTH_PENALTY": ("length_penalty", float),
    "NO_REPEAT_NGRAM_SIZE": ("no_repeat_ngram_size", int),
}
# is_cancelled() is an IPC round trip to the server; polling it for every row at every decode step would
# cost more than the step itself on small models, so each request's answer is reused for this long.
CANCEL_POLL_INTERVAL_S = 0.02


class RequestError(Exception):
    """A request-level problem reported to that request's client only."""


@dataclass
class ParsedRequest:
    texts: list[str]
    options: list[GenerationOptions]


class CancellationProbe:
    """Per-request `is_cancelled()` with a short cache, so rows of one request and fast steps share a call."""

    def __init__(self, request: Any) -> None:
        self._request = request
        self._checked_at = float("-inf")
        self._cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked_at >= CANCEL_POLL_INTERVAL_S:
            self._cancelled = bool(self._request.is_cancelled())
            self._checked_at = now
        return self._cancelled


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        started = time.perf_counter()
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        artifacts_dir = Path(parameters.get("artifacts_dir") or "artifacts")
        if not artifacts_dir.is_absolute():
            artifacts_dir = version_dir / artifacts_dir
        threads = int(parameters.get("intra_op_threads") or 0) or None
        self._engine = OnnxSummarizer(artifacts_dir, intra_op_threads=threads)
        self._output_dtypes = {
            name: pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(config, name)["data_type"])
            for name in OUTPUT_NAMES
        }
        self._warn_if_config_names_another_model(parameters)
        pb_utils.Logger.log_info(
            f"summarizer: loaded {self._engine.model_name} version {self._engine.model_version} from {artifacts_dir} "
            f"(intra_op_threads={threads or 'default'}) in {time.perf_counter() - started:.2f}s"
        )

    def _warn_if_config_names_another_model(self, parameters: dict[str, str]) -> None:
        configured = (parameters.get("reviewsum_model_name"), parameters.get("reviewsum_model_version"))
        loaded = (self._engine.model_name, self._engine.model_version)
        if configured != loaded:
            pb_utils.Logger.log_warn(
                f"summarizer: config.pbtxt advertises {configured} but the artifacts are {loaded}; "
                "re-render the repository with reviewsum_build.model_repository"
            )

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
        probes = {index: CancellationProbe(requests[index]) for index in set(owners)}
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
        texts = _read_texts(request)
        values: dict[str, list[Any]] = {}
        for input_name, (field, kind) in OPTION_INPUTS.items():
            column = _read_optional(request, input_name, len(texts))
            if column is not None:
                values[field] = [kind(value) for value in column]
        options = []
        for row in range(len(texts)):
            option = GenerationOptions(**{field: column[row] for field, column in values.items()})
            try:
                self._engine.check_options(option)
            except InvalidOptionsError as error:
                input_name = next(name for name, (field, _) in OPTION_INPUTS.items() if field == error.field)
                raise RequestError(f"{input_name}: {error}") from error
            options.append(option)
        return ParsedRequest(texts, options)

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


def _read_texts(request: Any) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, "TEXT")
    if tensor is None:
        raise RequestError("TEXT is required")
    array = tensor.as_numpy()
    if array.ndim != 2 or array.shape[1] != 1 or array.shape[0] == 0:
        raise RequestError(f"TEXT must have shape [batch, 1], got {list(array.shape)}")
    texts = []
    for value in array[:, 0]:
        try:
            text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as error:
            raise RequestError(f"TEXT is not valid UTF-8: {error}") from error
        if not text.strip():
            raise RequestError("TEXT must not be empty")
        texts.append(text)
    return texts


def _read_optional(request: Any, name: str, rows: int) -> list[Any] | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy()
    if array.shape != (rows, 1):
        raise RequestError(f"{name} must have shape [{rows}, 1] like TEXT, got {list(array.shape)}")
    return array[:, 0].tolist()


def _error_response(message: str, code: int) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
