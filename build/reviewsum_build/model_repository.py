"""The one source of truth for the Triton models `summarizer` and `summarizer_stream`, rendered to config.pbtxt.

`summarizer` answers each request once (greedy or beam search); `summarizer_stream` is decoupled and streams
greedy text deltas. Both serve the same artifacts with the same parameters and instance settings.
`model_repository/<model>/config.pbtxt` is committed as `render_config()` / `render_stream_config()` with
default arguments; `python -m reviewsum_build.model_repository check` (and a unit test) fail when a committed
file differs, and `... write` regenerates both. `write_repository()` lays out a complete repository:

    REPO/summarizer/config.pbtxt
    REPO/summarizer/1/model.py
    REPO/summarizer/1/artifacts/        (artifacts="copy" or "symlink"; "reference" uses an absolute path)
    REPO/summarizer_stream/config.pbtxt (artifacts: the same absolute path, or ../../summarizer/1/artifacts)
    REPO/summarizer_stream/1/model.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

TRITON_MODEL_NAME = "summarizer"
STREAM_MODEL_NAME = "summarizer_stream"
TRITON_MODEL_VERSION = "1"
DEFAULT_ARTIFACTS_DIR = "artifacts"
# The stream model serves the summarizer's artifacts; relative paths resolve against its version directory.
STREAM_DEFAULT_ARTIFACTS_DIR = f"../../{TRITON_MODEL_NAME}/{TRITON_MODEL_VERSION}/{DEFAULT_ARTIFACTS_DIR}"
REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_REPOSITORY = REPO_ROOT / "model_repository"
COMMITTED_MODEL_DIR = COMMITTED_REPOSITORY / TRITON_MODEL_NAME
COMMITTED_CONFIG = COMMITTED_MODEL_DIR / "config.pbtxt"
MODEL_PY = COMMITTED_MODEL_DIR / TRITON_MODEL_VERSION / "model.py"
COMMITTED_STREAM_MODEL_DIR = COMMITTED_REPOSITORY / STREAM_MODEL_NAME
COMMITTED_STREAM_CONFIG = COMMITTED_STREAM_MODEL_DIR / "config.pbtxt"
STREAM_MODEL_PY = COMMITTED_STREAM_MODEL_DIR / TRITON_MODEL_VERSION / "model.py"

FIX_COMMAND = "python -m reviewsum_build.model_repository write"

ArtifactsMode = Literal["reference", "copy", "symlink"]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton TYPE_* name
    dims: tuple[int, ...] = (1,)
    optional: bool = False


@dataclass(frozen=True)
class ModelSpec:
    name: str = TRITON_MODEL_NAME
    # Decoupled: any number of responses per request, the last flagged TRITONSERVER_RESPONSE_COMPLETE_FINAL;
    # clients must use gRPC streaming (ModelStreamInfer).
    decoupled: bool = False
    max_batch_size: int = 32
    # Short: a request waits at most 2 ms for others to share its encoder pass and decode steps.
    max_queue_delay_microseconds: int = 2000
    # 0 = no queue policy. With `default_queue_policy { max_queue_size }` this Triton build stalled requests
    # ~0.5 s at low load (docs/benchmarks.md), so the gateway's admission control bounds the queue instead
    # (reviewsum_server.admission). A deployment with several gateways per Triton may set a backstop here.
    max_queue_size: int = 0
    # Off only to measure what the dynamic batcher buys (benchmarks); then each request runs alone.
    dynamic_batching: bool = True
    instance_count: int = 1
    inputs: tuple[TensorSpec, ...] = (
        TensorSpec("TEXT", "TYPE_STRING"),
        TensorSpec("MAX_NEW_TOKENS", "TYPE_INT32", optional=True),
        TensorSpec("NUM_BEAMS", "TYPE_INT32", optional=True),
        TensorSpec("LENGTH_PENALTY", "TYPE_FP32", optional=True),
        TensorSpec("NO_REPEAT_NGRAM_SIZE", "TYPE_INT32", optional=True),
    )
    outputs: tuple[TensorSpec, ...] = (
        TensorSpec("SUMMARY", "TYPE_STRING"),
        TensorSpec("INPUT_TOKENS", "TYPE_INT32"),
        TensorSpec("OUTPUT_TOKENS", "TYPE_INT32"),
        TensorSpec("FINISH_REASON", "TYPE_STRING"),
    )
    parameters: dict[str, str] = field(default_factory=dict)


STREAM_INPUTS = (
    TensorSpec("TEXT", "TYPE_STRING"),
    TensorSpec("MAX_NEW_TOKENS", "TYPE_INT32", optional=True),
    TensorSpec("NO_REPEAT_NGRAM_SIZE", "TYPE_INT32", optional=True),
)
STREAM_OUTPUTS = (
    TensorSpec("TEXT_DELTA", "TYPE_STRING"),
    TensorSpec("FINISH_REASON", "TYPE_STRING"),
    TensorSpec("INPUT_TOKENS", "TYPE_INT32"),
    TensorSpec("OUTPUT_TOKENS", "TYPE_INT32"),
)


def shared_parameters(
    artifacts_dir: str, intra_op_threads: int | None, model_name: str, model_version: str
) -> dict[str, str]:
    """The parameters both models read. `model_name`/`model_version` name the ReviewSum checkpoint being
    served (from the artifacts' reviewsum.json) for clients that read the Triton model config."""
    return {
        "artifacts_dir": artifacts_dir,
        # "0" leaves ONNX Runtime's default: one thread per physical core.
        "intra_op_threads": str(intra_op_threads or 0),
        # "0": ONNX Runtime's idle threads sleep instead of spinning, leaving the cores to the request path.
        "ort_allow_spinning": "0",
        "reviewsum_model_name": model_name,
        "reviewsum_model_version": model_version,
    }


def model_spec(
    artifacts_dir: str = DEFAULT_ARTIFACTS_DIR,
    intra_op_threads: int | None = None,
    model_name: str = "reviewsum",
    model_version: str = "1",
) -> ModelSpec:
    """The summarizer's spec: one response per request."""
    return ModelSpec(parameters=shared_parameters(artifacts_dir, intra_op_threads, model_name, model_version))


def stream_model_spec(
    artifacts_dir: str = STREAM_DEFAULT_ARTIFACTS_DIR,
    intra_op_threads: int | None = None,
    model_name: str = "reviewsum",
    model_version: str = "1",
) -> ModelSpec:
    """The streaming model's spec: decoupled, greedy only, batched like the summarizer so that concurrent
    streams share decode steps."""
    return ModelSpec(
        name=STREAM_MODEL_NAME,
        decoupled=True,
        inputs=STREAM_INPUTS,
        outputs=STREAM_OUTPUTS,
        parameters=shared_parameters(artifacts_dir, intra_op_threads, model_name, model_version),
    )


def render_config(
    artifacts_dir: str = DEFAULT_ARTIFACTS_DIR,
    intra_op_threads: int | None = None,
    model_name: str = "reviewsum",
    model_version: str = "1",
) -> str:
    return render_spec(model_spec(artifacts_dir, intra_op_threads, model_name, model_version))


def render_stream_config(
    artifacts_dir: str = STREAM_DEFAULT_ARTIFACTS_DIR,
    intra_op_threads: int | None = None,
    model_name: str = "reviewsum",
    model_version: str = "1",
) -> str:
    return render_spec(stream_model_spec(artifacts_dir, intra_op_threads, model_name, model_version))


def render_spec(spec: ModelSpec) -> str:
    lines = [
        "# Generated by `python -m reviewsum_build.model_repository write` from reviewsum_build/model_repository.py.",
        "# Do not edit by hand: `python -m reviewsum_build.model_repository check` fails when they differ.",
        f'name: "{spec.name}"',
        'backend: "python"',
        f"max_batch_size: {spec.max_batch_size}",
        "version_policy: { latest: { num_versions: 1 } }",
    ]
    if spec.decoupled:
        lines.append("model_transaction_policy { decoupled: true }")
    lines += [_render_tensor("input", tensor) for tensor in spec.inputs]
    lines += [_render_tensor("output", tensor) for tensor in spec.outputs]
    if spec.dynamic_batching:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {spec.max_queue_delay_microseconds}"]
        if spec.max_queue_size > 0:
            lines.append(f"  default_queue_policy {{ max_queue_size: {spec.max_queue_size} }}")
        lines.append("}")
    lines.append(f"instance_group [ {{ kind: KIND_CPU count: {spec.instance_count} }} ]")
    lines += [
        f"parameters {{ key: {_quote(key)} value {{ string_value: {_quote(value)} }} }}"
        for key, value in sorted(spec.parameters.items())
    ]
    return "\n".join(lines) + "\n"


def _render_tensor(kind: str, tensor: TensorSpec) -> str:
    dims = ", ".join(str(dim) for dim in tensor.dims)
    optional = " optional: true" if tensor.optional else ""
    return f'{kind} {{ name: "{tensor.name}" data_type: {tensor.data_type} dims: [ {dims} ]{optional} }}'


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def write_repository(
    repo_dir: Path,
    artifacts_dir: Path | None,
    *,
    artifacts: ArtifactsMode = "reference",
    intra_op_threads: int | None = None,
    tuning: Mapping[str, Any] | None = None,
) -> Path:
    """Lay out a servable repository with both models in `repo_dir` (returned); `artifacts_dir=None` leaves the
    artifacts to be put at `summarizer/1/artifacts` later. "reference" points both configs at `artifacts_dir`
    by absolute path, "copy" makes the repository self-contained (e.g. for NVIDIA's container), "symlink"
    links it in; with either, the stream model reads `../../summarizer/1/artifacts`. `tuning` overrides
    `ModelSpec` batching fields of both models, e.g. {"dynamic_batching": False} for a benchmark."""
    repo_dir = Path(repo_dir)
    version_dir, stream_version_dir = _version_dirs(repo_dir)
    for directory, model_py in ((version_dir, MODEL_PY), (stream_version_dir, STREAM_MODEL_PY)):
        shutil.copy2(model_py, directory / "model.py")
    configured_dir, stream_configured_dir = DEFAULT_ARTIFACTS_DIR, STREAM_DEFAULT_ARTIFACTS_DIR
    if artifacts_dir is not None:
        configured_dir = _place_artifacts(Path(artifacts_dir).resolve(), version_dir / DEFAULT_ARTIFACTS_DIR, artifacts)
        if artifacts == "reference":  # both models read the same absolute path
            stream_configured_dir = configured_dir
    checkpoint = _checkpoint_of(artifacts_dir)
    specs = (
        model_spec(configured_dir, intra_op_threads, **checkpoint),
        stream_model_spec(stream_configured_dir, intra_op_threads, **checkpoint),
    )
    configs = {spec.name: render_spec(replace(spec, **(tuning or {}))) for spec in specs}
    for name, config in configs.items():
        (repo_dir / name / "config.pbtxt").write_text(config, encoding="utf-8")
    return repo_dir


def _version_dirs(repo_dir: Path) -> tuple[Path, Path]:
    """The summarizer's and the stream model's version directories, created."""
    dirs = (repo_dir / TRITON_MODEL_NAME / TRITON_MODEL_VERSION, repo_dir / STREAM_MODEL_NAME / TRITON_MODEL_VERSION)
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True)
    return dirs


def _checkpoint_of(artifacts_dir: Path | None) -> dict[str, str]:
    """The served checkpoint's name and version (from the artifacts' reviewsum.json) for the configs."""
    metadata: dict[str, str] = {}
    if artifacts_dir is not None:
        metadata = json.loads((Path(artifacts_dir) / "reviewsum.json").read_text(encoding="utf-8"))
    return {
        "model_name": str(metadata.get("model_name", "reviewsum")),
        "model_version": str(metadata.get("model_version", "1")),
    }


def _clear(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)


def _place_artifacts(source: Path, target: Path, mode: ArtifactsMode) -> str:
    if mode == "reference":
        return str(source)
    _clear(target)
    if mode == "copy":
        shutil.copytree(source, target)
    elif mode == "symlink":
        target.symlink_to(source, target_is_directory=True)
    else:
        raise ValueError(f"unknown artifacts mode {mode!r}")
    return DEFAULT_ARTIFACTS_DIR


def committed_configs() -> dict[Path, str]:
    """Each committed config.pbtxt and what it must contain: it names the committed artifacts' checkpoint."""
    shipped = COMMITTED_CONFIG.parent / TRITON_MODEL_VERSION / DEFAULT_ARTIFACTS_DIR
    checkpoint = _checkpoint_of(shipped if (shipped / "reviewsum.json").is_file() else None)
    return {
        COMMITTED_CONFIG: render_config(**checkpoint),
        COMMITTED_STREAM_CONFIG: render_stream_config(**checkpoint),
    }


def stale_committed_configs() -> list[Path]:
    return [
        path
        for path, rendered in committed_configs().items()
        if not path.is_file() or path.read_text(encoding="utf-8") != rendered
    ]


def check_committed_config() -> bool:
    return not stale_committed_configs()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render and check the Triton summarizer models' configurations.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="fail if a committed config.pbtxt differs from the rendered one")
    commands.add_parser("write", help="re-render the committed config.pbtxt files")
    build = commands.add_parser("build", help="write a complete model repository")
    build.add_argument("repo_dir", type=Path)
    build.add_argument("--artifacts", type=Path, default=None, help="artifacts directory to serve")
    build.add_argument("--mode", choices=["reference", "copy", "symlink"], default="copy")
    build.add_argument("--intra-op-threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "check":
        stale = stale_committed_configs()
        for path in stale:
            print(f"{path} differs from its rendered config; run `{FIX_COMMAND}`")
        if stale:
            return 1
        print(f"{', '.join(str(path) for path in committed_configs())} are up to date")
    elif args.command == "write":
        for path, rendered in committed_configs().items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered, encoding="utf-8")
            print(f"wrote {path}")
    else:
        write_repository(args.repo_dir, args.artifacts, artifacts=args.mode, intra_op_threads=args.intra_op_threads)
        print(f"wrote model repository {args.repo_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---- GPU variant: same models, tensors and batching, KIND_GPU instances, engine chosen by `backend` ----
#
# Added without changing anything above: the CPU configs stay byte-identical (`check` still compares them).
# Each GPU model directory holds `model.py` (model_repository_gpu/model.py, which picks the engine) and
# `base_model.py` (the CPU model.py, verbatim), so request handling is never duplicated:
#
#     REPO/summarizer/config.pbtxt              backend parameter, engines_dir, instance_group KIND_GPU
#     REPO/summarizer/1/{model.py,base_model.py}
#     REPO/summarizer/1/artifacts/              tokenizer, configs and ONNX graphs (ONNX Runtime fallback)
#     REPO/summarizer/1/engines/                encoder.plan, decoder_init.plan, decoder_step.plan + .json
#     REPO/summarizer_stream/...                the same, reading ../../summarizer/1/{artifacts,engines}

GPU_TEMPLATE_DIR = REPO_ROOT / "model_repository_gpu"
GPU_MODEL_PY = GPU_TEMPLATE_DIR / "model.py"
GPU_BASE_MODEL_FILE = "base_model.py"
DEFAULT_ENGINES_DIR = "engines"
STREAM_DEFAULT_ENGINES_DIR = f"../../{TRITON_MODEL_NAME}/{TRITON_MODEL_VERSION}/{DEFAULT_ENGINES_DIR}"
GpuBackend = Literal["tensorrt", "onnxruntime"]
InstanceKind = Literal["KIND_GPU", "KIND_CPU"]


def gpu_model_spec(spec: ModelSpec, backend: GpuBackend, engines_dir: str, instance_count: int = 1) -> ModelSpec:
    """`spec` (a CPU model's spec) with the GPU parameters: `backend` and where the engines are ("" = none:
    left out, because an empty string_value vanishes from the JSON config Triton hands the model)."""
    parameters = {**spec.parameters, "backend": backend}
    if engines_dir:
        parameters["engines_dir"] = engines_dir
    return replace(spec, parameters=parameters, instance_count=instance_count)


def render_gpu_spec(spec: ModelSpec, instance_kind: InstanceKind = "KIND_GPU") -> str:
    """`render_spec` with a GPU header and instance kind. KIND_CPU exists for tests on machines without a GPU."""
    cpu_group = f"instance_group [ {{ kind: KIND_CPU count: {spec.instance_count} }} ]"
    lines = render_spec(spec).splitlines()
    if lines.count(cpu_group) != 1 or not lines[0].startswith("# Generated"):
        raise RuntimeError("render_spec's layout changed; update render_gpu_spec")
    lines[:2] = [
        "# Generated by reviewsum_build.model_repository.write_gpu_repository (GPU variant of the committed",
        "# model_repository/ config, same tensors and batching). Do not edit: re-render with write_gpu_repository.",
    ]
    lines[lines.index(cpu_group)] = f"instance_group [ {{ kind: {instance_kind} count: {spec.instance_count} }} ]"
    return "\n".join(lines) + "\n"


def write_gpu_repository(
    repo_dir: Path,
    engines_dir: Path | None,
    artifacts_dir: Path,
    instance_count: int = 1,
    *,
    backend: GpuBackend = "tensorrt",
    mode: ArtifactsMode = "copy",
    tuning: Mapping[str, Any] | None = None,
    instance_kind: InstanceKind = "KIND_GPU",
) -> Path:
    """Lay out the GPU repository in `repo_dir` (returned): both models, KIND_GPU instances (`instance_count`
    per GPU), the artifacts (the tokenizer, and the ONNX Runtime fallback) and the engines placed by `mode` as
    in `write_repository` ("copy" makes it self-contained for NVIDIA's container). `engines_dir` may be None
    only with backend="onnxruntime"."""
    if backend == "tensorrt" and engines_dir is None:
        raise ValueError("backend tensorrt needs engines_dir (python -m reviewsum_build.tensorrt_engine builds it)")
    repo_dir = Path(repo_dir)
    version_dir, stream_version_dir = _version_dirs(repo_dir)
    for directory, base_model_py in ((version_dir, MODEL_PY), (stream_version_dir, STREAM_MODEL_PY)):
        shutil.copy2(GPU_MODEL_PY, directory / "model.py")
        shutil.copy2(base_model_py, directory / GPU_BASE_MODEL_FILE)
    artifacts_value = _place_artifacts(Path(artifacts_dir).resolve(), version_dir / DEFAULT_ARTIFACTS_DIR, mode)
    stream_artifacts_value = artifacts_value if mode == "reference" else STREAM_DEFAULT_ARTIFACTS_DIR
    engines_value = stream_engines_value = ""
    if engines_dir is not None:
        engines_value = _place_engines(Path(engines_dir).resolve(), version_dir / DEFAULT_ENGINES_DIR, mode)
        stream_engines_value = engines_value if mode == "reference" else STREAM_DEFAULT_ENGINES_DIR
    checkpoint = _checkpoint_of(artifacts_dir)
    specs = (
        gpu_model_spec(model_spec(artifacts_value, None, **checkpoint), backend, engines_value, instance_count),
        gpu_model_spec(
            stream_model_spec(stream_artifacts_value, None, **checkpoint), backend, stream_engines_value, instance_count
        ),
    )
    for spec in specs:
        rendered = render_gpu_spec(replace(spec, **(tuning or {})), instance_kind)
        (repo_dir / spec.name / "config.pbtxt").write_text(rendered, encoding="utf-8")
    return repo_dir


def _place_engines(source: Path, target: Path, mode: ArtifactsMode) -> str:
    """Put the engines and their metadata (not the build's graphs or timing cache) where the models read them."""
    from reviewsum_engine.tensorrt_backend import iter_engine_paths

    if mode == "reference":
        return str(source)
    _clear(target)
    if mode == "symlink":
        target.symlink_to(source, target_is_directory=True)
    elif mode == "copy":
        target.mkdir(parents=True)
        for path in iter_engine_paths(source):
            shutil.copy2(path, target / path.name)
    else:
        raise ValueError(f"unknown engines mode {mode!r}")
    return DEFAULT_ENGINES_DIR
