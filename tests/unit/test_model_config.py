"""The Triton model config: rendered from one spec, parses as a ModelConfig, matches the tensor contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from reviewsum_build.model_repository import COMMITTED_CONFIG, main, render_config, write_repository
from tritonclient.grpc import model_config_pb2

DataType = model_config_pb2.DataType
CONTRACT_INPUTS = {
    "TEXT": (DataType.TYPE_STRING, False),
    "MAX_NEW_TOKENS": (DataType.TYPE_INT32, True),
    "NUM_BEAMS": (DataType.TYPE_INT32, True),
    "LENGTH_PENALTY": (DataType.TYPE_FP32, True),
    "NO_REPEAT_NGRAM_SIZE": (DataType.TYPE_INT32, True),
}
CONTRACT_OUTPUTS = {
    "SUMMARY": DataType.TYPE_STRING,
    "INPUT_TOKENS": DataType.TYPE_INT32,
    "OUTPUT_TOKENS": DataType.TYPE_INT32,
    "FINISH_REASON": DataType.TYPE_STRING,
}


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def parameters(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def test_committed_config_equals_rendered() -> None:
    assert COMMITTED_CONFIG.read_text(encoding="utf-8") == render_config()
    assert main(["check"]) == 0


def test_config_follows_the_tensor_contract() -> None:
    config = parse(COMMITTED_CONFIG.read_text(encoding="utf-8"))
    assert {t.name: (t.data_type, t.optional) for t in config.input} == CONTRACT_INPUTS
    assert {t.name: t.data_type for t in config.output} == CONTRACT_OUTPUTS
    assert all(list(t.dims) == [1] for t in [*config.input, *config.output])


def test_config_serving_policy() -> None:
    config = parse(render_config())
    assert (config.name, config.backend, config.max_batch_size) == ("summarizer", "python", 32)
    assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 10_000
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 64
    assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)]
    assert parameters(config) == {
        "artifacts_dir": "artifacts",
        "intra_op_threads": "0",
        "reviewsum_model_name": "reviewsum",
        "reviewsum_model_version": "1",
    }


def test_render_carries_arguments() -> None:
    config = parse(render_config("/srv/artifacts", intra_op_threads=2, model_name="rs-zh", model_version="2026.11"))
    assert parameters(config) == {
        "artifacts_dir": "/srv/artifacts",
        "intra_op_threads": "2",
        "reviewsum_model_name": "rs-zh",
        "reviewsum_model_version": "2026.11",
    }


def test_repository_references_artifacts_by_absolute_path(tiny_model_repository: Path, tiny_artifacts: Path) -> None:
    model_dir = tiny_model_repository / "summarizer"
    config = parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"))
    assert parameters(config)["artifacts_dir"] == str(tiny_artifacts.resolve())
    assert parameters(config)["reviewsum_model_name"] == "reviewsum-tiny"
    assert (model_dir / "1" / "model.py").read_bytes() == (COMMITTED_CONFIG.parent / "1" / "model.py").read_bytes()


@pytest.mark.parametrize("mode", ["copy", "symlink"])
def test_repository_with_artifacts_inside(tmp_path: Path, tiny_artifacts: Path, mode: str) -> None:
    repo = write_repository(tmp_path / "repo", tiny_artifacts, artifacts=mode)  # type: ignore[arg-type]
    config = parse((repo / "summarizer" / "config.pbtxt").read_text(encoding="utf-8"))
    assert parameters(config)["artifacts_dir"] == "artifacts"
    served = repo / "summarizer" / "1" / "artifacts"
    assert (served / "decoder_model_merged.onnx").is_file()
    assert served.is_symlink() == (mode == "symlink")
