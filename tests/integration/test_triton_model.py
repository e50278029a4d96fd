"""The real tritonserver serving the `summarizer` Python model (tiny model), called directly over gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from reviewsum_engine import Generation, GenerationOptions, OnnxSummarizer
from tritonclient.utils import InferenceServerException

from tests.integration.services import running_triton

pytestmark = pytest.mark.integration

TEXTS = [
    "这家店的外卖送得很快，味道也不错，下次还会再点。",
    "The room was clean but the street outside was noisy at night.",
    "质量不错",
    "Great value 😀 for the price, I will order again.",
    "包装很好，菜品新鲜，分量足。The delivery was fast!",
    "屏幕有划痕，客服处理很慢，不推荐购买。",
]
OPTIONS = [
    GenerationOptions(max_new_tokens=24),
    GenerationOptions(max_new_tokens=16, num_beams=3, length_penalty=2.0),
    GenerationOptions(max_new_tokens=20, no_repeat_ngram_size=0),
    GenerationOptions(max_new_tokens=12, num_beams=2, no_repeat_ngram_size=2),
    GenerationOptions(max_new_tokens=30, no_repeat_ngram_size=1),
    GenerationOptions(max_new_tokens=8),
]


@pytest.fixture(scope="module")
def triton_url(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_triton(tiny_model_repository, tmp_path_factory.mktemp("triton")) as (triton, _log):
        yield triton.grpc_url


@pytest.fixture(scope="module")
def engine(tiny_artifacts: Path) -> OnnxSummarizer:
    return OnnxSummarizer(tiny_artifacts, intra_op_threads=1)


def build_inputs(texts: list[str], options: GenerationOptions | None) -> list[triton_grpc.InferInput]:
    rows = len(texts)
    text = triton_grpc.InferInput("TEXT", [rows, 1], "BYTES")
    text.set_data_from_numpy(np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_))
    inputs = [text]
    if options is not None:
        for name, datatype, value in (
            ("MAX_NEW_TOKENS", "INT32", options.max_new_tokens),
            ("NUM_BEAMS", "INT32", options.num_beams),
            ("LENGTH_PENALTY", "FP32", options.length_penalty),
            ("NO_REPEAT_NGRAM_SIZE", "INT32", options.no_repeat_ngram_size),
        ):
            tensor = triton_grpc.InferInput(name, [rows, 1], datatype)
            dtype = np.float32 if datatype == "FP32" else np.int32
            tensor.set_data_from_numpy(np.full((rows, 1), value, dtype=dtype))
            inputs.append(tensor)
    return inputs


def infer(url: str, texts: list[str], options: GenerationOptions | None) -> list[Generation]:
    with triton_grpc.InferenceServerClient(url) as client:
        result = client.infer("summarizer", build_inputs(texts, options), client_timeout=60.0)
    columns = [result.as_numpy(name)[:, 0] for name in ("SUMMARY", "INPUT_TOKENS", "OUTPUT_TOKENS", "FINISH_REASON")]
    return [
        Generation(summary.decode("utf-8"), int(inputs), int(outputs), reason.decode("utf-8"))
        for summary, inputs, outputs, reason in zip(*columns, strict=True)
    ]


def test_concurrent_requests_match_the_engine_one_by_one(triton_url: str, engine: OnnxSummarizer) -> None:
    expected = [engine.summarize([text], [option])[0] for text, option in zip(TEXTS, OPTIONS, strict=True)]
    with ThreadPoolExecutor(max_workers=len(TEXTS)) as pool:
        served = list(pool.map(lambda pair: infer(triton_url, [pair[0]], pair[1])[0], zip(TEXTS, OPTIONS, strict=True)))
    assert served == expected


def test_a_request_with_several_rows_and_default_options(triton_url: str, engine: OnnxSummarizer) -> None:
    served = infer(triton_url, TEXTS[:3], None)
    assert served == engine.summarize(TEXTS[:3], [GenerationOptions()] * 3)


def test_a_bad_request_fails_alone(triton_url: str, engine: OnnxSummarizer) -> None:
    bad = GenerationOptions(num_beams=0)

    def call(index: int) -> list[Generation] | InferenceServerException:
        try:
            return infer(triton_url, [TEXTS[index]], bad if index == 0 else OPTIONS[index])
        except InferenceServerException as error:
            return error

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(call, range(4)))
    error = outcomes[0]
    assert isinstance(error, InferenceServerException)
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "NUM_BEAMS" in error.message()
    assert outcomes[1:] == [engine.summarize([TEXTS[i]], [OPTIONS[i]]) for i in range(1, 4)]


def test_empty_text_is_invalid(triton_url: str) -> None:
    with pytest.raises(InferenceServerException) as raised:
        infer(triton_url, ["   "], None)
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_config_advertises_the_served_checkpoint(triton_url: str) -> None:
    with triton_grpc.InferenceServerClient(triton_url) as client:
        config = client.get_model_config("summarizer", as_json=True)["config"]
        metadata = client.get_model_metadata("summarizer", as_json=True)
    assert config["parameters"]["reviewsum_model_name"]["string_value"] == "reviewsum-tiny"
    assert config["parameters"]["reviewsum_model_version"]["string_value"] == "1"
    assert {tensor["name"] for tensor in metadata["outputs"]} == {
        "SUMMARY",
        "INPUT_TOKENS",
        "OUTPUT_TOKENS",
        "FINISH_REASON",
    }
