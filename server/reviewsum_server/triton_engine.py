"""The engine backed by Triton: long-lived gRPC channels to Triton, one Triton request per review.

Each review is its own Triton request so that Triton's dynamic batcher can put
reviews of different callers into one batch, and so finished requests leave the
batch independently.

Unary inference, the hot path, builds Triton's `ModelInferRequest` protobuf itself and reads the
raw output bytes: tritonclient's request assembly and numpy result wrapping cost about a quarter
of a millisecond of CPU per call, a measurable share of the gateway's overhead. Streams,
readiness and metadata go through `tritonclient.grpc.aio`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import time
from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput, service_pb2, service_pb2_grpc
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
# As tritonclient sets them: no message size limit (Triton's own limits apply).
_CHANNEL_OPTIONS = (("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1))

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


_OPTION_TENSORS = (
    ("MAX_NEW_TOKENS", "INT32", "<i", "max_summary_tokens"),
    ("NUM_BEAMS", "INT32", "<i", "beam_size"),
    ("LENGTH_PENALTY", "FP32", "<f", "length_penalty"),
    ("NO_REPEAT_NGRAM_SIZE", "INT32", "<i", "no_repeat_ngram_size"),
)
TEXT_INPUT = 0  # index of TEXT among the request's inputs and raw contents


def bytes_element(value: bytes) -> bytes:
    """One element of a Triton BYTES tensor in raw form: a little-endian uint32 length, then the bytes."""
    return struct.pack("<I", len(value)) + value


def _add_input(request: service_pb2.ModelInferRequest, name: str, datatype: str, raw: bytes) -> None:
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = name, datatype
    tensor.shape.extend((1, 1))
    request.raw_input_contents.append(raw)


@functools.lru_cache(maxsize=256)
def _request_template(model_name: str, model_version: str, params: GenerationParams) -> service_pb2.ModelInferRequest:
    """Everything of a request but its text and id, built once per parameter set."""
    request = service_pb2.ModelInferRequest(model_name=model_name, model_version=model_version)
    _add_input(request, "TEXT", "BYTES", b"")
    for name, datatype, layout, field in _OPTION_TENSORS:
        _add_input(request, name, datatype, struct.pack(layout, getattr(params, field)))
    for name in OUTPUT_NAMES:
        request.outputs.add().name = name
    return request


def build_request(
    model_name: str, model_version: str, text: str, params: GenerationParams, request_id: str
) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest()
    request.CopyFrom(_request_template(model_name, model_version, params))
    request.id = request_id
    request.raw_input_contents[TEXT_INPUT] = bytes_element(text.encode("utf-8"))
    return request


def _raw_outputs(response: service_pb2.ModelInferResponse) -> dict[str, bytes]:
    raw = dict(zip((output.name for output in response.outputs), response.raw_output_contents, strict=False))
    missing = [name for name in OUTPUT_NAMES if name not in raw]
    if missing:
        raise EngineFailure(f"Triton response lacks output {missing[0]}")
    return raw


def _first_bytes_element(raw: bytes) -> bytes:
    (length,) = struct.unpack_from("<I", raw)
    return raw[4 : 4 + length]


def parse_response(response: service_pb2.ModelInferResponse) -> SummaryResult:
    """A `ModelInferResponse` of the summarizer (one review) as the gateway's result."""
    raw = _raw_outputs(response)
    reason = _first_bytes_element(raw["FINISH_REASON"]).decode("utf-8")
    return SummaryResult(
        summary=_first_bytes_element(raw["SUMMARY"]).decode("utf-8"),
        input_tokens=struct.unpack_from("<i", raw["INPUT_TOKENS"])[0],
        summary_tokens=struct.unpack_from("<i", raw["OUTPUT_TOKENS"])[0],
        finish_reason=FINISH_REASONS.get(reason, "stop"),
    )


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
        self._channel = grpc.aio.insecure_channel(url, options=_CHANNEL_OPTIONS)
        self._infer_stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._url = url
        self._model_name = model_name
        self._model_version = model_version
        self._stream_model_name = stream_model_name
        self._max_requests_per_call = max_requests_per_call
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
        deadline = _deadline(timeout_s)
        if len(texts) == 1:  # the common call: no task group, no fan-out limit to set up
            return [await self._summarize_admitted(texts[0], params, deadline, f"{request_id}/0")]
        fan_out = asyncio.Semaphore(self._max_requests_per_call)

        async def bounded(text: str, index: int) -> SummaryResult:
            async with fan_out:
                return await self._summarize_admitted(text, params, deadline, f"{request_id}/{index}")

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(bounded(text, index)) for index, text in enumerate(texts)]
        except ExceptionGroup as failures:
            raise first_failure(failures) from failures
        return [task.result() for task in tasks]

    async def _summarize_admitted(
        self, text: str, params: GenerationParams, deadline: float | None, triton_request_id: str
    ) -> SummaryResult:
        async with self.admission.slot(_remaining(deadline)):
            return await self._summarize_one(text, params, _remaining(deadline), triton_request_id)

    async def _summarize_one(
        self, text: str, params: GenerationParams, timeout_s: float | None, triton_request_id: str
    ) -> SummaryResult:
        request = build_request(self._model_name, self._model_version, text, params, triton_request_id)
        try:
            response = await self._infer_stub.ModelInfer(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise await self._explain(error_for_code(exc.code(), exc.details() or "")) from exc
        return parse_response(response)

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
        async with self.admission.slot(timeout_s, kind="stream"):
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
        await self._channel.close()
        await self._client.close()
