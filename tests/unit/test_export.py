"""The ONNX export writes exactly the artifacts the engine reads, optionally int8-quantized."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from reviewsum_build.export import export_onnx
from reviewsum_engine import GenerationOptions, OnnxSummarizer

ARTIFACT_FILES = {
    "encoder_model.onnx",
    "decoder_model_merged.onnx",
    "tokenizer.json",
    "tokenizer_config.json",
    "config.json",
    "generation_config.json",
    "reviewsum.json",
}


def test_artifacts_layout_and_metadata(tiny_artifacts: Path, tiny_checkpoint: Path) -> None:
    assert {path.name for path in tiny_artifacts.iterdir()} == ARTIFACT_FILES
    metadata = json.loads((tiny_artifacts / "reviewsum.json").read_text(encoding="utf-8"))
    assert metadata["model_name"] == "reviewsum-tiny"
    assert metadata["max_input_tokens"] == 256
    assert metadata["languages"] == ["zh", "en"]
    assert metadata["source_checkpoint"] == str(tiny_checkpoint.resolve())
    assert metadata["quantization"] is None


def test_merged_decoder_switches_on_use_cache_branch(tiny_artifacts: Path) -> None:
    graph = onnx.load(str(tiny_artifacts / "decoder_model_merged.onnx"), load_external_data=False).graph
    assert "use_cache_branch" in {node.name for node in graph.input}
    assert any(node.op_type == "If" for node in graph.node)


def test_int8_export_is_smaller_and_still_summarizes(
    tiny_checkpoint: Path, tiny_artifacts: Path, tmp_path: Path
) -> None:
    out = export_onnx(tiny_checkpoint, tmp_path / "int8", quantize="int8", model_name="reviewsum-tiny", validate=False)
    for name in ("encoder_model.onnx", "decoder_model_merged.onnx"):
        assert (out / name).stat().st_size < (tiny_artifacts / name).stat().st_size
    assert json.loads((out / "reviewsum.json").read_text(encoding="utf-8"))["quantization"] == "int8"
    (generation,) = OnnxSummarizer(out, intra_op_threads=1).summarize(
        ["味道不错"], [GenerationOptions(max_new_tokens=8)]
    )
    assert generation.output_tokens > 0


def test_export_rejects_checkpoints_that_break_token_conventions(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "checkpoint"
    broken.mkdir()
    for path in tiny_checkpoint.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    config = json.loads((broken / "config.json").read_text(encoding="utf-8"))
    config["decoder_start_token_id"] = 2
    (broken / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        export_onnx(broken, tmp_path / "out")
    with pytest.raises(ValueError, match="quantization"):
        export_onnx(tiny_checkpoint, tmp_path / "out", quantize="fp4")
