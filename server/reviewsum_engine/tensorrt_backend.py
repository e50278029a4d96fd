"""TensorRT implementation of the step interface: three engines, device buffers held as torch CUDA tensors.

Engines (built by `python -m reviewsum_build.tensorrt_engine`, one JSON metadata file beside each):
- `encoder.plan`       input_ids, attention_mask -> last_hidden_state;
- `decoder_init.plan`  the first decode step: input_ids, encoder_hidden_states, encoder_attention_mask ->
                       logits, present.*.decoder.* (self-attention cache) and present.*.encoder.* (cross-attention
                       cache, computed once from the encoder output);
- `decoder_step.plan`  every later step: input_ids, encoder_attention_mask, past_key_values.* -> logits,
                       present.*.decoder.*.
The two decoder engines are the two branches of optimum's merged decoder, split apart at build time, because
TensorRT cannot build the merged graph's `If` (see docs/gpu.md).

Why torch for buffers (not cuda-python): beam search reorders the KV cache every step (`select_rows`), which is
a device-side gather; torch gives it (`index_select`), stream-ordered allocation (its caching allocator) and
dtype handling in one dependency that NVIDIA's `-pyt-python-py3` Triton container already ships. cuda-python
would need hand-written gather kernels and a memory pool. TensorRT writes into torch tensors through
`set_tensor_address`, on torch's current stream, so every launch is ordered without explicit synchronization.

Nothing here imports tensorrt or torch at module level: the pure planning functions (shapes, profiles,
geometry, metadata checks) are imported and unit-tested on machines without either.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from reviewsum_engine.artifacts import ENCODER_FILE, ModelArtifacts, load_artifacts
from reviewsum_engine.summarizer import OnnxSummarizer, Summarizer

ENGINE_FILES = {
    "encoder": "encoder.plan",
    "decoder_init": "decoder_init.plan",
    "decoder_step": "decoder_step.plan",
}
# Which artifacts file each engine was derived from (its SHA-256 is recorded in the engine's metadata).
ENGINE_SOURCES = {
    "encoder": ENCODER_FILE,
    "decoder_init": "decoder_model_merged.onnx",
    "decoder_step": "decoder_model_merged.onnx",
}

# Triton model config parameters read by the GPU repository's model.py.
BACKEND_PARAMETER = "backend"
ENGINES_DIR_PARAMETER = "engines_dir"
BACKENDS = ("onnxruntime", "tensorrt")

ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (min, opt, max)
Profile = Mapping[str, ShapeRange]  # input name -> range, one TensorRT optimization profile

_PRESENT = re.compile(r"present\.(\d+)\.(decoder|encoder)\.(key|value)")

# TensorRT DataType names -> torch dtype names (strings, so this table needs neither library).
_TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT32": "int32",
    "INT64": "int64",
    "INT8": "int8",
    "UINT8": "uint8",
    "BOOL": "bool",
}


class ProfileError(ValueError):
    """A batch does not fit any optimization profile of an engine: the engines were built for smaller limits."""


# ---------------------------------------------------------------- pure planning functions


@dataclass(frozen=True)
class DecoderGeometry:
    layers: int
    heads: int
    head_dim: int
    vocab_size: int
    d_model: int


def static_shape(shape: Sequence[int | str | None]) -> tuple[int, ...]:
    """A shape with every dynamic dimension (symbolic name, None or negative) as -1."""
    return tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape)


def decoder_geometry(io_shapes: Mapping[str, Sequence[int | str | None]]) -> DecoderGeometry:
    """Read layer count, heads, head size, vocabulary and model width from the first-step decoder's I/O shapes."""
    layers = {int(match[1]) for name in io_shapes if (match := _PRESENT.fullmatch(name)) and match[2] == "decoder"}
    if not layers or layers != set(range(len(layers))):
        raise ValueError(f"decoder has no consecutive present.N.decoder.* outputs: {sorted(io_shapes)}")
    cache = static_shape(io_shapes["present.0.decoder.key"])
    logits = static_shape(io_shapes["logits"])
    hidden = static_shape(io_shapes["encoder_hidden_states"])
    geometry = DecoderGeometry(len(layers), cache[1], cache[3], logits[-1], hidden[-1])
    if min(geometry.heads, geometry.head_dim, geometry.vocab_size, geometry.d_model) <= 0:
        raise ValueError(f"decoder geometry has dynamic model dimensions: {geometry}")
    return geometry


def cache_names(prefix: str, side: str, layers: int) -> list[str]:
    """`prefix.N.side.key`, `prefix.N.side.value` by layer, key first: the order the state tuples keep."""
    return [f"{prefix}.{layer}.{side}.{kind}" for layer in range(layers) for kind in ("key", "value")]


def encoder_output_shapes(rows: int, source_len: int, geometry: DecoderGeometry) -> dict[str, tuple[int, ...]]:
    return {"last_hidden_state": (rows, source_len, geometry.d_model)}


def decoder_output_shapes(
    rows: int, source_len: int, past_len: int, geometry: DecoderGeometry, *, first_step: bool
) -> dict[str, tuple[int, ...]]:
    """The outputs one decode step (one new token per row) allocates: logits, the grown self-attention cache,
    and on the first step the cross-attention cache (later steps reuse it, so the step engine does not output it)."""
    shapes: dict[str, tuple[int, ...]] = {"logits": (rows, 1, geometry.vocab_size)}
    self_shape = (rows, geometry.heads, past_len + 1, geometry.head_dim)
    shapes.update(dict.fromkeys(cache_names("present", "decoder", geometry.layers), self_shape))
    if first_step:
        cross_shape = (rows, geometry.heads, source_len, geometry.head_dim)
        shapes.update(dict.fromkeys(cache_names("present", "encoder", geometry.layers), cross_shape))
    return shapes


def profile_covers(profile: Profile, shapes: Mapping[str, Sequence[int]]) -> bool:
    missing = set(profile) - set(shapes)
    if missing:
        raise ValueError(f"no shape given for engine inputs {sorted(missing)}")
    for name, (low, _, high) in profile.items():
        shape = tuple(shapes[name])
        if len(shape) != len(low) or any(not lo <= dim <= hi for dim, lo, hi in zip(shape, low, high, strict=True)):
            return False
    return True


def select_profile(profiles: Sequence[Profile], shapes: Mapping[str, Sequence[int]]) -> int:
    """The index of the tightest profile whose [min, max] ranges hold every input shape.

    Tightest (smallest summed max volume) because TensorRT tunes kernels for a profile's `opt` shapes: a small
    batch runs on the latency profile (opt batch 1) even though the throughput profile also covers it.
    """
    covering = [index for index, profile in enumerate(profiles) if profile_covers(profile, shapes)]
    if not covering:
        described = ", ".join(f"{name}={list(shape)}" for name, shape in sorted(shapes.items()))
        raise ProfileError(
            f"no optimization profile covers {described}; rebuild the engines with larger limits "
            "(python -m reviewsum_build.tensorrt_engine --help)"
        )
    return min(covering, key=lambda index: (_max_volume(profiles[index]), index))


def _max_volume(profile: Profile) -> int:
    return sum(int(np.prod(high)) for _, _, high in profile.values())


def torch_dtype_name(tensorrt_dtype_name: str) -> str:
    """torch's name for a TensorRT DataType name ("HALF" -> "float16")."""
    try:
        return _TORCH_DTYPES[tensorrt_dtype_name]
    except KeyError:
        raise ValueError(f"engine tensor type {tensorrt_dtype_name} has no torch equivalent here") from None


# ---------------------------------------------------------------- engine metadata and environment


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def metadata_path(engine_path: Path) -> Path:
    """The JSON metadata file beside an engine: `encoder.plan` -> `encoder.json`."""
    return Path(engine_path).with_suffix(".json")


def read_engine_metadata(engines_dir: Path) -> dict[str, dict[str, Any]]:
    """Each engine's metadata by kind; raises FileNotFoundError naming what is missing."""
    engines_dir = Path(engines_dir)
    missing = [
        str(path)
        for name in ENGINE_FILES.values()
        for path in (engines_dir / name, metadata_path(engines_dir / name))
        if not path.is_file()
    ]
    if missing:
        raise FileNotFoundError(f"engines directory lacks {', '.join(missing)}")
    return {
        kind: json.loads(metadata_path(engines_dir / name).read_text(encoding="utf-8"))
        for kind, name in ENGINE_FILES.items()
    }


def engine_set_problems(
    metadata: Mapping[str, Mapping[str, Any]],
    source_hashes: Mapping[str, str],
    tensorrt_version: str | None = None,
) -> list[str]:
    """Why these engines must not serve these artifacts: built from other ONNX files (hashes by artifacts file
    name), or by another TensorRT version than the runtime's (a plan file only loads in the version that built it)."""
    problems = []
    for kind, meta in metadata.items():
        source = ENGINE_SOURCES[kind]
        if meta.get("source_onnx_sha256") != source_hashes.get(source):
            problems.append(f"{kind} engine was built from another {source} than the artifacts hold")
        built_with = meta.get("tensorrt_version")
        if tensorrt_version is not None and built_with != tensorrt_version:
            problems.append(f"{kind} engine was built by TensorRT {built_with}, this runtime is {tensorrt_version}")
    return problems


def detect_gpus() -> list[str]:
    """Names of the NVIDIA GPUs this host exposes, from the driver's /proc files or `nvidia-smi -L`; [] if none."""
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Model:"):
                names.append(line.split(":", 1)[1].strip())
    if names:
        return names
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = re.findall(r"^GPU \d+: (.+?)(?: \(UUID.*)?$", listing.stdout, flags=re.MULTILINE)
    return found if listing.returncode == 0 else []


def runtime_problems() -> list[str]:
    """What this host lacks to run the engines (empty when it can): a GPU, tensorrt, torch with CUDA."""
    problems = []
    if not detect_gpus():
        problems.append("no NVIDIA GPU found")
    if importlib.util.find_spec("tensorrt") is None:
        problems.append("the tensorrt Python package is not installed")
    if importlib.util.find_spec("torch") is None:
        problems.append("torch is not installed")
    elif not problems:
        import torch

        if not torch.cuda.is_available():
            problems.append(f"torch {torch.__version__} cannot use CUDA")
    return problems


def has_cuda() -> bool:
    """True on a host that can build and run TensorRT engines (what the GPU-only tests need)."""
    return not runtime_problems()


# ---------------------------------------------------------------- runners and the backend


class EngineRunner(Protocol):
    """Runs one engine (in CPU tests: one ONNX graph) on named tensors, allocating outputs by the shapes given."""

    @property
    def input_names(self) -> tuple[str, ...]: ...

    @property
    def io_shapes(self) -> Mapping[str, tuple[int, ...]]: ...

    def run(self, inputs: Mapping[str, Any], output_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]: ...


class TensorRTEngineRunner:
    """One deserialized engine with one execution context per optimization profile.

    One context per profile, created up front, because switching a context's profile is an asynchronous call that
    must be ordered with the launches; contexts are cheap next to the engine's weights.
    """

    def __init__(self, engine_path: Path, device: str = "cuda:0") -> None:
        import tensorrt as trt
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._trt_logger)
        with torch.cuda.device(self._device):
            engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if engine is None:
                raise RuntimeError(
                    f"TensorRT {trt.__version__} could not load {engine_path}: built by another TensorRT version "
                    "or for another GPU? Rebuild with python -m reviewsum_build.tensorrt_engine"
                )
            self._engine = engine
            names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
            inputs = [name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
            self._input_names = tuple(inputs)
            self._output_names = tuple(name for name in names if name not in inputs)
            self._dtypes = {
                name: getattr(torch, torch_dtype_name(engine.get_tensor_dtype(name).name)) for name in names
            }
            self._io_shapes = {name: tuple(engine.get_tensor_shape(name)) for name in names}
            self.profiles: list[dict[str, ShapeRange]] = [
                {name: _shape_range(engine.get_tensor_profile_shape(name, index)) for name in inputs}
                for index in range(engine.num_optimization_profiles)
            ]
            stream = torch.cuda.current_stream(self._device)
            self._contexts = []
            for index in range(engine.num_optimization_profiles):
                context = engine.create_execution_context()
                context.set_optimization_profile_async(index, stream.cuda_stream)
                self._contexts.append(context)
            stream.synchronize()

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._input_names

    @property
    def io_shapes(self) -> Mapping[str, tuple[int, ...]]:
        return self._io_shapes

    def run(self, inputs: Mapping[str, Any], output_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
        torch = self._torch
        if set(output_shapes) != set(self._output_names):
            raise ValueError(f"planned outputs {sorted(output_shapes)} differ from the engine's {self._output_names}")
        bound = {name: inputs[name].to(self._dtypes[name]).contiguous() for name in self._input_names}
        context = self._contexts[select_profile(self.profiles, {name: t.shape for name, t in bound.items()})]
        for name, tensor in bound.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name, shape in output_shapes.items():
            engine_shape = tuple(context.get_tensor_shape(name))
            if engine_shape != tuple(shape):
                raise RuntimeError(f"{name}: planned shape {tuple(shape)} but the engine computes {engine_shape}")
            outputs[name] = torch.empty(shape, dtype=self._dtypes[name], device=self._device)
            context.set_tensor_address(name, outputs[name].data_ptr())
        # The current stream orders this launch after the input copies and before any use of the outputs; the
        # caching allocator only reuses `bound`'s memory for work queued later on the same stream.
        if not context.execute_async_v3(torch.cuda.current_stream(self._device).cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return outputs


def _shape_range(shapes: Sequence[Sequence[int]]) -> ShapeRange:
    low, opt, high = (tuple(int(dim) for dim in shape) for shape in shapes)
    return low, opt, high


@dataclass(frozen=True)
class TensorRTDecoderState:
    encoder_hidden_states: Any | None  # [rows, source_len, d_model]; None once the cross-attention cache exists
    encoder_attention_mask: Any  # int64 [rows, source_len]
    self_attention: tuple[Any, ...]  # per layer key, value: [rows, heads, decoded_len, head_dim]
    cross_attention: tuple[Any, ...] | None  # per layer key, value; None until the first decode step

    @property
    def rows(self) -> int:
        return int(self.encoder_attention_mask.shape[0])


class TensorRTSeq2SeqBackend:
    """`Seq2SeqBackend` over three engine runners; `Summarizer` drives it with the shared greedy and beam search."""

    def __init__(
        self, encoder: EngineRunner, decoder_init: EngineRunner, decoder_step: EngineRunner, device: str = "cuda:0"
    ) -> None:
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._encoder, self._decoder_init, self._decoder_step = encoder, decoder_init, decoder_step
        self._geometry = decoder_geometry(decoder_init.io_shapes)
        self._past_self = cache_names("past_key_values", "decoder", self._geometry.layers)
        self._past_cross = cache_names("past_key_values", "encoder", self._geometry.layers)
        self._present_self = cache_names("present", "decoder", self._geometry.layers)
        self._present_cross = cache_names("present", "encoder", self._geometry.layers)
        # The split step graph drops encoder_hidden_states (the cross cache replaces it); keep it only if needed.
        self._step_needs_hidden = "encoder_hidden_states" in decoder_step.input_names

    @classmethod
    def from_engines(cls, engines_dir: Path, device: str = "cuda:0") -> TensorRTSeq2SeqBackend:
        runners = [TensorRTEngineRunner(Path(engines_dir) / ENGINE_FILES[kind], device) for kind in ENGINE_FILES]
        return cls(*runners, device=device)

    @property
    def vocab_size(self) -> int:
        return self._geometry.vocab_size

    @property
    def geometry(self) -> DecoderGeometry:
        return self._geometry

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> TensorRTDecoderState:
        ids, mask = self._to_device(input_ids), self._to_device(attention_mask)
        rows, source_len = ids.shape
        with self._device_scope():
            outputs = self._encoder.run(
                {"input_ids": ids, "attention_mask": mask}, encoder_output_shapes(rows, source_len, self._geometry)
            )
        return TensorRTDecoderState(outputs["last_hidden_state"], mask, (), None)

    def decode_step(
        self, state: TensorRTDecoderState, input_ids: np.ndarray
    ) -> tuple[np.ndarray, TensorRTDecoderState]:
        ids = self._to_device(input_ids).reshape(-1, 1)
        source_len = int(state.encoder_attention_mask.shape[1])
        with self._device_scope():
            if state.cross_attention is None:
                feeds = {
                    "input_ids": ids,
                    "encoder_hidden_states": state.encoder_hidden_states,
                    "encoder_attention_mask": state.encoder_attention_mask,
                }
                shapes = decoder_output_shapes(state.rows, source_len, 0, self._geometry, first_step=True)
                outputs = self._decoder_init.run(_select(feeds, self._decoder_init.input_names), shapes)
                cross = tuple(outputs[name] for name in self._present_cross)
                hidden = state.encoder_hidden_states if self._step_needs_hidden else None
            else:
                feeds = {"input_ids": ids, "encoder_attention_mask": state.encoder_attention_mask}
                feeds.update(zip(self._past_self, state.self_attention, strict=True))
                feeds.update(zip(self._past_cross, state.cross_attention, strict=True))
                if state.encoder_hidden_states is not None:
                    feeds["encoder_hidden_states"] = state.encoder_hidden_states
                past_len = int(state.self_attention[0].shape[2])
                shapes = decoder_output_shapes(state.rows, source_len, past_len, self._geometry, first_step=False)
                outputs = self._decoder_step.run(_select(feeds, self._decoder_step.input_names), shapes)
                cross, hidden = state.cross_attention, state.encoder_hidden_states
            # The search code is numpy on the host: one copy of the last position's logits per step.
            logits = outputs["logits"][:, -1, :].float().cpu().numpy()
        self_attention = tuple(outputs[name] for name in self._present_self)
        return logits, TensorRTDecoderState(hidden, state.encoder_attention_mask, self_attention, cross)

    def select_rows(
        self, state: TensorRTDecoderState, rows: np.ndarray, encoder_rows: np.ndarray | None = None
    ) -> TensorRTDecoderState:
        rows = np.asarray(rows, dtype=np.int64)
        encoder_rows = rows if encoder_rows is None else np.asarray(encoder_rows, dtype=np.int64)
        hidden, mask, cross = state.encoder_hidden_states, state.encoder_attention_mask, state.cross_attention
        self_attention = state.self_attention
        with self._device_scope():
            if not _is_identity(encoder_rows, state.rows):
                index = self._to_device(encoder_rows)
                mask = mask.index_select(0, index)
                hidden = None if hidden is None else hidden.index_select(0, index)
                cross = None if cross is None else tuple(t.index_select(0, index) for t in cross)
            if not _is_identity(rows, state.rows):
                index = self._to_device(rows)
                self_attention = tuple(t.index_select(0, index) for t in self_attention)
        return TensorRTDecoderState(hidden, mask, self_attention, cross)

    def _to_device(self, array: np.ndarray) -> Any:
        host = self._torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
        return host.to(self._device, non_blocking=False)

    def _device_scope(self) -> contextlib.AbstractContextManager[Any]:
        if self._device.type == "cuda":
            return self._torch.cuda.device(self._device)
        return contextlib.nullcontext()


def _select(feeds: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    missing = [name for name in names if name not in feeds]
    if missing:
        raise ValueError(f"engine needs inputs the backend does not have: {missing}")
    return {name: feeds[name] for name in names}


def _is_identity(rows: np.ndarray, current_rows: int) -> bool:
    return len(rows) == current_rows and bool(np.array_equal(rows, np.arange(current_rows)))


# ---------------------------------------------------------------- summarizers


def source_hashes(artifacts: ModelArtifacts) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in (artifacts.encoder_path, artifacts.decoder_path)}


class TensorRTSummarizer(Summarizer):
    """The summarizer over TensorRT engines built from the artifacts in `artifacts_dir` (tokenizer and rules
    come from the artifacts; refuses engines built from another export or by another TensorRT version)."""

    def __init__(self, artifacts_dir: Path, engines_dir: Path, device: str = "cuda:0") -> None:
        import tensorrt as trt

        artifacts = load_artifacts(Path(artifacts_dir))
        problems = engine_set_problems(read_engine_metadata(engines_dir), source_hashes(artifacts), trt.__version__)
        if problems:
            raise ValueError(f"engines in {engines_dir} cannot serve {artifacts_dir}: {'; '.join(problems)}")
        self.backend = TensorRTSeq2SeqBackend.from_engines(Path(engines_dir), device)
        super().__init__(artifacts, self.backend)


SummarizerFactory = Callable[..., Summarizer]


def resolve_model_path(value: str, version_dir: Path) -> Path:
    """A path from a model config parameter: absolute, or relative to the model's version directory."""
    path = Path(value)
    return path if path.is_absolute() else Path(version_dir) / path


def summarizer_factory(parameters: Mapping[str, str], version_dir: Path, device_id: int) -> SummarizerFactory:
    """What the GPU repository's model.py uses in place of `OnnxSummarizer(artifacts_dir, intra_op_threads=...)`,
    chosen by the config parameter `backend` (onnxruntime | tensorrt)."""
    backend = parameters.get(BACKEND_PARAMETER) or "onnxruntime"
    if backend == "onnxruntime":
        return OnnxSummarizer
    if backend != "tensorrt":
        raise ValueError(f"config parameter {BACKEND_PARAMETER}={backend!r}; expected one of {BACKENDS}")
    engines_value = parameters.get(ENGINES_DIR_PARAMETER)
    if not engines_value:
        raise ValueError(f"backend tensorrt needs the config parameter {ENGINES_DIR_PARAMETER}")
    engines_dir = resolve_model_path(engines_value, version_dir)

    def make(artifacts_dir: Path, intra_op_threads: int | None = None, allow_spinning: bool = True) -> Summarizer:
        del intra_op_threads, allow_spinning  # ONNX Runtime settings; TensorRT runs on the GPU
        return TensorRTSummarizer(artifacts_dir, engines_dir, device=f"cuda:{device_id}")

    return make


def iter_engine_paths(engines_dir: Path) -> Iterator[Path]:
    for name in ENGINE_FILES.values():
        yield Path(engines_dir) / name
        yield metadata_path(Path(engines_dir) / name)
