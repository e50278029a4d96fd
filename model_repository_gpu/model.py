"""GPU variant of a ReviewSum Triton model, rendered by `reviewsum_build.model_repository.write_gpu_repository`.

`base_model.py` beside this file is the CPU repository's model.py for the same model, copied verbatim: request
parsing, dynamic batching, per-request errors, cancellation and streaming exist in one place only. This file
changes one thing, the engine: the config parameter `backend` picks `onnxruntime` or `tensorrt`, and a KIND_GPU
instance runs TensorRT on the device Triton assigned it (`model_instance_device_id`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from reviewsum_engine.tensorrt_backend import summarizer_factory
from reviewsum_engine.triton_support import ModelSettings, use_engine_factory

BASE_MODEL_FILE = "base_model.py"


def _load_base_model() -> Any:
    path = Path(__file__).with_name(BASE_MODEL_FILE)
    name = f"reviewsum_{path.parent.parent.name}_base_model"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


_base = _load_base_model()


class TritonPythonModel(_base.TritonPythonModel):  # type: ignore[name-defined,misc]
    def initialize(self, args: dict[str, str]) -> None:
        settings = ModelSettings.from_args(args)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        device_id = int(args.get("model_instance_device_id") or 0)
        # The base model's `load_model` builds the engine; each Triton model instance runs in its own stub
        # process, so setting the factory here picks the configured backend for this instance only.
        use_engine_factory(summarizer_factory(settings.parameters, version_dir, device_id))
        super().initialize(args)
