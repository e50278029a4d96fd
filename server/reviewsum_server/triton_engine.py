"""The engine backed by Triton: one long-lived `tritonclient.grpc.aio` client, one Triton request per review.

Each review is its own Triton request so that Triton's dynamic batcher can put
reviews of different callers into one batch, and so finished requests leave the
batch independently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from reviewsum_server.admission import Admission
from reviewsum_server.config import GatewayConfig
from reviewsum_server.domain import (
    DeadlineExceeded,
    EngineFailure,
    EngineUnavailable,
    GatewayError,
    GenerationParams,
    ModelDescription,
    Overloaded,
    RequestCancelled,
    StreamChunk,
    SummaryResult,
)

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("SUMMARY", "INPUT_TOKENS", "OUTPUT_TOKENS", "FINISH_REASON")
STREAM_OUTPUT_NAMES = ("TEXT_DELTA", "INPUT_TOKENS", "OUTPUT_TOKENS", "FINISH_REASON")
FINISH_REASONS = {"eos": "stop", "length": "length"}
ENGINE_NAME = "triton-python-onnxruntime"

# Triton's status code -> the gateway's error. Triton reports a full queue as UNAVAILABLE,
# indistinguishable by code from a model that is down; both tell the caller to retry.
_ERROR_BY_CODE: dict[grpc.StatusCode, type[GatewayError]] = {
    grpc.StatusCode.UNAVAILABLE: EngineUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: RequestCancelled,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.NOT_FOUND: EngineUnavailable,
}


def status_code_of(exc: InferenceServerException) -> grpc.StatusCode:
    """tritonclient reports the gRPC code as the text `StatusCode.NAME`."""
    name = (exc.status() or "").removeprefix("StatusCode.")
    return grpc.StatusCode.__members__.get(name, grpc.StatusCode.UNKNOWN)


def error_for_code(code: grpc.StatusCode, message: str) -> GatewayError:
    error_type = _ERROR_BY_CODE.get(code)
    if error_type is None:
        return EngineFailure(f"Triton error {code.name}: {message}")
    return error_type(f"Triton: {message}")


def translate_triton_error(exc: InferenceServerException) -> GatewayError:
    return error_for_code(status_code_of(exc), exc.message() or "")


def first_failure(group: BaseExceptionGroup) -> BaseException:
    """The error that stands for a failed group: a domain error when there is one, so it maps to its code."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return next((e for e in leaves if isinstance(e, GatewayError)), leaves[0])


def _deadline(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def _remaining(deadline: float | None) -> float | None:
    """Time left to the caller's deadline: reviews that waited for a slot get less than the first one."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _scalar_input(name: str, datatype: str, value: object) -> InferInput:
    array = np.array([[value]], dtype=np.object_ if datatype == "BYTES" else None)
    if datatype == "INT32":
        array = array.astype(np.int32)
    elif datatype == "FP32":
        array = array.astype(np.float32)
    tensor = InferInput(name, [1, 1], datatype)
    tensor.set_data_from_numpy(array)
    return tensor


@functools.lru_cache(maxsize=256)
def _option_inputs(params: GenerationParams) -> tuple[InferInput, ...]:
    """The option tensors of a parameter set, built once: tritonclient only reads them when serializing."""
    return (
        _scalar_input("MAX_NEW_TOKENS", "INT32", params.max_summary_tokens),
        _scalar_input("NUM_BEAMS", "INT32", params.beam_size),
        _scalar_input("LENGTH_PENALTY", "FP32", params.length_penalty),
        _scalar_input("NO_REPEAT_NGRAM_SIZE", "INT32", params.no_repeat_ngram_size),
    )


def build_inputs(text: str, params: GenerationParams) -> list[InferInput]:
    return [_scalar_input("TEXT", "BYTES", text.encode("utf-8")), *_option_inputs(params)]


def build_stream_inputs(text: str, params: GenerationParams) -> list[InferInput]:
    return [
        _scalar_input("TEXT", "BYTES", text.encode("utf-8")),
        _scalar_input("MAX_NEW_TOKENS", "INT32", params.max_summary_tokens),
        _scalar_input("NO_REPEAT_NGRAM_SIZE", "INT32", params.no_repeat_ngram_size),
    ]


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def parse_stream_result(result: triton_aio.InferResult) -> StreamChunk:
    """A non-final response has an empty FINISH_REASON; the final one carries the reason and the counts."""
    delta = _text(_first(result, "TEXT_DELTA"))
    reason = _text(_first(result, "FINISH_REASON"))
    if not reason:
        return StreamChunk(delta)
    if reason == "cancelled":
        raise RequestCancelled("Triton cancelled the generation")
    final = SummaryResult(
        summary="",
        input_tokens=int(_first(result, "INPUT_TOKENS")),  # type: ignore[call-overload]
        summary_tokens=int(_first(result, "OUTPUT_TOKENS")),  # type: ignore[call-overload]
        finish_reason=FINISH_REASONS.get(reason, "stop"),
    )
    return StreamChunk(delta, final=final)


def _first(result: triton_aio.InferResult, name: str) -> object:
    array = result.as_numpy(name)
    if array is None:
        raise EngineFailure(f"Triton response lacks output {name}")
    return array.reshape(-1)[0]


def parse_result(result: triton_aio.InferResult) -> SummaryResult:
    summary = _first(result, "SUMMARY")
    reason = _first(result, "FINISH_REASON")
    reason_text = reason.decode() if isinstance(reason, bytes) else str(reason)
    return SummaryResult(
        summary=summary.decode("utf-8") if isinstance(summary, bytes) else str(summary),
        input_tokens=int(_first(result, "INPUT_TOKENS")),  # type: ignore[call-overload]
        summary_tokens=int(_first(result, "OUTPUT_TOKENS")),  # type: ignore[call-overload]
        finish_reason=FINISH_REASONS.get(reason_text, "stop"),
    )


class TritonEngine:
    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: str = "",
        stream_model_name: str = "summarizer_stream",
        max_requests_per_call: int = 32,
        admission: Admission | None = None,
    ) -> None:
        self.admission = admission or Admission.from_config(GatewayConfig())
        self._client = triton_aio.InferenceServerClient(url)
        self._url = url
        self._model_name = model_name
        self._model_version = model_version
        self._stream_model_name = stream_model_name
        self._max_requests_per_call = max_requests_per_call
        self._outputs = [InferRequestedOutput(name) for name in OUTPUT_NAMES]
        self._stream_outputs = [InferRequestedOutput(name) for name in STREAM_OUTPUT_NAMES]
        self._description: ModelDescription | None = None

    @classmethod
    def from_config(cls, config: GatewayConfig, url: str | None = None) -> TritonEngine:
        return cls(
            url or config.triton_url,
            config.model_name,
            config.model_version,
            config.stream_model_name,
            admission=Admission.from_config(config),
        )

    async def summarize(
        self, texts: Sequence[str], params: GenerationParams, *, timeout_s: float | None, request_id: str
    ) -> list[SummaryResult]:
        # A TaskGroup cancels the sibling requests when one fails, so Triton stops their work too.
        # One call never has more than a batch's worth in Triton, so a 500-review product cannot fill its queue.
        fan_out = asyncio.Semaphore(self._max_requests_per_call)
        deadline = _deadline(timeout_s)

        async def bounded(text: str, index: int) -> SummaryResult:
            async with fan_out, self.admission.slot(_remaining(deadline)):
                return await self._summarize_one(text, params, _remaining(deadline), f"{request_id}/{index}")

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(bounded(text, index)) for index, text in enumerate(texts)]
        except ExceptionGroup as failures:
            raise first_failure(failures) from failures
        return [task.result() for task in tasks]

    async def _summarize_one(
        self, text: str, params: GenerationParams, timeout_s: float | None, triton_request_id: str
    ) -> SummaryResult:
        try:
            result = await self._client.infer(
                self._model_name,
                build_inputs(text, params),
                model_version=self._model_version,
                outputs=self._outputs,
                request_id=triton_request_id,
                client_timeout=timeout_s,
            )
        except InferenceServerException as exc:
            raise await self._explain(translate_triton_error(exc)) from exc
        return parse_result(result)

    async def _explain(self, error: GatewayError) -> GatewayError:
        """Triton answers UNAVAILABLE both when the model is down and when its queue is full; readiness tells which."""
        if isinstance(error, EngineUnavailable) and await self.is_ready():
            return Overloaded("the model's queue is full; retry shortly")
        return error

    async def stream(
        self, text: str, params: GenerationParams, *, timeout_s: float | None, request_id: str
    ) -> AsyncIterator[StreamChunk]:
        """One ModelStreamInfer call to the decoupled model; leaving early cancels it, and Triton stops decoding."""
        final_received = asyncio.Event()

        async def one_request() -> AsyncIterator[dict[str, object]]:
            yield {
                "model_name": self._stream_model_name,
                "inputs": build_stream_inputs(text, params),
                "outputs": self._stream_outputs,
                "request_id": request_id,
            }
            # Half-closing the request side early could end the call before the last response.
            await final_received.wait()

        deadline = _deadline(timeout_s)
        async with self.admission.slot(timeout_s):
            async for chunk in self._stream_admitted(one_request(), final_received, _remaining(deadline)):
                yield chunk

    async def _stream_admitted(
        self, requests: AsyncIterator[dict[str, object]], final_received: asyncio.Event, timeout_s: float | None
    ) -> AsyncIterator[StreamChunk]:
        responses = self._client.stream_infer(requests, stream_timeout=timeout_s)
        try:
            async for result, error in responses:
                if error is not None:
                    raise EngineFailure(f"Triton stream error: {error.message()}")
                chunk = parse_stream_result(result)
                yield chunk
                if chunk.final is not None:
                    final_received.set()
                    return
            raise EngineFailure("Triton closed the stream before the final response")
        except grpc.aio.AioRpcError as exc:
            raise error_for_code(exc.code(), exc.details() or "") from exc
        finally:
            final_received.set()
            responses.cancel()

    async def is_ready(self) -> bool:
        try:
            ready = bool(await self._client.is_model_ready(self._model_name, self._model_version, client_timeout=2.0))
        except InferenceServerException:
            ready = False
        if not ready:
            self._description = None  # a reloaded model may be another version
        return ready

    async def describe(self) -> ModelDescription:
        """The served model, read from Triton once and kept until the model stops being ready."""
        if self._description is None:
            self._description = await self._fetch_description()
        return self._description

    async def _fetch_description(self) -> ModelDescription:
        try:
            metadata = await self._client.get_model_metadata(
                self._model_name, self._model_version, as_json=True, client_timeout=5.0
            )
            config = await self._client.get_model_config(
                self._model_name, self._model_version, as_json=True, client_timeout=5.0
            )
        except InferenceServerException as exc:
            raise translate_triton_error(exc) from exc
        parameters = config.get("config", {}).get("parameters", {})

        def parameter(name: str, default: str) -> str:
            return parameters.get(name, {}).get("string_value", default) or default

        versions = metadata.get("versions") or [self._model_version or "1"]
        languages = tuple(x for x in parameter("languages", "zh,en").split(",") if x)
        return ModelDescription(
            name=metadata.get("name", self._model_name),
            version=self._model_version or str(max(versions, key=int)),
            engine=ENGINE_NAME,
            languages=languages,
            max_input_tokens=int(parameter("max_input_tokens", "256")),
        )

    async def close(self) -> None:
        await self._client.close()
