"""The TensorRT path, everything that runs without a GPU: the graphs TensorRT would parse, profiles, metadata, the
CLI's error, the GPU repository, and generation through the TensorRT backend's own state handling with its
engines stood in for by ONNX Runtime running the very graphs the engines are built from.

GPU-only tests at the end are skipped here; scripts/gpu_check.py and these run on a GPU host.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from onnx import TensorProto
from reviewsum_build import model_repository
from reviewsum_build.model_repository import (
    COMMITTED_CONFIG,
    COMMITTED_STREAM_CONFIG,
    GPU_MODEL_PY,
    MODEL_PY,
    STREAM_MODEL_PY,
    write_gpu_repository,
)
from reviewsum_build.tensorrt_engine import (
    FP32_CATEGORIES,
    DimRange,
    LoweringReport,
    ServiceLimits,
    bfloat16_bits,
    default_limits,
    engine_metadata,
    engine_profiles,
    fp32_category,
    lower_precision,
    main,
    onnx_input_dims,
    profile_shapes,
    specialize_merged_decoder,
    write_engine_metadata,
)
from reviewsum_engine import GenerationOptions, OnnxSummarizer, OrtSeq2SeqBackend, Summarizer, load_artifacts
from reviewsum_engine import summarizer as summarizer_module
from reviewsum_engine.tensorrt_backend import (
    ENGINE_FILES,
    ProfileError,
    TensorRTSeq2SeqBackend,
    decoder_geometry,
    decoder_output_shapes,
    encoder_output_shapes,
    engine_set_problems,
    has_cuda,
    iter_engine_paths,
    read_engine_metadata,
    select_profile,
    sha256_file,
    source_hashes,
    static_shape,
    summarizer_factory,
    torch_dtype_name,
)
from tritonclient.grpc import model_config_pb2

from tests.unit.test_triton_model_py import FakeRequest, as_generations, column, expected, load_model, text_input

torch = pytest.importorskip("torch")

GPU_REASON = "needs an NVIDIA GPU with TensorRT: run scripts/gpu_check.py on a GPU host"
REPO_ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "这家店的外卖送得很快，味道也不错，下次还会再点。",
    "The room was clean but the street outside was noisy at night.",
    "质量不错",
    "包装很好，菜品新鲜，分量足。The delivery was fast!",
    "屏幕有划痕，客服处理很慢，不推荐购买。",
    "Battery life is excellent and the screen is bright.",
]
OPTIONS = [
    GenerationOptions(max_new_tokens=24),
    GenerationOptions(max_new_tokens=16, no_repeat_ngram_size=0),
    GenerationOptions(max_new_tokens=20, num_beams=3, length_penalty=2.0),
    GenerationOptions(max_new_tokens=16, num_beams=4, no_repeat_ngram_size=2),
    GenerationOptions(max_new_tokens=32, no_repeat_ngram_size=2),
    GenerationOptions(max_new_tokens=12, num_beams=2, length_penalty=0.5),
]


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


# ---------------------------------------------------------------- graphs: split and precision


@pytest.fixture(scope="module")
def graphs(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The graphs the engines are built from: fp32 split decoders, and all three lowered to fp16 and bf16."""
    out = tmp_path_factory.mktemp("graphs")
    merged = onnx.load(str(tiny_artifacts / "decoder_model_merged.onnx"))
    models = {
        "encoder": onnx.load(str(tiny_artifacts / "encoder_model.onnx")),
        "decoder_init": specialize_merged_decoder(merged, use_cache=False),
        "decoder_step": specialize_merged_decoder(merged, use_cache=True),
    }
    paths = {}
    for kind, model in models.items():
        paths[f"{kind}.fp32"] = out / f"{kind}.fp32.onnx"
        onnx.save(model, str(paths[f"{kind}.fp32"]))
        for precision in ("fp16", "bf16"):
            lowered, _ = lower_precision(model, precision)
            paths[f"{kind}.{precision}"] = out / f"{kind}.{precision}.onnx"
            onnx.save(lowered, str(paths[f"{kind}.{precision}"]))
    return paths


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def encoded_batch(tiny_artifacts: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 500, size=(3, 9)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    (hidden,) = session(tiny_artifacts / "encoder_model.onnx").run(None, {"input_ids": ids, "attention_mask": mask})
    return {"encoder_hidden_states": hidden, "encoder_attention_mask": mask}


def test_split_decoders_compute_exactly_what_the_merged_decoder_computes(
    tiny_artifacts: Path, graphs: dict[str, Path]
) -> None:
    merged = session(tiny_artifacts / "decoder_model_merged.onnx")
    batch = encoded_batch(tiny_artifacts)
    empty = np.zeros((3, 2, 0, 16), dtype=np.float32)
    past = [i.name for i in merged.get_inputs() if i.name.startswith("past_key_values")]
    first = {**batch, "input_ids": np.zeros((3, 1), np.int64), **dict.fromkeys(past, empty)}
    reference = merged.run(None, {**first, "use_cache_branch": np.array([False])})
    init = session(graphs["decoder_init.fp32"])
    outputs = init.run(None, {i.name: first[i.name] for i in init.get_inputs()})
    assert [o.name for o in init.get_outputs()] == [o.name for o in merged.get_outputs()]
    for got, want in zip(outputs, reference, strict=True):
        np.testing.assert_array_equal(got, want)

    past_names = [o.name.replace("present", "past_key_values") for o in merged.get_outputs()[1:]]
    cache = dict(zip(past_names, reference[1:], strict=True))
    second = {**batch, "input_ids": np.full((3, 1), 7, np.int64), **cache}
    reference = merged.run(None, {**second, "use_cache_branch": np.array([True])})
    step = session(graphs["decoder_step.fp32"])
    outputs = step.run(None, {i.name: second[i.name] for i in step.get_inputs()})
    # The step graph outputs logits and the grown self-attention cache only.
    assert [o.name for o in step.get_outputs()] == ["logits", "present.0.decoder.key", "present.0.decoder.value"]
    for got, want in zip(outputs, reference[:3], strict=True):
        np.testing.assert_array_equal(got, want)


def test_split_graphs_have_no_if_and_drop_inputs_they_do_not_read(graphs: dict[str, Path]) -> None:
    init, step = (onnx.load(str(graphs[f"decoder_{k}.fp32"])) for k in ("init", "step"))
    for model in (init, step):
        onnx.checker.check_model(model, full_check=True)
        assert "If" not in {node.op_type for node in model.graph.node}
    assert set(onnx_input_dims(init)) == {"input_ids", "encoder_hidden_states", "encoder_attention_mask"}
    # The cache branch reads the cross-attention cache, not the encoder output.
    assert "encoder_hidden_states" not in onnx_input_dims(step)
    assert "use_cache_branch" not in onnx_input_dims(step)


def test_specializing_a_graph_without_the_merged_if_is_refused(tiny_artifacts: Path) -> None:
    with pytest.raises(ValueError, match="merged decoder"):
        specialize_merged_decoder(onnx.load(str(tiny_artifacts / "encoder_model.onnx")), use_cache=False)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_lowered_graphs_keep_norms_softmax_and_logits_in_fp32(graphs: dict[str, Path], precision: str) -> None:
    low = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}[precision]
    model = onnx.load(str(graphs[f"decoder_init.{precision}"]))
    onnx.checker.check_model(model, full_check=True)  # every Cast in place: strict type inference passes
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    kept = [
        n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax") or n.name.startswith("/lm_head/")
    ]
    assert len(kept) == 4 + 2 + 1  # 4 layer norms, self- and cross-attention softmax, lm_head MatMul
    for node in kept:
        assert all(types[name] == TensorProto.FLOAT for name in node.input if name), node.name
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and not n.name.startswith("/lm_head/")]
    assert matmuls and all(types[n.output[0]] == low for n in matmuls)
    outputs = {v.name: v.type.tensor_type.elem_type for v in model.graph.output}
    assert outputs.pop("logits") == TensorProto.FLOAT
    assert set(outputs.values()) == {low}  # the KV cache in half the memory
    assert {v.name: v.type.tensor_type.elem_type for v in model.graph.input}["encoder_hidden_states"] == low


def test_lowering_reports_what_it_kept(graphs: dict[str, Path]) -> None:
    model = onnx.load(str(graphs["decoder_step.fp32"]))
    _, report = lower_precision(model, "fp16")
    summary = report.summary()
    assert summary["fp32_nodes"] == {"layernorm": 4, "logits": 2, "softmax": 2}
    assert set(summary["fp32_reasons"]) == set(FP32_CATEGORIES)
    _, nothing_kept = lower_precision(model, "fp16", keep=())
    assert nothing_kept.fp32_nodes == {}
    same, fp32 = lower_precision(model, "fp32")
    assert same is model and fp32.casts_added == 0


def test_fp32_rules_by_op_and_scope() -> None:
    assert (
        fp32_category("LayerNormalization", "/model/encoder/layers.0/final_layer_norm/LayerNormalization", [])
        == "layernorm"
    )
    assert fp32_category("ReduceMean", "/model/encoder/layers.0/self_attn_layer_norm/ReduceMean", []) == "layernorm"
    assert fp32_category("ReduceMean", "/model/encoder/layers.0/fc1/ReduceMean", []) is None
    assert fp32_category("Softmax", "/model/decoder/layers.0/self_attn/Softmax", []) == "softmax"
    assert fp32_category("MatMul", "/lm_head/MatMul", []) == "logits"
    assert fp32_category("Add", "/Add", ["logits"]) == "logits"
    assert fp32_category("MatMul", "/model/decoder/layers.0/fc2/MatMul", []) is None
    assert fp32_category("Softmax", "x/Softmax", [], keep=("layernorm",)) is None


def test_bfloat16_rounds_to_nearest_even_like_torch() -> None:
    values = np.array([1.0, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-9, -2.5e-3, 3.0e38], dtype=np.float32)
    values = np.concatenate([values, np.random.default_rng(1).normal(0, 10, 1000).astype(np.float32)])
    expected_bits = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(bfloat16_bits(values), expected_bits)
    assert bfloat16_bits(np.array([1.0 + 2.0**-8], np.float32))[0] == 0x3F80  # a tie goes to the even neighbour


# ---------------------------------------------------------------- profiles and shape planning


def test_limits_come_from_the_service_configuration(tiny_artifacts: Path) -> None:
    limits = default_limits(load_artifacts(tiny_artifacts))
    # Triton max_batch_size 32, gateway max_beam_size 8 and max_summary_tokens 128, artifacts 256 input tokens.
    assert limits == ServiceLimits(max_batch_size=32, max_beams=8, max_input_tokens=256, max_new_tokens=128)
    assert (limits.max_decoder_rows, limits.max_past_tokens) == (256, 127)
    capped = default_limits(load_artifacts(tiny_artifacts), max_new_tokens=10_000)
    assert capped.max_new_tokens == 319  # the tiny model's 320 decoder positions, less the start token
    with pytest.raises(ValueError, match="max_beams"):
        ServiceLimits(max_batch_size=32, max_beams=0, max_input_tokens=256, max_new_tokens=128)


def test_profiles_cover_the_limits_and_tune_for_typical_requests(graphs: dict[str, Path]) -> None:
    limits = ServiceLimits(max_batch_size=32, max_beams=8, max_input_tokens=256, max_new_tokens=128)
    dims = {kind: onnx_input_dims(onnx.load(str(graphs[f"{kind}.fp16"]))) for kind in ENGINE_FILES}
    latency, throughput = engine_profiles(dims["decoder_step"], limits, "decoder_step")
    assert latency["past_key_values.0.decoder.key"] == ((1, 2, 1, 16), (1, 2, 24, 16), (8, 2, 127, 16))
    assert throughput["past_key_values.0.decoder.key"] == ((1, 2, 1, 16), (32, 2, 24, 16), (256, 2, 127, 16))
    assert throughput["past_key_values.0.encoder.key"] == ((1, 2, 1, 16), (32, 2, 64, 16), (256, 2, 256, 16))
    assert throughput["input_ids"] == ((1, 1), (32, 1), (256, 1))
    (encoder,) = engine_profiles(dims["encoder"], limits, "encoder", single_profile=True)
    assert encoder == {"input_ids": ((1, 1), (32, 64), (32, 256)), "attention_mask": ((1, 1), (32, 64), (32, 256))}
    init_latency, _ = engine_profiles(dims["decoder_init"], limits, "decoder_init")
    assert init_latency["encoder_hidden_states"] == ((1, 1, 32), (1, 64, 32), (8, 256, 32))
    small = ServiceLimits(max_batch_size=2, max_beams=1, max_input_tokens=16, max_new_tokens=1)
    (tight,) = engine_profiles(dims["decoder_step"], small, "decoder_step", single_profile=True)
    assert tight["past_key_values.0.decoder.key"] == ((1, 2, 1, 16), (2, 2, 1, 16), (2, 2, 1, 16))


def test_profile_shapes_refuse_unknown_symbols() -> None:
    with pytest.raises(ValueError, match="without a range"):
        profile_shapes({"x": ("batch_size", "mystery")}, {"batch_size": DimRange(1, 2, 4)})
    with pytest.raises(ValueError):
        DimRange(2, 1, 4)


def test_select_profile_prefers_the_tightest_covering_profile(graphs: dict[str, Path]) -> None:
    limits = ServiceLimits(max_batch_size=32, max_beams=8, max_input_tokens=256, max_new_tokens=128)
    profiles = engine_profiles(onnx_input_dims(onnx.load(str(graphs["decoder_step.fp16"]))), limits, "decoder_step")

    def shapes(rows: int, source: int = 40, past: int = 5) -> dict[str, tuple[int, ...]]:
        cache = {name: (rows, 2, past if ".decoder." in name else source, 16) for name in profiles[0] if "past" in name}
        return {"input_ids": (rows, 1), "encoder_attention_mask": (rows, source), **cache}

    assert select_profile(profiles, shapes(1)) == 0
    assert select_profile(profiles, shapes(8)) == 0
    assert select_profile(profiles, shapes(9)) == 1
    assert select_profile(profiles, shapes(256, source=256, past=127)) == 1
    with pytest.raises(ProfileError, match="rebuild the engines"):
        select_profile(profiles, shapes(257))
    with pytest.raises(ProfileError):
        select_profile(profiles, shapes(4, past=128))
    with pytest.raises(ValueError, match="no shape given"):
        select_profile(profiles, {"input_ids": (1, 1)})


def test_planned_output_shapes_match_what_the_graphs_compute(tiny_artifacts: Path, graphs: dict[str, Path]) -> None:
    init = session(graphs["decoder_init.fp16"])
    geometry = decoder_geometry({v.name: v.shape for v in [*init.get_inputs(), *init.get_outputs()]})
    assert (geometry.layers, geometry.heads, geometry.head_dim, geometry.d_model) == (1, 2, 16, 32)
    assert (
        geometry.vocab_size
        == OrtSeq2SeqBackend(
            tiny_artifacts / "encoder_model.onnx", tiny_artifacts / "decoder_model_merged.onnx"
        ).vocab_size
    )
    assert encoder_output_shapes(3, 9, geometry) == {"last_hidden_state": (3, 9, 32)}
    assert decoder_output_shapes(5, 9, 4, geometry, first_step=False) == {
        "logits": (5, 1, geometry.vocab_size),
        "present.0.decoder.key": (5, 2, 5, 16),
        "present.0.decoder.value": (5, 2, 5, 16),
    }
    # Every run of the ONNX stand-in runner below also checks its outputs against these plans.
    assert static_shape(["batch", 2, None, 16]) == (-1, 2, -1, 16)
    assert (torch_dtype_name("HALF"), torch_dtype_name("INT64"), torch_dtype_name("BF16")) == (
        "float16",
        "int64",
        "bfloat16",
    )
    with pytest.raises(ValueError):
        torch_dtype_name("FP8")


# ---------------------------------------------------------------- metadata and the command line


def test_metadata_records_the_build_and_guards_against_other_artifacts(tiny_artifacts: Path, tmp_path: Path) -> None:
    assert (
        sha256_file(tiny_artifacts / "encoder_model.onnx")
        == hashlib.sha256((tiny_artifacts / "encoder_model.onnx").read_bytes()).hexdigest()
    )
    hashes = source_hashes(load_artifacts(tiny_artifacts))
    limits = ServiceLimits(max_batch_size=32, max_beams=8, max_input_tokens=256, max_new_tokens=128)
    for kind, name in ENGINE_FILES.items():
        source = tiny_artifacts / ("encoder_model.onnx" if kind == "encoder" else "decoder_model_merged.onnx")
        (tmp_path / name).write_bytes(b"plan")
        metadata = engine_metadata(
            kind=kind,
            precision="fp16",
            profiles=[{"input_ids": ((1, 1), (32, 1), (256, 1))}],
            limits=limits,
            source_onnx=source,
            source_sha256=sha256_file(source),
            graph_sha256="0" * 64,
            tensorrt_version="10.9.0",
            gpu_name="NVIDIA H200",
            lowering=LoweringReport("fp16", {"/lm_head/MatMul": "logits"}, 3),
            build_seconds=12.345,
        )
        assert write_engine_metadata(tmp_path / name, metadata) == tmp_path / name.replace(".plan", ".json")
    read = read_engine_metadata(tmp_path)
    assert read["decoder_step"]["profiles"] == [{"input_ids": {"min": [1, 1], "opt": [32, 1], "max": [256, 1]}}]
    assert read["encoder"]["lowering"]["fp32_nodes"] == {"logits": 1}
    assert {read[k]["gpu"] for k in read} == {"NVIDIA H200"} and read["encoder"]["build_seconds"] == 12.35
    assert engine_set_problems(read, hashes, "10.9.0") == []
    assert engine_set_problems(read, hashes, "10.13.1") == [
        f"{kind} engine was built by TensorRT 10.9.0, this runtime is 10.13.1" for kind in ENGINE_FILES
    ]
    other = {**hashes, "decoder_model_merged.onnx": "f" * 64}
    assert engine_set_problems(read, other) == [
        "decoder_init engine was built from another decoder_model_merged.onnx than the artifacts hold",
        "decoder_step engine was built from another decoder_model_merged.onnx than the artifacts hold",
    ]
    (tmp_path / "encoder.json").unlink()
    with pytest.raises(FileNotFoundError, match="encoder.json"):
        read_engine_metadata(tmp_path)


@pytest.mark.skipif(has_cuda(), reason="this host has a GPU and TensorRT: the CLI builds instead of refusing")
def test_cli_refuses_in_one_line_without_gpu_or_tensorrt(tiny_artifacts: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reviewsum_build.tensorrt_engine", str(tiny_artifacts), str(tmp_path / "engines")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot build TensorRT engines: ")
    assert "Traceback" not in result.stderr
    if importlib.util.find_spec("tensorrt") is None:
        assert "tensorrt Python package is not installed" in lines[0]
    assert not (tmp_path / "engines").exists()


def test_cli_refuses_quantized_artifacts_in_one_line(
    tiny_artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quantized = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, quantized)
    metadata = json.loads((quantized / "reviewsum.json").read_text(encoding="utf-8"))
    (quantized / "reviewsum.json").write_text(json.dumps({**metadata, "quantization": "int8"}), encoding="utf-8")
    assert main([str(quantized), str(tmp_path / "engines")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "int8-quantized" in error
    assert main([str(tmp_path / "missing"), str(tmp_path / "engines")]) == 2
    assert "lacks" in capsys.readouterr().err


# ---------------------------------------------------------------- generation through the step interface


class RecordingBackend:
    """Wraps the ONNX Runtime backend and counts the calls the shared search code makes through the interface."""

    def __init__(self, inner: OrtSeq2SeqBackend) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {"encode": 0, "decode_step": 0, "select_rows": 0}

    @property
    def vocab_size(self) -> int:
        return self.inner.vocab_size

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        self.calls["encode"] += 1
        return self.inner.encode(input_ids, attention_mask)

    def decode_step(self, state: Any, input_ids: np.ndarray) -> tuple[np.ndarray, Any]:
        self.calls["decode_step"] += 1
        return self.inner.decode_step(state, input_ids)

    def select_rows(self, state: Any, rows: np.ndarray, encoder_rows: np.ndarray | None = None) -> Any:
        self.calls["select_rows"] += 1
        return self.inner.select_rows(state, rows, encoder_rows)


class OrtGraphRunner:
    """Stands in for TensorRTEngineRunner on CPU: runs the ONNX graph an engine is built from, on torch CPU
    tensors, and checks each output against the shapes the backend planned (as the TensorRT runner does)."""

    _NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}

    def __init__(self, path: Path) -> None:
        self._session = session(path)
        values = [*self._session.get_inputs(), *self._session.get_outputs()]
        self._input_types = {v.name: self._NUMPY[v.type] for v in self._session.get_inputs()}
        self.io_shapes = {v.name: static_shape(v.shape) for v in values}
        self.input_names = tuple(self._input_types)
        self.runs = 0

    def run(self, inputs: Mapping[str, Any], output_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
        assert set(output_shapes) == {o.name for o in self._session.get_outputs()}
        feeds = {name: inputs[name].numpy().astype(self._input_types[name]) for name in self.input_names}
        names = list(output_shapes)
        results = self._session.run(names, feeds)
        self.runs += 1
        for name, result in zip(names, results, strict=True):
            assert result.shape == tuple(output_shapes[name]), name
        return {name: torch.from_numpy(result) for name, result in zip(names, results, strict=True)}


def stand_in_backend(graphs: dict[str, Path], precision: str) -> TensorRTSeq2SeqBackend:
    runners = [OrtGraphRunner(graphs[f"{kind}.{precision}"]) for kind in ENGINE_FILES]
    return TensorRTSeq2SeqBackend(*runners, device="cpu")


def test_search_code_is_shared_through_the_step_interface(
    tiny_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts = load_artifacts(tiny_artifacts)
    recording = RecordingBackend(OrtSeq2SeqBackend(artifacts.encoder_path, artifacts.decoder_path, 1))
    searched_with: list[Any] = []
    for name in ("greedy_search", "beam_search"):
        original = getattr(summarizer_module, name)

        def spy(backend: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            searched_with.append(backend)
            return _original(backend, *args, **kwargs)

        monkeypatch.setattr(summarizer_module, name, spy)
    summarizer = Summarizer(artifacts, recording)
    reference = OnnxSummarizer(tiny_artifacts, intra_op_threads=1)
    ids = reference.tokenize(TEXTS)
    assert summarizer.generate_ids(ids, OPTIONS) == reference.generate_ids(ids, OPTIONS)
    # The summarizer's own greedy and beam search ran over the wrapped backend, one call per beam-size group.
    assert searched_with.count(recording) == 4 and len({id(b) for b in searched_with}) == 2
    assert recording.calls["encode"] == 1 and recording.calls["decode_step"] > 10 and recording.calls["select_rows"] > 4


def test_tensorrt_backend_generates_what_onnx_runtime_generates(tiny_artifacts: Path, graphs: dict[str, Path]) -> None:
    """The TensorRT backend's state handling (first step on decoder_init, then decoder_step with the kept cross
    cache, beam reordering by index_select), with its engines' fp32 graphs run by ONNX Runtime."""
    reference = OnnxSummarizer(tiny_artifacts, intra_op_threads=1)
    backend = stand_in_backend(graphs, "fp32")
    candidate = Summarizer(load_artifacts(tiny_artifacts), backend)
    ids = reference.tokenize(TEXTS)
    assert candidate.generate_ids(ids, OPTIONS) == reference.generate_ids(ids, OPTIONS)
    assert candidate.summarize(TEXTS[:2], OPTIONS[:2]) == reference.summarize(TEXTS[:2], OPTIONS[:2])


def test_fp16_graphs_stay_close_to_fp32(tiny_artifacts: Path, graphs: dict[str, Path]) -> None:
    """The lowered graphs, run by ONNX Runtime's CPU fp16 kernels, through the same backend and search code.

    Loose bounds on purpose: the tiny model's random weights (init std 0.5) make activations large and its top
    logits lie within a few hundredths of each other, so fp16 rounding flips some greedy choices. A broken
    lowering (a missing cast, a mask overflowing to -inf, NaN) fails by far more. The 99% goal is for the
    trained model on a GPU (scripts/gpu_check.py).
    """
    gpu_check = load_gpu_check()
    reference = OnnxSummarizer(tiny_artifacts, intra_op_threads=1)
    backend = stand_in_backend(graphs, "fp16")
    candidate = Summarizer(load_artifacts(tiny_artifacts), backend)
    texts = TEXTS * 3
    ids, mask, tokens = gpu_check.teacher_tokens(reference, texts, 16)
    ort_backend = OrtSeq2SeqBackend(
        tiny_artifacts / "encoder_model.onnx", tiny_artifacts / "decoder_model_merged.onnx", 1
    )
    state = ort_backend.encode(ids, mask)
    logits, _ = ort_backend.decode_step(state, tokens[:, 0])
    difference = gpu_check.max_logit_difference(ort_backend, backend, ids, mask, tokens)
    assert np.isfinite(difference) and 0 < difference < 0.05 * float(np.abs(logits).max())
    share = gpu_check.identical_share(gpu_check.greedy_ids(reference, texts), gpu_check.greedy_ids(candidate, texts))
    assert share >= 0.8


# ---------------------------------------------------------------- the GPU repository


@pytest.fixture
def fake_engines(tmp_path: Path) -> Path:
    engines = tmp_path / "built"
    engines.mkdir()
    for path in iter_engine_paths(engines):
        path.write_text(path.name, encoding="utf-8")
    (engines / "timing.cache").write_bytes(b"cache")
    return engines


def test_gpu_configs_parse_and_keep_the_public_contract(
    tiny_artifacts: Path, fake_engines: Path, tmp_path: Path
) -> None:
    repo = write_gpu_repository(tmp_path / "repo", fake_engines, tiny_artifacts, instance_count=2)
    for name, committed in (("summarizer", COMMITTED_CONFIG), ("summarizer_stream", COMMITTED_STREAM_CONFIG)):
        gpu, cpu = parse_config(repo / name / "config.pbtxt"), parse_config(committed)
        assert gpu.name == cpu.name and gpu.backend == "python"
        assert [(t.name, t.data_type, list(t.dims), t.optional) for t in gpu.input] == [
            (t.name, t.data_type, list(t.dims), t.optional) for t in cpu.input
        ]
        assert [(t.name, t.data_type, list(t.dims)) for t in gpu.output] == [
            (t.name, t.data_type, list(t.dims)) for t in cpu.output
        ]
        assert gpu.max_batch_size == cpu.max_batch_size == 32
        assert gpu.dynamic_batching == cpu.dynamic_batching
        assert gpu.model_transaction_policy.decoupled == cpu.model_transaction_policy.decoupled
        assert [(g.kind, g.count) for g in gpu.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 2)]
        parameters = {key: value.string_value for key, value in gpu.parameters.items()}
        assert parameters["backend"] == "tensorrt"
        assert parameters["reviewsum_model_name"] == "reviewsum-tiny"
        version_dir = repo / name / "1"
        assert (version_dir / "model.py").read_bytes() == GPU_MODEL_PY.read_bytes()
        base = MODEL_PY if name == "summarizer" else STREAM_MODEL_PY
        assert (version_dir / "base_model.py").read_bytes() == base.read_bytes()
        engines = (version_dir / parameters["engines_dir"]).resolve()
        assert sorted(p.name for p in engines.iterdir()) == sorted(p.name for p in iter_engine_paths(fake_engines))
        assert ((version_dir / parameters["artifacts_dir"]) / "tokenizer.json").is_file()


def test_gpu_repository_by_reference_and_without_engines(
    tiny_artifacts: Path, fake_engines: Path, tmp_path: Path
) -> None:
    repo = write_gpu_repository(tmp_path / "ref", fake_engines, tiny_artifacts, mode="reference")
    parameters = {
        k: v.string_value for k, v in parse_config(repo / "summarizer_stream" / "config.pbtxt").parameters.items()
    }
    assert parameters["engines_dir"] == str(fake_engines.resolve())
    assert parameters["artifacts_dir"] == str(tiny_artifacts.resolve())
    with pytest.raises(ValueError, match="engines_dir"):
        write_gpu_repository(tmp_path / "none", None, tiny_artifacts)
    ort_repo = write_gpu_repository(tmp_path / "ort", None, tiny_artifacts, backend="onnxruntime")
    config = parse_config(ort_repo / "summarizer" / "config.pbtxt")
    assert config.parameters["backend"].string_value == "onnxruntime"
    # The committed CPU configs are untouched by the GPU additions.
    assert model_repository.main(["check"]) == 0


def test_gpu_model_py_serves_the_same_contract_with_onnx_runtime(tiny_artifacts: Path, tmp_path: Path) -> None:
    """The GPU variant's model.py (base model + backend choice) in the Python backend stand-in, backend
    onnxruntime so it runs here; KIND_CPU only because this machine has no GPU to assign."""
    repo = write_gpu_repository(
        tmp_path / "repo", None, tiny_artifacts, backend="onnxruntime", instance_kind="KIND_CPU"
    )
    model = load_model(repo / "summarizer" / "1" / "model.py", repo / "summarizer")
    engine = OnnxSummarizer(tiny_artifacts, intra_op_threads=1)
    beam = GenerationOptions(max_new_tokens=12, num_beams=3, no_repeat_ngram_size=2)
    requests = [
        FakeRequest(TEXT=text_input("味道不错，送得很快", "The room was clean.")),
        FakeRequest(
            TEXT=text_input("质量很好"), MAX_NEW_TOKENS=column(12), NUM_BEAMS=column(3), NO_REPEAT_NGRAM_SIZE=column(2)
        ),
        FakeRequest(TEXT=text_input("好"), NUM_BEAMS=column(99)),
    ]
    good, beamed, bad = model.execute(requests)
    assert as_generations(good) == expected(engine, ["味道不错，送得很快", "The room was clean."], GenerationOptions())
    assert as_generations(beamed) == expected(engine, ["质量很好"], beam)
    assert bad.error is not None and "NUM_BEAMS" in bad.error.message
    stream = load_model(repo / "summarizer_stream" / "1" / "model.py", repo / "summarizer_stream")
    request = FakeRequest(TEXT=text_input("送得很快"), MAX_NEW_TOKENS=column(8))
    stream.execute([request])
    sent = request.sender.sent
    assert (
        sent[-1][1] == 1
        and "".join(r.output("TEXT_DELTA")[0] for r, _ in sent)
        == expected(engine, ["送得很快"], GenerationOptions(max_new_tokens=8))[0][0]
    )


def test_summarizer_factory_picks_the_backend(tmp_path: Path) -> None:
    assert summarizer_factory({}, tmp_path, 0) is OnnxSummarizer
    assert summarizer_factory({"backend": "onnxruntime"}, tmp_path, 0) is OnnxSummarizer
    assert callable(summarizer_factory({"backend": "tensorrt", "engines_dir": "engines"}, tmp_path, 1))
    with pytest.raises(ValueError, match="engines_dir"):
        summarizer_factory({"backend": "tensorrt"}, tmp_path, 0)
    with pytest.raises(ValueError, match="expected one of"):
        summarizer_factory({"backend": "tensorflow"}, tmp_path, 0)


# ---------------------------------------------------------------- the GPU check script on this host


def load_gpu_check() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(has_cuda(), reason="on a GPU host the check measures instead of reporting not-run rows")
def test_gpu_check_reports_what_this_host_lacks(tiny_artifacts: Path, tmp_path: Path) -> None:
    report = tmp_path / "check.json"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "gpu_check.py"), "--artifacts", str(tiny_artifacts)]
    command += ["--samples", "builtin", "--repeats", "1", "--budget-s", "120", "--json", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row["result"] for row in json.loads(report.read_text(encoding="utf-8"))["rows"]}
    tensorrt_rows = [name for name in rows if name.startswith(("TensorRT", "largest", "identical"))]
    assert len(tensorrt_rows) == 6 and all(rows[name].startswith("not run: ") for name in tensorrt_rows)
    torch_rows = [name for name in rows if name.startswith("PyTorch GPU")]
    assert len(torch_rows) == 3 and all(rows[name].startswith("not run: ") for name in torch_rows)
    measured = [name for name in rows if name.startswith("ONNX Runtime")]
    assert len(measured) == 3 and all("summaries/s" in rows[name] for name in measured)
    assert "not run: " in result.stdout and "ONNX Runtime" in result.stdout


def test_parity_helpers() -> None:
    gpu_check = load_gpu_check()
    assert gpu_check.identical_share([[1, 2], [3]], [[1, 2], [4]]) == 0.5
    with pytest.raises(ValueError):
        gpu_check.identical_share([], [])
    assert gpu_check.joined(None, "a", None, "b") == "a; b" and gpu_check.joined(None) is None


# ---------------------------------------------------------------- GPU only


@pytest.fixture(scope="module")
def built_engines(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reviewsum_build.tensorrt_engine import build_engines

    out = tmp_path_factory.mktemp("engines")
    build_engines(tiny_artifacts, out, precision="fp16", log=lambda _: None)
    return out


@pytest.mark.skipif(not has_cuda(), reason=GPU_REASON)
def test_gpu_engines_generate_what_onnx_runtime_generates(tiny_artifacts: Path, built_engines: Path) -> None:
    from reviewsum_engine.tensorrt_backend import TensorRTSummarizer

    reference = OnnxSummarizer(tiny_artifacts, intra_op_threads=1)
    candidate = TensorRTSummarizer(tiny_artifacts, built_engines)
    ids = reference.tokenize(TEXTS * 8)
    options = OPTIONS * 8
    got, want = candidate.generate_ids(ids, options), reference.generate_ids(ids, options)
    assert sum(a == b for a, b in zip(got, want, strict=True)) / len(want) >= 0.99


@pytest.mark.skipif(not has_cuda(), reason=GPU_REASON)
def test_gpu_engine_metadata_describes_this_host(tiny_artifacts: Path, built_engines: Path) -> None:
    import tensorrt as trt
    from reviewsum_engine.tensorrt_backend import detect_gpus

    metadata = read_engine_metadata(built_engines)
    assert {m["tensorrt_version"] for m in metadata.values()} == {trt.__version__}
    assert {m["gpu"] for m in metadata.values()} == {detect_gpus()[0]}
    assert engine_set_problems(metadata, source_hashes(load_artifacts(tiny_artifacts)), trt.__version__) == []
    assert (built_engines / "timing.cache").stat().st_size > 0


def test_gpu_model_py_builds_its_engine_with_tensorrt_when_configured(
    tiny_artifacts: Path, fake_engines: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend choice reaches `load_model`: a stand-in for TensorRTSummarizer (this host has no GPU)
    records how it was built and serves through ONNX Runtime."""
    from reviewsum_engine import tensorrt_backend, triton_support

    built: list[tuple[Path, Path, str]] = []

    class StandIn(OnnxSummarizer):
        def __init__(self, artifacts_dir: Path, engines_dir: Path, device: str) -> None:
            built.append((Path(artifacts_dir), Path(engines_dir), device))
            super().__init__(artifacts_dir, intra_op_threads=1)

    monkeypatch.setattr(tensorrt_backend, "TensorRTSummarizer", StandIn)
    repo = write_gpu_repository(tmp_path / "repo", fake_engines, tiny_artifacts, instance_kind="KIND_CPU")
    try:
        model = load_model(repo / "summarizer" / "1" / "model.py", repo / "summarizer")
    finally:
        triton_support.use_engine_factory(OnnxSummarizer)
    assert isinstance(model._engine, StandIn)
    ((artifacts_dir, engines_dir, device),) = built
    assert (artifacts_dir / "tokenizer.json").is_file()
    assert sorted(p.name for p in engines_dir.iterdir()) == sorted(p.name for p in iter_engine_paths(fake_engines))
    assert device == "cuda:0"
