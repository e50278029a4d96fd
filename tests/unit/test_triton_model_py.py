"""The model.py files' request handling, without a server: a stand-in for `triton_python_backend_utils`.

The stand-in implements only the calls the models make, with the semantics the Python backend documents
(a decoupled request's response sender refuses to send after the final flag); the integration tests run the
same files inside the real tritonserver.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from reviewsum_build.model_repository import MODEL_PY, STREAM_MODEL_PY
from reviewsum_engine import GenerationOptions, OnnxSummarizer
from tritonclient.grpc import model_config_pb2


@dataclass
class FakeTritonError:
    message: str
    code: int
    INTERNAL = 1
    INVALID_ARG = 3
    CANCELLED = 7


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self._array = name, array

    def as_numpy(self) -> np.ndarray:
        return self._array


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor]
    error: FakeTritonError | None = None

    def output(self, name: str) -> list[Any]:
        (tensor,) = [t for t in self.output_tensors if t.name == name]
        array = tensor.as_numpy()
        assert array.shape[1] == 1
        return [v.decode("utf-8") if isinstance(v, bytes) else int(v) for v in array[:, 0]]


FINAL = 1  # TRITONSERVER_RESPONSE_COMPLETE_FINAL


class FakeResponseSender:
    def __init__(self, fail_after_sends: int | None = None) -> None:
        self.sent: list[tuple[FakeResponse | None, int]] = []
        self._fail_after = fail_after_sends

    def send(self, response: FakeResponse | None = None, flags: int = 0) -> None:
        if self.sent and self.sent[-1][1] & FINAL:
            raise RuntimeError("Unable to send response. Response sender has been closed.")
        if self._fail_after is not None and len(self.sent) >= self._fail_after and response is not None:
            raise RuntimeError("the client's stream is gone")
        self.sent.append((response, flags))


class FakeRequest:
    def __init__(
        self, cancel_after_polls: int | None = None, sender: FakeResponseSender | None = None, **inputs: np.ndarray
    ) -> None:
        self.inputs = inputs
        self.polls = 0
        self._cancel_after = cancel_after_polls
        self.sender = sender or FakeResponseSender()

    def is_cancelled(self) -> bool:
        self.polls += 1
        return self._cancel_after is not None and self.polls > self._cancel_after

    def get_response_sender(self) -> FakeResponseSender:
        return self.sender

    def request_id(self) -> str:
        return f"request-{id(self)}"


def fake_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    numpy_types = {"TYPE_STRING": np.object_, "TYPE_INT32": np.int32, "TYPE_FP32": np.float32}
    module.TritonError = FakeTritonError  # type: ignore[attr-defined]
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    module.triton_string_to_numpy = numpy_types.__getitem__  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: (  # type: ignore[attr-defined]
        FakeTensor(name, request.inputs[name]) if name in request.inputs else None
    )
    module.get_output_config_by_name = lambda config, name: next(  # type: ignore[attr-defined]
        output for output in config["output"] if output["name"] == name
    )
    module.Logger = types.SimpleNamespace(log_info=print, log_warn=print, log_error=print)  # type: ignore[attr-defined]
    module.TRITONSERVER_RESPONSE_COMPLETE_FINAL = FINAL  # type: ignore[attr-defined]
    return module


def load_model(model_py: Path, model_dir: Path) -> Any:
    """Import `model_py` against the stand-in and initialize it the way Triton does for `model_dir`."""
    sys.modules["triton_python_backend_utils"] = fake_pb_utils()
    try:
        spec = importlib.util.spec_from_file_location(f"{model_dir.name}_model", model_py)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    finally:
        del sys.modules["triton_python_backend_utils"]
    module.CANCEL_POLL_INTERVAL_S = 0.0  # poll every step, so cancellation timing is deterministic
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    # Triton hands the model its config as JSON in the protobuf field names.
    config_json = json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True))
    instance = module.TritonPythonModel()
    instance.initialize({"model_config": config_json, "model_repository": str(model_dir), "model_version": "1"})
    return instance


@pytest.fixture(scope="module")
def model(tiny_model_repository: Path) -> Any:
    return load_model(MODEL_PY, tiny_model_repository / "summarizer")


@pytest.fixture(scope="module")
def stream_model(tiny_model_repository: Path) -> Any:
    return load_model(STREAM_MODEL_PY, tiny_model_repository / "summarizer_stream")


@pytest.fixture(scope="module")
def engine(tiny_artifacts: Path) -> OnnxSummarizer:
    return OnnxSummarizer(tiny_artifacts, intra_op_threads=1)


def text_input(*texts: str | bytes) -> np.ndarray:
    return np.array([[t.encode("utf-8") if isinstance(t, str) else t] for t in texts], dtype=np.object_)


def column(value: float, rows: int = 1, dtype: type = np.int32) -> np.ndarray:
    return np.full((rows, 1), value, dtype=dtype)


def as_generations(response: FakeResponse) -> list[tuple[str, int, int, str]]:
    names = ("SUMMARY", "INPUT_TOKENS", "OUTPUT_TOKENS", "FINISH_REASON")
    return list(zip(*(response.output(name) for name in names), strict=True))


def expected(engine: OnnxSummarizer, texts: list[str], options: GenerationOptions) -> list[tuple[str, int, int, str]]:
    return [
        (g.text, g.input_tokens, g.output_tokens, g.finish_reason)
        for g in engine.summarize(texts, [options] * len(texts))
    ]


def test_every_request_and_row_of_a_batch_is_served(model: Any, engine: OnnxSummarizer) -> None:
    beam = GenerationOptions(max_new_tokens=12, num_beams=3, length_penalty=2.0, no_repeat_ngram_size=2)
    requests = [
        FakeRequest(TEXT=text_input("味道不错，送得很快", "The room was clean.")),
        FakeRequest(
            TEXT=text_input("质量很好"),
            MAX_NEW_TOKENS=column(12),
            NUM_BEAMS=column(3),
            LENGTH_PENALTY=column(2.0, dtype=np.float32),
            NO_REPEAT_NGRAM_SIZE=column(2),
        ),
    ]
    responses = model.execute(requests)
    assert [r.error for r in responses] == [None, None]
    assert as_generations(responses[0]) == expected(
        engine, ["味道不错，送得很快", "The room was clean."], GenerationOptions()
    )
    assert as_generations(responses[1]) == expected(engine, ["质量很好"], beam)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"NUM_BEAMS": column(0)}, "NUM_BEAMS"),
        ({"MAX_NEW_TOKENS": column(100_000)}, "MAX_NEW_TOKENS"),
        ({"LENGTH_PENALTY": column(np.inf, dtype=np.float32)}, "LENGTH_PENALTY"),
        ({"NO_REPEAT_NGRAM_SIZE": column(-2)}, "NO_REPEAT_NGRAM_SIZE"),
        ({"MAX_NEW_TOKENS": column(8, rows=2)}, "MAX_NEW_TOKENS must have shape [1, 1]"),
        ({"TEXT": text_input("   ")}, "TEXT must not be empty"),
        ({"TEXT": text_input(b"\xff\xfe")}, "not valid UTF-8"),
    ],
)
def test_a_bad_request_gets_its_own_error(
    model: Any, engine: OnnxSummarizer, inputs: dict[str, Any], message: str
) -> None:
    bad = FakeRequest(**{"TEXT": text_input("好评"), **inputs})
    good = FakeRequest(TEXT=text_input("送得很快"), MAX_NEW_TOKENS=column(6))
    bad_response, good_response = model.execute([bad, good])
    assert bad_response.error is not None
    assert bad_response.error.code == FakeTritonError.INVALID_ARG
    assert message in bad_response.error.message
    assert good_response.error is None
    assert as_generations(good_response) == expected(engine, ["送得很快"], GenerationOptions(max_new_tokens=6))


def test_a_cancelled_request_gets_cancelled_and_others_finish(model: Any, engine: OnnxSummarizer) -> None:
    cancelled = FakeRequest(cancel_after_polls=3, TEXT=text_input("The room was clean."), MAX_NEW_TOKENS=column(40))
    other = FakeRequest(TEXT=text_input("送得很快"), MAX_NEW_TOKENS=column(20))
    cancelled_response, other_response = model.execute([cancelled, other])
    assert cancelled_response.error is not None
    assert cancelled_response.error.code == FakeTritonError.CANCELLED
    assert cancelled.polls == 4
    assert as_generations(other_response) == expected(engine, ["送得很快"], GenerationOptions(max_new_tokens=20))


def test_engine_failure_fails_the_batch_not_the_model(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(model._engine, "summarize", broken)
    responses = model.execute([FakeRequest(TEXT=text_input("好")), FakeRequest(TEXT=text_input("坏"))])
    assert [r.error.code for r in responses] == [FakeTritonError.INTERNAL] * 2
    assert all("onnxruntime" not in r.error.message for r in responses)


# ---- summarizer_stream (decoupled) ----


@dataclass
class Stream:
    """What one request's sender received: the deltas, the final response's fields, and the flags."""

    deltas: list[str]
    flags: list[int]
    finish_reason: str
    input_tokens: int
    output_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def received(sender: FakeResponseSender) -> Stream:
    """Check the framing every stream must have, and collect it."""
    assert sender.sent, "no response was sent"
    responses = [response for response, _ in sender.sent]
    flags = [flag for _, flag in sender.sent]
    assert flags == [0] * (len(flags) - 1) + [FINAL]  # exactly one final response, and it is the last
    assert all(r is not None and r.error is None for r in responses)
    rows = [
        (
            r.output("TEXT_DELTA")[0],
            r.output("FINISH_REASON")[0],
            r.output("INPUT_TOKENS")[0],
            r.output("OUTPUT_TOKENS")[0],
        )
        for r in responses  # type: ignore[union-attr]
    ]
    for delta, reason, input_tokens, output_tokens in rows[:-1]:
        assert delta != "" and (reason, input_tokens, output_tokens) == ("", 0, 0)
    _, reason, input_tokens, output_tokens = rows[-1]
    return Stream([row[0] for row in rows], flags, reason, input_tokens, output_tokens)


def one_shot(engine: OnnxSummarizer, text: str, options: GenerationOptions) -> tuple[str, str, int, int]:
    (generation,) = engine.summarize([text], [options])
    return generation.text, generation.finish_reason, generation.input_tokens, generation.output_tokens


def streamed(stream: Stream) -> tuple[str, str, int, int]:
    return stream.text, stream.finish_reason, stream.input_tokens, stream.output_tokens


STREAM_CASES = [
    ("这家店的外卖送得很快，味道也不错，下次还会再点。", GenerationOptions(max_new_tokens=40)),
    ("The room was clean but the street outside was noisy at night.", GenerationOptions(no_repeat_ngram_size=0)),
    ("Great value 😀 for the price.", GenerationOptions(max_new_tokens=12, no_repeat_ngram_size=2)),
    ("质量不错", GenerationOptions()),
]


def stream_request(text: str | bytes, options: GenerationOptions | None = None, **kwargs: Any) -> FakeRequest:
    inputs: dict[str, np.ndarray] = {"TEXT": text_input(text)}
    if options is not None:
        inputs |= {
            "MAX_NEW_TOKENS": column(options.max_new_tokens),
            "NO_REPEAT_NGRAM_SIZE": column(options.no_repeat_ngram_size),
        }
    return FakeRequest(**kwargs, **inputs)


def test_stream_deltas_concatenate_to_the_one_shot_greedy_summary(
    stream_model: Any, engine: OnnxSummarizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    summarize = stream_model._engine.summarize

    def counting(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append(len(texts))
        return summarize(texts, *args, **kwargs)

    monkeypatch.setattr(stream_model._engine, "summarize", counting)
    requests = [stream_request(text, options) for text, options in STREAM_CASES]
    requests.append(stream_request("送得很快"))  # no optional inputs: the engine defaults
    assert stream_model.execute(requests) is None
    assert calls == [len(requests)]  # the whole batch decoded together
    streams = [received(request.sender) for request in requests]
    expected = [one_shot(engine, text, options) for text, options in STREAM_CASES]
    expected.append(one_shot(engine, "送得很快", GenerationOptions()))
    assert [streamed(stream) for stream in streams] == expected
    # Text is streamed as it is generated, not once at the end.
    assert max(len(stream.deltas) for stream in streams) > 3


def test_a_stream_ending_at_its_length_limit_carries_its_last_delta_on_the_final_response(
    stream_model: Any, engine: OnnxSummarizer
) -> None:
    text, options = "The room was clean but the street outside was noisy at night.", GenerationOptions(max_new_tokens=6)
    request = stream_request(text, options)
    stream_model.execute([request])
    stream = received(request.sender)
    assert streamed(stream) == one_shot(engine, text, options)
    assert stream.finish_reason == "length"
    assert stream.deltas[-1] != ""  # the last token's text is not followed by an empty final response


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"MAX_NEW_TOKENS": column(100_000)}, "MAX_NEW_TOKENS"),
        ({"NO_REPEAT_NGRAM_SIZE": column(-2)}, "NO_REPEAT_NGRAM_SIZE"),
        ({"TEXT": text_input("   ")}, "TEXT must not be empty"),
        ({"TEXT": text_input("好评", "差评")}, "one text per streamed request"),
    ],
)
def test_a_bad_stream_request_gets_one_final_error(
    stream_model: Any, engine: OnnxSummarizer, inputs: dict[str, Any], message: str
) -> None:
    bad = FakeRequest(**{"TEXT": text_input("好评"), **inputs})
    good = stream_request("送得很快", GenerationOptions(max_new_tokens=6))
    stream_model.execute([bad, good])
    ((response, flags),) = bad.sender.sent
    assert flags == FINAL
    assert response is not None and response.error is not None
    assert response.error.code == FakeTritonError.INVALID_ARG
    assert message in response.error.message
    assert streamed(received(good.sender)) == one_shot(engine, "送得很快", GenerationOptions(max_new_tokens=6))


def test_a_cancelled_stream_stops_decoding_and_others_finish(stream_model: Any, engine: OnnxSummarizer) -> None:
    text, long = "The room was clean but the street outside was noisy at night.", GenerationOptions(max_new_tokens=40)
    cancelled = stream_request(text, long, cancel_after_polls=3)
    other = stream_request("送得很快", GenerationOptions(max_new_tokens=20))
    stream_model.execute([cancelled, other])
    assert cancelled.polls == 4  # polled before each step; the fourth step never ran
    stream = received(cancelled.sender)
    assert (stream.finish_reason, stream.output_tokens) == ("cancelled", 3)
    full_text = one_shot(engine, text, long)[0]
    assert full_text.startswith(stream.text) and len(stream.text) < len(full_text)
    assert streamed(received(other.sender)) == one_shot(engine, "送得很快", GenerationOptions(max_new_tokens=20))


def test_a_stream_whose_sends_fail_stops_decoding(
    stream_model: Any, engine: OnnxSummarizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    generations: list[Any] = []
    summarize = stream_model._engine.summarize
    monkeypatch.setattr(
        stream_model._engine,
        "summarize",
        lambda *args, **kwargs: generations.extend(summarize(*args, **kwargs)) or generations,
    )
    text, long = "The room was clean but the street outside was noisy at night.", GenerationOptions(max_new_tokens=40)
    gone = stream_request(text, long, sender=FakeResponseSender(fail_after_sends=1))
    other = stream_request("送得很快", GenerationOptions(max_new_tokens=20))
    stream_model.execute([gone, other])
    assert generations[0].finish_reason == "cancelled"  # decoding stopped at the failed send
    assert generations[0].output_tokens < one_shot(engine, text, long)[3]
    assert [flags for _, flags in gone.sender.sent] == [0, FINAL]  # one delta, then the final flag alone
    assert gone.sender.sent[-1][0] is None
    assert streamed(received(other.sender)) == one_shot(engine, "送得很快", GenerationOptions(max_new_tokens=20))


def test_engine_failure_ends_every_stream_with_an_error(stream_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("onnxruntime exploded")

    monkeypatch.setattr(stream_model._engine, "summarize", broken)
    requests = [stream_request("好"), stream_request("坏")]
    assert stream_model.execute(requests) is None
    for request in requests:
        ((response, flags),) = request.sender.sent
        assert flags == FINAL
        assert response.error.code == FakeTritonError.INTERNAL
        assert "onnxruntime" not in response.error.message
