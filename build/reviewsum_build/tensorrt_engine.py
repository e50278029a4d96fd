"""Build TensorRT engines from the exported ONNX encoder and merged decoder.

    python -m reviewsum_build.tensorrt_engine ARTIFACTS OUT [--precision fp16|bf16|fp32] [--timing-cache PATH]

writes OUT/encoder.plan, OUT/decoder_init.plan, OUT/decoder_step.plan, a JSON metadata file beside each
(TensorRT version, GPU, profiles, precision, SHA-256 of the source ONNX), OUT/onnx/ (the graphs TensorRT
parsed) and the timing cache. `--repository DIR` then lays out the GPU model repository serving them.

Three steps, the first two pure ONNX and tested on CPU:
1. Split optimum's merged decoder into its two branches (`decoder_init`: no cache yet; `decoder_step`: with
   the KV cache). TensorRT's ONNX parser does not build the merged graph's `If`
   (huggingface/optimum#2013, NVIDIA/TensorRT#2723), and each branch is a plain graph once the branch
   condition is fixed.
2. Lower precision inside the graph: every float tensor becomes FP16 or BF16 except what accuracy needs in FP32
   (`FP32_RULES`: layer norms, attention softmax, the final logits). TensorRT 10.12 deprecated, and 11 removed,
   the builder's FP16/BF16 flags and per-layer precision constraints; a strongly typed network whose types
   come from the graph builds the same way on both.
3. Build each graph with optimization profiles computed by `engine_profiles()` from the service's limits.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from reviewsum_engine.artifacts import ModelArtifacts, load_artifacts
from reviewsum_engine.generation import MAX_NUM_BEAMS
from reviewsum_engine.tensorrt_backend import (
    ENGINE_FILES,
    ShapeRange,
    detect_gpus,
    metadata_path,
    sha256_file,
)

if TYPE_CHECKING:
    import onnx

Precision = Literal["fp16", "bf16", "fp32"]
EngineKind = Literal["encoder", "decoder_init", "decoder_step"]
PRECISIONS: tuple[Precision, ...] = ("fp16", "bf16", "fp32")
USE_CACHE_INPUT = "use_cache_branch"
# Kept FP32 at the graph boundary: the search code reads logits on the host as float32.
FP32_OUTPUTS = ("logits",)
EXIT_UNAVAILABLE = 2  # no GPU, no TensorRT, or unusable inputs: a clear one-line error

# Typical request shapes, the `opt` of each profile (TensorRT tunes its kernels for these): reviews picked for
# the dev set are at most 220 characters, well under 64 tokens for most; summaries average about two dozen tokens.
TYPICAL_SOURCE_TOKENS = 64
TYPICAL_SUMMARY_TOKENS = 24
FP16_MAX = 65504.0


# ---------------------------------------------------------------- limits and optimization profiles


@dataclass(frozen=True)
class ServiceLimits:
    """The largest work one Triton `execute` can hand the engines."""

    max_batch_size: int  # rows per Triton batch (the model config's max_batch_size)
    max_beams: int  # largest num_beams a request may ask for
    max_input_tokens: int  # source tokens after truncation (artifacts' max_input_tokens)
    max_new_tokens: int  # largest max_summary_tokens the gateway lets through

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")

    @property
    def max_decoder_rows(self) -> int:
        # The summarizer expands each request to num_beams rows before the first decode step.
        return self.max_batch_size * self.max_beams

    @property
    def max_past_tokens(self) -> int:
        # Generating n tokens takes n steps; the last one sees a cache of n - 1 (the first runs decoder_init).
        return max(1, self.max_new_tokens - 1)


def default_limits(
    artifacts: ModelArtifacts,
    *,
    max_batch_size: int | None = None,
    max_beams: int | None = None,
    max_new_tokens: int | None = None,
) -> ServiceLimits:
    """The limits configured for the service: Triton's max_batch_size, the gateway's beam and summary limits,
    the artifacts' input limit. The gateway limits are capped by what the engine itself accepts."""
    from reviewsum_server.config import GatewayConfig

    from reviewsum_build.model_repository import ModelSpec

    gateway = GatewayConfig()
    return ServiceLimits(
        max_batch_size=max_batch_size or ModelSpec().max_batch_size,
        max_beams=max_beams or min(gateway.max_beam_size, MAX_NUM_BEAMS),
        max_input_tokens=artifacts.max_input_tokens,
        max_new_tokens=min(max_new_tokens or gateway.max_summary_tokens, artifacts.max_new_tokens_limit),
    )


@dataclass(frozen=True)
class DimRange:
    low: int
    opt: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.opt <= self.high:
            raise ValueError(f"need 1 <= min <= opt <= max, got {self}")


def _clamped(low: int, opt: int, high: int) -> DimRange:
    return DimRange(low, max(low, min(opt, high)), high)


def symbol_ranges(
    limits: ServiceLimits, kind: EngineKind, profile: Literal["latency", "throughput"]
) -> dict[str, DimRange]:
    """Ranges of the ONNX graphs' symbolic dimensions for one engine and one profile.

    "latency" covers one request (up to max_beams rows) tuned for a single row; "throughput" covers a full
    batch tuned for max_batch_size rows. Sequence ranges are the same in both.
    """
    if kind == "encoder":
        small, full = min(limits.max_beams, limits.max_batch_size), limits.max_batch_size
    else:
        small, full = limits.max_beams, limits.max_decoder_rows
    rows = _clamped(1, 1, small) if profile == "latency" else _clamped(1, limits.max_batch_size, full)
    ranges = {
        "batch_size": rows,
        "encoder_sequence_length": _clamped(1, TYPICAL_SOURCE_TOKENS, limits.max_input_tokens),
        "decoder_sequence_length": DimRange(1, 1, 1),  # one new token per step
    }
    if kind == "decoder_step":
        ranges["past_decoder_sequence_length"] = _clamped(1, TYPICAL_SUMMARY_TOKENS, limits.max_past_tokens)
    return ranges


def profile_shapes(
    input_dims: Mapping[str, Sequence[int | str]], ranges: Mapping[str, DimRange]
) -> dict[str, ShapeRange]:
    """(min, opt, max) shapes of each input: static dims as they are, symbolic dims from `ranges`."""
    shapes: dict[str, ShapeRange] = {}
    for name, dims in input_dims.items():
        unknown = [dim for dim in dims if isinstance(dim, str) and dim not in ranges]
        if unknown:
            raise ValueError(f"input {name} has symbolic dimensions without a range: {unknown}")
        picks = [(dim, dim, dim) if isinstance(dim, int) else astuple_range(ranges[dim]) for dim in dims]
        shapes[name] = tuple(tuple(pick[i] for pick in picks) for i in range(3))  # type: ignore[assignment]
    return shapes


def astuple_range(dim: DimRange) -> tuple[int, int, int]:
    return dim.low, dim.opt, dim.high


def engine_profiles(
    input_dims: Mapping[str, Sequence[int | str]],
    limits: ServiceLimits,
    kind: EngineKind,
    *,
    single_profile: bool = False,
) -> list[dict[str, ShapeRange]]:
    """The optimization profiles of one engine: latency then throughput (only throughput if `single_profile`)."""
    names: tuple[Literal["latency", "throughput"], ...] = (
        ("throughput",) if single_profile else ("latency", "throughput")
    )
    return [profile_shapes(input_dims, symbol_ranges(limits, kind, name)) for name in names]


def onnx_input_dims(model: onnx.ModelProto) -> dict[str, tuple[int | str, ...]]:
    """Each graph input's dimensions: an int when static, the symbolic name when dynamic."""
    dims = {}
    for value in model.graph.input:
        shape = value.type.tensor_type.shape.dim
        dims[value.name] = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in shape)
    return dims


# ---------------------------------------------------------------- splitting the merged decoder


def specialize_merged_decoder(merged: onnx.ModelProto, use_cache: bool) -> onnx.ModelProto:
    """The merged decoder with `use_cache_branch` fixed: the `If` replaced by the nodes of the branch it would
    take, unused inputs, initializers and nodes removed. With the cache, the cross-attention `present.*.encoder.*`
    outputs are dropped: that branch only echoes placeholders, and the backend keeps the first step's cache."""
    from onnx import helper

    graph = merged.graph
    if_nodes = [node for node in graph.node if node.op_type == "If" and list(node.input) == [USE_CACHE_INPUT]]
    if len(if_nodes) != 1:
        raise ValueError(f"expected optimum's merged decoder (one If on {USE_CACHE_INPUT}), found {len(if_nodes)}")
    if_node = if_nodes[0]
    branch = next(attr.g for attr in if_node.attribute if attr.name == ("then_branch" if use_cache else "else_branch"))
    clashes = {t.name for t in branch.initializer} & {t.name for t in graph.initializer}
    if clashes:
        raise ValueError(f"branch initializers clash with the outer graph's: {sorted(clashes)[:5]}")
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node is not if_node:
            nodes.append(node)
            continue
        nodes.extend(branch.node)
        for produced, wanted in zip(branch.output, if_node.output, strict=True):
            if produced.name != wanted:
                nodes.append(helper.make_node("Identity", [produced.name], [wanted], name=f"{wanted}/branch_output"))
    outputs = [
        value
        for value in graph.output
        if not (use_cache and value.name.startswith("present.") and ".encoder." in value.name)
    ]
    inputs = [value for value in graph.input if value.name != USE_CACHE_INPUT]
    initializers = [*graph.initializer, *branch.initializer]
    kept_nodes, kept_inputs, kept_initializers = _prune(nodes, inputs, outputs, initializers)
    name = f"{graph.name or 'decoder'}_{'step' if use_cache else 'init'}"
    specialized = helper.make_model(
        helper.make_graph(kept_nodes, name, kept_inputs, outputs, initializer=kept_initializers),
        opset_imports=list(merged.opset_import),
        ir_version=merged.ir_version,
        producer_name="reviewsum_build.tensorrt_engine",
    )
    return specialized


def _prune(
    nodes: list[onnx.NodeProto], inputs: list[Any], outputs: list[Any], initializers: list[Any]
) -> tuple[list[Any], list[Any], list[Any]]:
    """Keep only what the outputs depend on: (nodes, inputs, initializers)."""
    needed = {value.name for value in outputs}
    kept = []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(_referenced_names(node))
    kept.reverse()
    return (
        kept,
        [value for value in inputs if value.name in needed],
        [tensor for tensor in initializers if tensor.name in needed],
    )


def _referenced_names(node: onnx.NodeProto) -> set[str]:
    """A node's inputs, plus every name its subgraphs read (they may refer to the outer scope)."""
    names = {name for name in node.input if name}
    for attr in node.attribute:
        subgraphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
        for subgraph in subgraphs:
            for inner in subgraph.node:
                names |= _referenced_names(inner)
    return names


# ---------------------------------------------------------------- precision policy and lowering

FP32_CATEGORIES = ("layernorm", "softmax", "logits")
# Why each category stays FP32 (also written into every engine's metadata).
FP32_RULES = {
    "layernorm": "layer norm: its variance sums squares of the residual stream, which overflow FP16 after "
    "attention (TensorRT warns 'Running layernorm after self-attention in FP16 may cause overflow'); "
    "in BF16 the 8-bit mantissa makes mean and variance coarse",
    "softmax": "attention softmax: exponentials of scores plus a mask of float32-min, which FP16 can only "
    "hold as -inf or -65504; normalizing in FP32 keeps attention weights summing to 1",
    "logits": "final logits projection and bias: greedy picks the argmax and beam search sums log-softmax "
    "over the vocabulary, so FP16 rounding (about 1e-3 relative) flips near-ties between tokens",
}
_LAYER_NORM_SCOPES = ("layer_norm", "layernorm")
_DECOMPOSED_NORM_OPS = {"ReduceMean", "Pow", "Sqrt", "Sub", "Div", "Add", "Mul"}
# Ops that read an input of any type without computing on its values: no cast in front of them.
_TYPE_AGNOSTIC_INPUT_OPS = {"Shape", "Size", "Cast"}


def fp32_category(
    op_type: str, node_name: str, outputs: Sequence[str], keep: Collection[str] = FP32_CATEGORIES
) -> str | None:
    """The FP32 rule a node falls under, or None when it may run in FP16/BF16."""
    scope = node_name.lower()
    if "layernorm" in keep and (
        op_type == "LayerNormalization"
        or (op_type in _DECOMPOSED_NORM_OPS and any(part in scope for part in _LAYER_NORM_SCOPES))
    ):
        return "layernorm"  # opset >= 17 exports one LayerNormalization; older ones a ReduceMean/Pow/Sqrt chain
    if "softmax" in keep and op_type == "Softmax":
        return "softmax"
    if "logits" in keep and (scope.startswith("/lm_head/") or any(name in FP32_OUTPUTS for name in outputs)):
        return "logits"
    return None


@dataclass(frozen=True)
class LoweringReport:
    precision: Precision
    fp32_nodes: dict[str, str]  # node name -> category
    casts_added: int

    def summary(self) -> dict[str, Any]:
        counts = Counter(self.fp32_nodes.values())
        return {
            "precision": self.precision,
            "fp32_nodes": dict(sorted(counts.items())),
            "fp32_reasons": {category: FP32_RULES[category] for category in sorted(counts)},
            "casts_added": self.casts_added,
        }


def lower_precision(
    model: onnx.ModelProto, precision: Precision, keep: Collection[str] = FP32_CATEGORIES
) -> tuple[onnx.ModelProto, LoweringReport]:
    """A copy of `model` computing in FP16/BF16 except the nodes `fp32_category` names; Casts at every boundary.

    Float graph inputs and outputs take the low type too (the KV cache and encoder output then cost half the
    memory and bandwidth), except `FP32_OUTPUTS`. Initializers feeding any FP32 node stay FP32. FP16 constants
    are clipped to its finite range first, so float32-min masks become -65504, not -inf (-inf * 0 is NaN).
    """
    from onnx import TensorProto, helper

    if precision == "fp32":
        return model, LoweringReport(precision, {}, 0)
    low = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}[precision]
    float_names = _float_tensor_names(model)
    graph = model.graph
    categories = {
        node.name: category
        for node in graph.node
        if (category := fp32_category(node.op_type, node.name, node.output, keep)) is not None
    }
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    types: dict[str, int] = {}  # float tensor name -> its new element type
    inputs = []
    for value in graph.input:
        value = _copy(value)
        if value.name in float_names:
            types[value.name] = low
            value.type.tensor_type.elem_type = low
        inputs.append(value)
    initializers = []
    for tensor in graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            keep_fp32 = any(node.name in categories for node in consumers[tensor.name])
            types[tensor.name] = TensorProto.FLOAT if keep_fp32 else low
            tensor = tensor if keep_fp32 else _convert_tensor(tensor, low)
        initializers.append(tensor)

    nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, target: int) -> str:
        if (name, target) not in casts:
            casts[(name, target)] = f"{name}/cast_to_{TensorProto.DataType.Name(target).lower()}"
            nodes.append(
                helper.make_node("Cast", [name], [casts[(name, target)]], to=target, name=casts[(name, target)])
            )
        return casts[(name, target)]

    opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    for node in graph.node:
        if any(attr.HasField("g") or len(attr.graphs) for attr in node.attribute):
            raise ValueError(f"node {node.name} has a subgraph; split the merged decoder first")
        # An op whose schema at this opset lacks the low type (ConstantOfShape has no bfloat16 before opset 20)
        # stays FP32; a Cast follows it like any FP32 island.
        fp32 = node.name in categories or not _op_allows(node.op_type, node.domain, opset, low)
        target = TensorProto.FLOAT if fp32 else low
        node = _copy(node)
        if node.op_type not in _TYPE_AGNOSTIC_INPUT_OPS:
            for index, name in enumerate(node.input):
                if name in types and types[name] != target:
                    node.input[index] = cast(name, target)
        _retype_float_attributes(node, target, float_names)
        for name in node.output:
            if name in float_names:
                types[name] = target
        nodes.append(node)

    outputs = []
    for value in graph.output:
        value = _copy(value)
        if value.name in float_names:
            wanted = TensorProto.FLOAT if value.name in FP32_OUTPUTS else low
            if types[value.name] != wanted:
                _cast_graph_output(nodes, value.name, wanted)
            value.type.tensor_type.elem_type = wanted
        outputs.append(value)
    lowered = helper.make_model(
        helper.make_graph(nodes, graph.name, inputs, outputs, initializer=initializers),
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
        producer_name="reviewsum_build.tensorrt_engine",
    )
    return lowered, LoweringReport(precision, categories, len(casts))


def _float_tensor_names(model: onnx.ModelProto) -> set[str]:
    """Names of all float32 tensors, intermediate ones from ONNX shape inference (which must type every one)."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    typed = {
        value.name: value.type.tensor_type.elem_type
        for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    }
    typed.update({tensor.name: tensor.data_type for tensor in model.graph.initializer})
    untyped = [name for node in model.graph.node for name in node.output if name and typed.get(name, 0) == 0]
    if untyped:
        raise ValueError(f"shape inference left {len(untyped)} tensors untyped, e.g. {untyped[:3]}")
    return {name for name, elem_type in typed.items() if elem_type == TensorProto.FLOAT}


def _op_allows(op_type: str, domain: str, opset: int, elem_type: int) -> bool:
    """Whether every type constraint of the op that admits float32 also admits `elem_type` at this opset."""
    import onnx
    from onnx import helper

    try:
        schema = onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return False
    # numpy has no bfloat16, so its name comes from here rather than from the numpy dtype.
    numpy_name = (
        "bfloat16" if elem_type == onnx.TensorProto.BFLOAT16 else helper.tensor_dtype_to_np_dtype(elem_type).name
    )
    wanted = f"tensor({numpy_name})"
    return all(
        wanted in constraint.allowed_type_strs
        for constraint in schema.type_constraints
        if "tensor(float)" in constraint.allowed_type_strs
    )


def _retype_float_attributes(node: onnx.NodeProto, target: int, float_names: set[str]) -> None:
    """Make a node that creates float values (Cast to float, Constant, ConstantOfShape) create them as `target`."""
    from onnx import TensorProto, helper, numpy_helper

    if node.op_type == "Cast" and any(name in float_names for name in node.output):
        for attr in node.attribute:
            if attr.name == "to":
                attr.i = target
    elif node.op_type in ("Constant", "ConstantOfShape"):
        if node.op_type == "ConstantOfShape" and not any(attr.name == "value" for attr in node.attribute):
            # The spec's default value is a float32 zero.
            node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float32))))
        for attr in list(node.attribute):
            if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(_convert_tensor(attr.t, target))
            elif attr.name in ("value_float", "value_floats"):
                values = np.array(attr.f if attr.name == "value_float" else list(attr.floats), dtype=np.float32)
                node.attribute.remove(attr)
                shaped = values.reshape(()) if attr.name == "value_float" else values
                node.attribute.append(
                    helper.make_attribute("value", _convert_tensor(numpy_helper.from_array(shaped), target))
                )


def _cast_graph_output(nodes: list[onnx.NodeProto], name: str, target: int) -> None:
    """Rename the producer's output and add a Cast that produces the graph output `name` in `target`."""
    from onnx import helper

    inner = f"{name}/before_cast"
    for node in nodes:
        for index, value in enumerate(node.output):
            if value == name:
                node.output[index] = inner
        for index, value in enumerate(node.input):
            if value == name:
                node.input[index] = inner
    nodes.append(helper.make_node("Cast", [inner], [name], to=target, name=f"{name}/output_cast"))


def _convert_tensor(tensor: Any, target: int) -> Any:
    from onnx import TensorProto, numpy_helper

    values = numpy_helper.to_array(tensor).astype(np.float32)
    if target == TensorProto.FLOAT:
        converted = numpy_helper.from_array(values, tensor.name)
    elif target == TensorProto.FLOAT16:
        converted = numpy_helper.from_array(np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16), tensor.name)
    else:
        converted = TensorProto(name=tensor.name, data_type=TensorProto.BFLOAT16, dims=list(values.shape))
        converted.raw_data = bfloat16_bits(values).tobytes()
    return converted


def bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even like the hardware does."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def _copy(message: Any) -> Any:
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


# ---------------------------------------------------------------- graphs to build, metadata


@dataclass(frozen=True)
class EngineSource:
    kind: EngineKind
    source_onnx: Path  # the artifacts file it derives from (hashed into the metadata)
    graph: Path  # the graph TensorRT parses


def prepare_graphs(
    artifacts: ModelArtifacts, graphs_dir: Path, precision: Precision, keep: Collection[str] = FP32_CATEGORIES
) -> tuple[list[EngineSource], dict[str, LoweringReport]]:
    """Write the three graphs TensorRT will parse (split, precision-lowered) under `graphs_dir`."""
    import onnx

    graphs_dir.mkdir(parents=True, exist_ok=True)
    merged = onnx.load(str(artifacts.decoder_path))
    graphs = {
        "encoder": (artifacts.encoder_path, onnx.load(str(artifacts.encoder_path))),
        "decoder_init": (artifacts.decoder_path, specialize_merged_decoder(merged, use_cache=False)),
        "decoder_step": (artifacts.decoder_path, specialize_merged_decoder(merged, use_cache=True)),
    }
    sources, reports = [], {}
    for kind, (source, model) in graphs.items():
        lowered, reports[kind] = lower_precision(model, precision, keep)
        path = graphs_dir / f"{kind}.{precision}.onnx"
        save_onnx(lowered, path)
        sources.append(EngineSource(kind, source, path))  # type: ignore[arg-type]
    return sources, reports


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    """Save a graph; weights go to a side file past protobuf's 2 GB limit (TensorRT's parser reads both)."""
    import onnx

    external = model.ByteSize() > 1_800_000_000
    onnx.save(model, str(path), save_as_external_data=external, location=f"{path.name}.data" if external else None)


def engine_metadata(
    *,
    kind: str,
    precision: Precision,
    profiles: Sequence[Mapping[str, ShapeRange]],
    limits: ServiceLimits,
    source_onnx: Path,
    source_sha256: str,
    graph_sha256: str,
    tensorrt_version: str,
    gpu_name: str,
    lowering: LoweringReport,
    build_seconds: float,
) -> dict[str, Any]:
    return {
        "engine": ENGINE_FILES[kind],
        "kind": kind,
        "tensorrt_version": tensorrt_version,
        "gpu": gpu_name,
        "precision": precision,
        "strongly_typed": True,
        "lowering": lowering.summary(),
        "profiles": [
            {
                name: {"min": list(low), "opt": list(opt), "max": list(high)}
                for name, (low, opt, high) in profile.items()
            }
            for profile in profiles
        ],
        "limits": asdict(limits),
        "source_onnx": str(source_onnx),
        "source_onnx_sha256": source_sha256,
        "built_onnx_sha256": graph_sha256,
        "build_seconds": round(build_seconds, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_engine_metadata(engine_path: Path, metadata: Mapping[str, Any]) -> Path:
    path = metadata_path(engine_path)
    path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- what the host lacks


class BuildUnavailable(RuntimeError):
    """This host or these inputs cannot build engines; the message is one line for the user."""


def build_problems() -> list[str]:
    problems = []
    if not detect_gpus():
        problems.append("no NVIDIA GPU found (no /proc/driver/nvidia/gpus, no nvidia-smi)")
    if importlib.util.find_spec("tensorrt") is None:
        problems.append(
            "the tensorrt Python package is not installed (pip install tensorrt, matching the serving TensorRT)"
        )
    return problems


def check_artifacts(artifacts_dir: Path) -> ModelArtifacts:
    try:
        artifacts = load_artifacts(artifacts_dir)
    except (FileNotFoundError, ValueError) as error:
        raise BuildUnavailable(str(error)) from error
    metadata = json.loads((artifacts.directory / "reviewsum.json").read_text(encoding="utf-8"))
    if metadata.get("quantization"):
        raise BuildUnavailable(
            f"{artifacts_dir} holds {metadata['quantization']}-quantized ONNX Runtime graphs; "
            "TensorRT needs the float export (reviewsum_build.export without --quantize)"
        )
    return artifacts


# ---------------------------------------------------------------- building (needs a GPU and tensorrt)


@dataclass(frozen=True)
class BuiltEngine:
    kind: str
    path: Path
    seconds: float
    metadata: dict[str, Any]


def build_engines(
    artifacts_dir: Path,
    out_dir: Path,
    *,
    precision: Precision = "fp16",
    timing_cache: Path | None = None,
    limits: ServiceLimits | None = None,
    single_profile: bool = False,
    keep: Collection[str] = FP32_CATEGORIES,
    log: Callable[[str], None] = print,
) -> list[BuiltEngine]:
    """Build the three engines into `out_dir`; raises BuildUnavailable when this host cannot."""
    artifacts = check_artifacts(Path(artifacts_dir))
    problems = build_problems()
    if problems:
        raise BuildUnavailable("cannot build TensorRT engines: " + "; ".join(problems))
    import tensorrt as trt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    limits = limits or default_limits(artifacts)
    cache_path = Path(timing_cache) if timing_cache else out_dir / "timing.cache"
    sources, reports = prepare_graphs(artifacts, out_dir / "onnx", precision, keep)
    gpu = detect_gpus()[0]
    built = []
    for source in sources:
        import onnx

        dims = onnx_input_dims(onnx.load(str(source.graph), load_external_data=False))
        profiles = engine_profiles(dims, limits, source.kind, single_profile=single_profile)
        engine_path = out_dir / ENGINE_FILES[source.kind]
        log(f"building {engine_path.name} ({precision}, {len(profiles)} profile(s)) from {source.graph.name}")
        seconds = _build_engine(trt, source.graph, engine_path, profiles, cache_path)
        metadata = engine_metadata(
            kind=source.kind,
            precision=precision,
            profiles=profiles,
            limits=limits,
            source_onnx=source.source_onnx,
            source_sha256=sha256_file(source.source_onnx),
            graph_sha256=sha256_file(source.graph),
            tensorrt_version=trt.__version__,
            gpu_name=gpu,
            lowering=reports[source.kind],
            build_seconds=seconds,
        )
        write_engine_metadata(engine_path, metadata)
        built.append(BuiltEngine(source.kind, engine_path, seconds, metadata))
        log(f"built {engine_path} in {seconds:.1f}s")
    return built


def _build_engine(
    trt: Any, graph: Path, engine_path: Path, profiles: Iterable[Mapping[str, ShapeRange]], cache_path: Path
) -> float:
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except (RuntimeError, TypeError) as error:  # pybind11 reports a failed CUDA init as a nullptr factory
        raise BuildUnavailable(f"TensorRT could not initialize a GPU: {error}") from error
    # Strongly typed: every tensor's type comes from the graph (see lower_precision); required on 10.x to honour
    # the FP32 islands, the only mode on 11.x.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {graph}: {errors}")
    config = builder.create_builder_config()
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None:
        config.clear_flag(tf32)  # FP32 islands must be FP32, not TF32's 10-bit mantissa
    for shapes in profiles:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in shapes.items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, False)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {engine_path.name}; rerun with a verbose logger for details")
    with engine_path.open("wb") as stream:
        stream.write(serialized)
    with cache_path.open("wb") as stream:
        stream.write(config.get_timing_cache().serialize())
    return seconds


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build ReviewSum's TensorRT engines from its ONNX artifacts.")
    parser.add_argument("artifacts", type=Path, help="artifacts directory written by reviewsum_build.export")
    parser.add_argument("out", type=Path, help="directory for the engines, their metadata and the parsed graphs")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--timing-cache", type=Path, default=None, help="reused and updated (default OUT/timing.cache)")
    parser.add_argument("--max-batch-size", type=int, default=None, help="default: the Triton model's max_batch_size")
    parser.add_argument("--max-beams", type=int, default=None, help="default: the gateway's max_beam_size")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the gateway's max_summary_tokens")
    parser.add_argument("--single-profile", action="store_true", help="throughput profile only (faster build)")
    parser.add_argument(
        "--fp32-keep",
        default=",".join(FP32_CATEGORIES),
        help=f"comma-separated categories kept in FP32 (of {', '.join(FP32_CATEGORIES)}); '' keeps none",
    )
    parser.add_argument("--repository", type=Path, default=None, help="then lay out a GPU model repository here")
    args = parser.parse_args(argv)
    keep = tuple(part for part in args.fp32_keep.split(",") if part)
    unknown = set(keep) - set(FP32_CATEGORIES)
    if unknown:
        parser.error(f"unknown --fp32-keep categories {sorted(unknown)}")
    try:
        artifacts = check_artifacts(args.artifacts)
        limits = default_limits(
            artifacts, max_batch_size=args.max_batch_size, max_beams=args.max_beams, max_new_tokens=args.max_new_tokens
        )
        build_engines(
            args.artifacts,
            args.out,
            precision=args.precision,
            timing_cache=args.timing_cache,
            limits=limits,
            single_profile=args.single_profile,
            keep=keep,
        )
    except BuildUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.repository is not None:
        from reviewsum_build.model_repository import write_gpu_repository

        write_gpu_repository(args.repository, args.out, args.artifacts)
        print(f"wrote GPU model repository {args.repository}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
