"""Triton Python-backend model `summarizer_stream` (decoupled): greedy summaries streamed as text deltas.

Inputs, each [1, 1] (one row per request): TEXT (bytes, UTF-8), optional MAX_NEW_TOKENS, NO_REPEAT_NGRAM_SIZE.
Every response carries the outputs, each [1, 1]:
  TEXT_DELTA     text generated since the previous response; deltas never split a character, and the
                 concatenation of all of a request's deltas is exactly the `summarizer` model's greedy SUMMARY;
  FINISH_REASON  "" until the final response, then "eos" | "length" | "cancelled";
  INPUT_TOKENS, OUTPUT_TOKENS  0 until the final response, then the counts.
The final response (flag TRITONSERVER_RESPONSE_COMPLETE_FINAL) carries the last delta (often "") together with
the finish reason and counts; there is no separate flags-only response. A bad request gets exactly one error
response (INVALID_ARG) with the final flag, and the rest of its batch runs.

All valid requests of a dynamic batch are decoded together in one engine call, so concurrent streams share
each decode step. A request whose client cancelled (polled through `request.is_cancelled()`, at most every
CANCEL_POLL_INTERVAL_S) stops decoding at the next step.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from reviewsum_engine import Generation, GenerationOptions
from reviewsum_engine.triton_support import CancellationProbe, ModelSettings, RequestError, load_model, parse_request

MODEL = "summarizer_stream"
OUTPUT_NAMES = ("TEXT_DELTA", "FINISH_REASON", "INPUT_TOKENS", "OUTPUT_TOKENS")
# Optional input -> (GenerationOptions field, Python type); absent inputs keep the engine defaults. Greedy only.
OPTION_INPUTS: dict[str, tuple[str, type]] = {
    "MAX_NEW_TOKENS": ("max_new_tokens", int),
    "NO_REPEAT_NGRAM_SIZE": ("no_repeat_ngram_size", int),
}
# How long one request's is_cancelled() answer is reused (each call is an IPC round trip to the server).
CANCEL_POLL_INTERVAL_S = 0.02


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        if not ModelSettings.from_args(args).decoupled:
            raise ValueError(f"{MODEL} streams several responses per request: its config must be decoupled")
        loaded = load_model(args, MODEL, OUTPUT_NAMES, pb_utils)
        self._engine, self._output_dtypes = loaded.engine, loaded.output_dtypes

    def execute(self, requests: list[Any]) -> None:
        streams: list[_Stream] = []
        texts: list[str] = []
        options: list[GenerationOptions] = []
        for request in requests:
            sender = request.get_response_sender()
            try:
                text, option = self._parse(request)
            except RequestError as error:
                _send_error(sender, str(error), pb_utils.TritonError.INVALID_ARG)
                continue
            streams.append(_Stream(request, sender, self._response))
            texts.append(text)
            options.append(option)
        if streams:
            self._run_batch(streams, texts, options)
        return None  # decoupled: every response went through the requests' senders

    def _parse(self, request: Any) -> tuple[str, GenerationOptions]:
        parsed = parse_request(lambda name: _input_array(request, name), OPTION_INPUTS, self._engine.check_options)
        if len(parsed.texts) != 1:
            raise RequestError(f"TEXT must have shape [1, 1]: one text per streamed request, got {len(parsed.texts)}")
        return parsed.texts[0], parsed.options[0]

    def _run_batch(self, streams: list[_Stream], texts: list[str], options: list[GenerationOptions]) -> None:
        try:
            self._engine.summarize(
                texts,
                options,
                is_cancelled=lambda row: streams[row].before_step(),
                on_tokens=lambda row, delta: streams[row].add(delta),
                on_finish=lambda row, generation: self._finish(streams[row], generation),
            )
        except Exception as error:  # the engine failed for the whole batch: end every open stream, keep serving
            pb_utils.Logger.log_error(f"{MODEL}: engine failure for {len(texts)} rows: {error!r}")
            for stream in streams:
                if not stream.finished:
                    _send_error(stream.sender, "internal error while summarizing", pb_utils.TritonError.INTERNAL)

    def _finish(self, stream: _Stream, generation: Generation) -> None:
        """Runs as soon as the engine ends this row, while the rest of the batch may still be decoding."""
        if generation.finish_reason == "cancelled":
            pb_utils.Logger.log_info(
                f"{MODEL}: request {stream.request_id!r} cancelled after {generation.output_tokens} tokens"
            )
        stream.finish(generation)

    def _response(self, delta: str, finish_reason: str = "", input_tokens: int = 0, output_tokens: int = 0) -> Any:
        values = {
            "TEXT_DELTA": delta.encode("utf-8"),
            "FINISH_REASON": finish_reason.encode("utf-8"),
            "INPUT_TOKENS": input_tokens,
            "OUTPUT_TOKENS": output_tokens,
        }
        tensors = [
            pb_utils.Tensor(name, np.array([[value]], dtype=self._output_dtypes[name]))
            for name, value in values.items()
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        pb_utils.Logger.log_info(f"{MODEL}: unloaded")


class _Stream:
    """One request's response stream.

    The newest delta is held back until the engine polls this row before its next decode step (the engine polls
    every row before every step): only then is it certain not to be the last, and it goes out as a non-final
    response. Whatever is held when the row ends rides on the final response, so no flags-only response is ever
    needed, at the cost of nothing but the remainder of the current step. A stream whose sends fail (its client
    went away) counts as cancelled, so its row stops decoding.
    """

    def __init__(self, request: Any, sender: Any, make_response: Any) -> None:
        self.sender = sender
        self.request_id = request.request_id()
        self._probe = CancellationProbe(request, CANCEL_POLL_INTERVAL_S)
        self._make_response = make_response
        self._pending = ""
        self._broken = False
        self.finished = False

    def add(self, delta: str) -> None:
        self._pending += delta

    def before_step(self) -> bool:
        """The engine's is_cancelled for this row: release the held delta unless the client has gone."""
        if self._broken or self._probe():
            return True
        if self._pending:
            delta, self._pending = self._pending, ""
            self._send(self._make_response(delta), 0)
        return self._broken

    def finish(self, generation: Generation) -> None:
        self.finished = True
        response = self._make_response(
            self._pending, generation.finish_reason, generation.input_tokens, generation.output_tokens
        )
        self._pending = ""
        self._send(response, pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _send(self, response: Any, flags: int) -> None:
        try:
            self.sender.send(response, flags=flags)
        except Exception as error:  # e.g. the client's stream is gone
            if not self._broken:
                pb_utils.Logger.log_warn(f"{MODEL}: request {self.request_id!r}: send failed: {error!r}")
            self._broken = True
            if flags & pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL:
                # Triton releases a decoupled request only on the final flag: send it alone as a last resort.
                with contextlib.suppress(Exception):
                    self.sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def _input_array(request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _send_error(sender: Any, message: str, code: int) -> None:
    response = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
    try:
        sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    except Exception as error:
        pb_utils.Logger.log_warn(f"{MODEL}: could not send an error response: {error!r}")
