"""model.py's request handling, without a server: a stand-in for `triton_python_backend_utils`.

The stand-in implements only the calls model.py makes, with the semantics the Python backend documents;
the integration test runs the same file inside the real tritonserver.
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
from reviewsum_build.model_repository import MODEL_PY
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


class FakeRequest:
    def __init__(self, cancel_after_polls: int | None = None, **inputs: np.ndarray) -> None:
        self.inputs = inputs
        self.polls = 0
        self._cancel_after = cancel_after_polls

    def is_cancelled(self) -> bool:
        self.polls += 1
        return self._cancel_after is not None and self.polls > self._cancel_after


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
    return module


@pytest.fixture(scope="module")
def model(tiny_model_repository: Path) -> Any:
    sys.modules["triton_python_backend_utils"] = fake_pb_utils()
    try:
        spec = importlib.util.spec_from_file_location("summarizer_model", MODEL_PY)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
        spec.loader.exec_module(module)
    finally:
        del sys.modules["triton_python_backend_utils"]
    module.CANCEL_POLL_INTERVAL_S = 0.0  # poll every step, so cancellation timing is deterministic
    model_dir = tiny_model_repository / "summarizer"
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    # Triton hands the model its config as JSON in the protobuf field names.
    config_json = json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True))
    instance = module.TritonPythonModel()
    instance.initialize({"model_config": config_json, "model_repository": str(model_dir), "model_version": "1"})
    return instance


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
