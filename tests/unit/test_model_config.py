"""The Triton model configs: rendered from one spec, parse as ModelConfigs, match the tensor contracts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format, text_format
from reviewsum_build import model_repository
from reviewsum_build.model_repository import (
    COMMITTED_CONFIG,
    COMMITTED_STREAM_CONFIG,
    main,
    render_config,
    render_stream_config,
    write_repository,
)
from reviewsum_engine.triton_support import ModelSettings
from tritonclient.grpc import model_config_pb2

DataType = model_config_pb2.DataType
# The checkpoint the committed artifacts hold; the committed configs must name it.
SHIPPED = json.loads((COMMITTED_CONFIG.parent / "1" / "artifacts" / "reviewsum.json").read_text(encoding="utf-8"))
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
STREAM_CONTRACT_INPUTS = {
    "TEXT": (DataType.TYPE_STRING, False),
    "MAX_NEW_TOKENS": (DataType.TYPE_INT32, True),
    "NO_REPEAT_NGRAM_SIZE": (DataType.TYPE_INT32, True),
}
STREAM_CONTRACT_OUTPUTS = {
    "TEXT_DELTA": DataType.TYPE_STRING,
    "FINISH_REASON": DataType.TYPE_STRING,
    "INPUT_TOKENS": DataType.TYPE_INT32,
    "OUTPUT_TOKENS": DataType.TYPE_INT32,
}


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def parameters(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def served_artifacts(model_dir: Path) -> Path:
    """The artifacts directory the model in `model_dir` loads, resolved the way its model.py resolves it."""
    config = parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"))
    config_json = json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True))
    args = {"model_config": config_json, "model_repository": str(model_dir), "model_version": "1"}
    return ModelSettings.from_args(args).artifacts_dir.resolve()


def test_committed_config_equals_rendered() -> None:
    assert COMMITTED_CONFIG.read_text(encoding="utf-8") == render_config(model_version=SHIPPED["model_version"])
    assert COMMITTED_STREAM_CONFIG.read_text(encoding="utf-8") == render_stream_config(
        model_version=SHIPPED["model_version"]
    )
    assert main(["check"]) == 0


def test_check_fails_when_either_committed_config_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "config.pbtxt"
    stale.write_text(render_stream_config().replace("decoupled: true", "decoupled: false"), encoding="utf-8")
    monkeypatch.setattr(model_repository, "COMMITTED_STREAM_CONFIG", stale)
    assert main(["check"]) == 1
    monkeypatch.setattr(model_repository, "COMMITTED_STREAM_CONFIG", tmp_path / "missing.pbtxt")
    assert main(["check"]) == 1


def test_config_follows_the_tensor_contract() -> None:
    config = parse(COMMITTED_CONFIG.read_text(encoding="utf-8"))
    assert {t.name: (t.data_type, t.optional) for t in config.input} == CONTRACT_INPUTS
    assert {t.name: t.data_type for t in config.output} == CONTRACT_OUTPUTS
    assert all(list(t.dims) == [1] for t in [*config.input, *config.output])


def test_stream_config_follows_the_tensor_contract() -> None:
    config = parse(COMMITTED_STREAM_CONFIG.read_text(encoding="utf-8"))
    assert {t.name: (t.data_type, t.optional) for t in config.input} == STREAM_CONTRACT_INPUTS
    assert {t.name: t.data_type for t in config.output} == STREAM_CONTRACT_OUTPUTS
    assert all(list(t.dims) == [1] for t in [*config.input, *config.output])


def test_config_serving_policy() -> None:
    config = parse(render_config())
    assert (config.name, config.backend, config.max_batch_size) == ("summarizer", "python", 32)
    assert not config.model_transaction_policy.decoupled
    assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 10_000
    # No Triton queue limit: it stalled requests at low load; the gateway's admission control sheds instead.
    assert not config.dynamic_batching.HasField("default_queue_policy")
    assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)]
    assert parameters(config) == {
        "artifacts_dir": "artifacts",
        "intra_op_threads": "0",
        "ort_allow_spinning": "0",  # idle ORT threads sleep: spinning took the cores from the request path
        "reviewsum_model_name": "reviewsum",
        "reviewsum_model_version": "1",
    }


def test_stream_config_shares_the_summarizer_policy_and_is_decoupled() -> None:
    summarizer, stream = parse(render_config()), parse(render_stream_config())
    assert (stream.name, stream.backend, stream.max_batch_size) == ("summarizer_stream", "python", 32)
    assert stream.model_transaction_policy.decoupled
    assert 0 < stream.dynamic_batching.max_queue_delay_microseconds <= 10_000
    assert stream.dynamic_batching == summarizer.dynamic_batching
    assert stream.instance_group == summarizer.instance_group
    assert parameters(stream) == {**parameters(summarizer), "artifacts_dir": "../../summarizer/1/artifacts"}


def test_committed_stream_model_reads_the_summarizers_artifacts() -> None:
    assert served_artifacts(COMMITTED_STREAM_CONFIG.parent) == served_artifacts(COMMITTED_CONFIG.parent)
    assert served_artifacts(COMMITTED_CONFIG.parent) == (COMMITTED_CONFIG.parent / "1" / "artifacts").resolve()


def test_render_carries_arguments() -> None:
    config = parse(render_config("/srv/artifacts", intra_op_threads=2, model_name="rs-zh", model_version="2026.11"))
    assert parameters(config) == {
        "artifacts_dir": "/srv/artifacts",
        "intra_op_threads": "2",
        "ort_allow_spinning": "0",
        "reviewsum_model_name": "rs-zh",
        "reviewsum_model_version": "2026.11",
    }


def test_repository_references_artifacts_by_absolute_path(tiny_model_repository: Path, tiny_artifacts: Path) -> None:
    model_dir = tiny_model_repository / "summarizer"
    config = parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"))
    assert parameters(config)["artifacts_dir"] == str(tiny_artifacts.resolve())
    assert parameters(config)["reviewsum_model_name"] == "reviewsum-tiny"
    assert (model_dir / "1" / "model.py").read_bytes() == (COMMITTED_CONFIG.parent / "1" / "model.py").read_bytes()
    stream_dir = tiny_model_repository / "summarizer_stream"
    stream_config = parse((stream_dir / "config.pbtxt").read_text(encoding="utf-8"))
    assert parameters(stream_config) == parameters(config)
    assert stream_config.model_transaction_policy.decoupled
    stream_py = stream_dir / "1" / "model.py"
    assert stream_py.read_bytes() == (COMMITTED_STREAM_CONFIG.parent / "1" / "model.py").read_bytes()


@pytest.mark.parametrize("mode", ["copy", "symlink"])
def test_repository_with_artifacts_inside(tmp_path: Path, tiny_artifacts: Path, mode: str) -> None:
    repo = write_repository(tmp_path / "repo", tiny_artifacts, artifacts=mode)  # type: ignore[arg-type]
    config = parse((repo / "summarizer" / "config.pbtxt").read_text(encoding="utf-8"))
    assert parameters(config)["artifacts_dir"] == "artifacts"
    served = repo / "summarizer" / "1" / "artifacts"
    assert (served / "decoder_model_merged.onnx").is_file()
    assert served.is_symlink() == (mode == "symlink")
    stream_config = parse((repo / "summarizer_stream" / "config.pbtxt").read_text(encoding="utf-8"))
    assert parameters(stream_config)["artifacts_dir"] == "../../summarizer/1/artifacts"
    assert served_artifacts(repo / "summarizer_stream") == served_artifacts(repo / "summarizer") == served.resolve()
    assert not (repo / "summarizer_stream" / "1" / "artifacts").exists()  # one copy, shared


def test_repository_without_artifacts_has_both_models(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", None)
    assert parse((repo / "summarizer" / "config.pbtxt").read_text(encoding="utf-8")) == parse(render_config())
    assert parse((repo / "summarizer_stream" / "config.pbtxt").read_text(encoding="utf-8")) == parse(
        render_stream_config()
    )
    assert served_artifacts(repo / "summarizer_stream") == (repo / "summarizer" / "1" / "artifacts").resolve()
