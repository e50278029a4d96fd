"""Request handling shared by the Triton Python models `summarizer` and `summarizer_stream`.

Plain Python and numpy, no `triton_python_backend_utils`: each model.py hands in its request's input arrays
(through `get_input`) and keeps every Triton call (responses, errors, senders) to itself, so this module
imports anywhere and the models' own tests can run it against a stand-in for the backend utils.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from reviewsum_engine.generation import GenerationOptions, InvalidOptionsError
from reviewsum_engine.summarizer import OnnxSummarizer, Summarizer

# is_cancelled() is an IPC round trip to the server; polling it for every row at every decode step would
# cost more than the step itself on small models, so each request's answer is reused for this long.
CANCEL_POLL_INTERVAL_S = 0.02

# Optional input -> (GenerationOptions field, Python type); absent inputs keep the engine defaults.
OptionInputs = Mapping[str, tuple[str, type]]
# An input's array ([batch, 1]) by name, or None when the request does not carry it.
GetInput = Callable[[str], np.ndarray | None]


class RequestError(Exception):
    """A request-level problem reported to that request's client only."""


@dataclass
class ParsedRequest:
    texts: list[str]
    options: list[GenerationOptions]


@dataclass(frozen=True)
class ModelSettings:
    """What `initialize(args)` needs from Triton's arguments and the model config's parameters."""

    config: dict[str, Any]
    parameters: dict[str, str]
    artifacts_dir: Path
    intra_op_threads: int | None
    allow_spinning: bool = True

    @property
    def decoupled(self) -> bool:
        return bool(self.config.get("model_transaction_policy", {}).get("decoupled", False))

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ModelSettings:
        """`artifacts_dir` may be absolute or relative to the model's version directory (e.g. `artifacts`, or
        `../../summarizer/1/artifacts` for a model sharing the summarizer's artifacts)."""
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        artifacts_dir = Path(parameters.get("artifacts_dir") or "artifacts")
        if not artifacts_dir.is_absolute():
            artifacts_dir = version_dir / artifacts_dir
        threads = int(parameters.get("intra_op_threads") or 0) or None
        allow_spinning = parameters.get("ort_allow_spinning", "1") != "0"
        return cls(config, parameters, artifacts_dir, threads, allow_spinning)

    def checkpoint_mismatch(self, model_name: str, model_version: str) -> str | None:
        """A warning when the config advertises another checkpoint than the artifacts hold, else None."""
        configured = (self.parameters.get("reviewsum_model_name"), self.parameters.get("reviewsum_model_version"))
        loaded = (model_name, model_version)
        if configured == loaded:
            return None
        return (
            f"config.pbtxt advertises {configured} but the artifacts are {loaded}; "
            "re-render the repository with reviewsum_build.model_repository"
        )


class CancellationProbe:
    """Per-request `is_cancelled()` with a short cache, so rows of one request and fast steps share a call."""

    def __init__(self, request: Any, interval_s: float = CANCEL_POLL_INTERVAL_S) -> None:
        self._request = request
        self._interval_s = interval_s
        self._checked_at = float("-inf")
        self._cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked_at >= self._interval_s:
            self._cancelled = bool(self._request.is_cancelled())
            self._checked_at = now
        return self._cancelled


def parse_request(
    get_input: GetInput,
    option_inputs: OptionInputs,
    check_options: Callable[[GenerationOptions], None],
) -> ParsedRequest:
    """Validate one request's rows: TEXT [rows, 1] of non-empty UTF-8, each optional input [rows, 1], and the
    options of every row (`check_options` raises InvalidOptionsError). Raises RequestError naming the input."""
    texts = read_texts(get_input("TEXT"))
    values: dict[str, list[Any]] = {}
    for input_name, (field, kind) in option_inputs.items():
        column = read_optional(get_input(input_name), input_name, len(texts))
        if column is not None:
            values[field] = [kind(value) for value in column]
    options = []
    for row in range(len(texts)):
        option = GenerationOptions(**{field: column[row] for field, column in values.items()})
        try:
            check_options(option)
        except InvalidOptionsError as error:
            names = (name for name, (field, _) in option_inputs.items() if field == error.field)
            input_name = next(names, error.field.upper())
            raise RequestError(f"{input_name}: {error}") from error
        options.append(option)
    return ParsedRequest(texts, options)


def read_texts(array: np.ndarray | None) -> list[str]:
    if array is None:
        raise RequestError("TEXT is required")
    if array.ndim != 2 or array.shape[1] != 1 or array.shape[0] == 0:
        raise RequestError(f"TEXT must have shape [batch, 1], got {list(array.shape)}")
    texts = []
    for value in array[:, 0]:
        try:
            text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as error:
            raise RequestError(f"TEXT is not valid UTF-8: {error}") from error
        if not text.strip():
            raise RequestError("TEXT must not be empty")
        texts.append(text)
    return texts


def read_optional(array: np.ndarray | None, name: str, rows: int) -> list[Any] | None:
    if array is None:
        return None
    if array.shape != (rows, 1):
        raise RequestError(f"{name} must have shape [{rows}, 1] like TEXT, got {list(array.shape)}")
    return array[:, 0].tolist()


@dataclass(frozen=True)
class LoadedModel:
    engine: Summarizer
    output_dtypes: dict[str, Any]
    settings: ModelSettings


class EngineFactory(Protocol):
    def __call__(self, artifacts_dir: Path, *, intra_op_threads: int | None, allow_spinning: bool) -> Summarizer: ...


_engine_factory: EngineFactory = OnnxSummarizer


def use_engine_factory(factory: EngineFactory) -> None:
    """Make `load_model` build its engine with `factory` (the GPU repository's model.py picks TensorRT).

    Module state is enough: every Triton model instance runs in a stub process of its own.
    """
    global _engine_factory
    _engine_factory = factory


def load_model(args: Mapping[str, str], label: str, output_names: Sequence[str], pb_utils: Any) -> LoadedModel:
    """What both Triton models do in `initialize`: load the engine once, read output dtypes from the config,
    warn when the config names another checkpoint than the artifacts, and log the load time.

    `pb_utils` is passed in because it only exists inside Triton's Python stub.
    """
    started = time.perf_counter()
    settings = ModelSettings.from_args(args)
    engine = _engine_factory(
        settings.artifacts_dir, intra_op_threads=settings.intra_op_threads, allow_spinning=settings.allow_spinning
    )
    output_dtypes = {
        name: pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(settings.config, name)["data_type"])
        for name in output_names
    }
    mismatch = settings.checkpoint_mismatch(engine.model_name, engine.model_version)
    if mismatch:
        pb_utils.Logger.log_warn(f"{label}: {mismatch}")
    pb_utils.Logger.log_info(
        f"{label}: loaded {engine.model_name} version {engine.model_version} from "
        f"{settings.artifacts_dir} (intra_op_threads={settings.intra_op_threads or 'default'}, "
        f"spinning={'on' if settings.allow_spinning else 'off'}) "
        f"in {time.perf_counter() - started:.2f}s"
    )
    return LoadedModel(engine, output_dtypes, settings)
