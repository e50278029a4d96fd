"""Export a trained BART summarizer to the ONNX artifacts directory the serving engine reads.

Layout written to `out_dir` (see `reviewsum_engine.artifacts`):
- `encoder_model.onnx` and `decoder_model_merged.onnx` (optimum's merged decoder: one graph with a
  `use_cache_branch` switch, so the decoder weights are stored once instead of twice);
- `tokenizer.json`, `tokenizer_config.json`, `config.json`, `generation_config.json`;
- `reviewsum.json`: model name, version, languages, max_input_tokens and the source checkpoint.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model_merged.onnx"
METADATA_FILE = "reviewsum.json"
KEPT_ONNX_FILES = (ENCODER_FILE, DECODER_FILE)
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json")
EXPORT_TASK = "text2text-generation-with-past"
DEFAULT_MODEL_NAME = "reviewsum"
DEFAULT_MODEL_VERSION = "1"
DEFAULT_LANGUAGES = ("zh", "en")
DEFAULT_MAX_INPUT_TOKENS = 256


def export_onnx(
    checkpoint_dir: Path,
    out_dir: Path,
    quantize: str | None = None,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    model_version: str = DEFAULT_MODEL_VERSION,
    languages: tuple[str, ...] = DEFAULT_LANGUAGES,
    max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS,
    validate: bool = True,
) -> Path:
    """Export `checkpoint_dir` (a `BartForConditionalGeneration` save) into `out_dir`; returns `out_dir`.

    `quantize="int8"` applies onnxruntime dynamic int8 quantization to both graphs (weights int8,
    activations quantized on the fly): smaller and usually faster on CPU, at a small accuracy cost.
    `validate` runs optimum's numeric comparison against PyTorch (costs a few seconds).
    """
    if quantize not in (None, "int8"):
        raise ValueError(f"unsupported quantization {quantize!r}; expected None or 'int8'")
    checkpoint_dir = Path(checkpoint_dir).resolve()
    out_dir = Path(out_dir)
    _check_checkpoint(checkpoint_dir, max_input_tokens)
    out_dir.mkdir(parents=True, exist_ok=True)
    # optimum writes four graphs; export into a scratch dir and move only the two we serve.
    with tempfile.TemporaryDirectory(prefix="reviewsum-export-") as scratch:
        _run_optimum_export(checkpoint_dir, Path(scratch), validate)
        for name in KEPT_ONNX_FILES:
            _move_onnx(Path(scratch) / name, out_dir / name)
    if quantize == "int8":
        for name in KEPT_ONNX_FILES:
            _quantize_int8_in_place(out_dir / name)
    for name in COPIED_FILES:
        shutil.copy2(checkpoint_dir / name, out_dir / name)
    metadata = {
        "model_name": model_name,
        "model_version": model_version,
        "languages": list(languages),
        "max_input_tokens": max_input_tokens,
        "source_checkpoint": str(checkpoint_dir),
        "quantization": quantize,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out_dir


def _check_checkpoint(checkpoint_dir: Path, max_input_tokens: int) -> None:
    """Fail before the slow export when the checkpoint breaks the conventions the engine relies on."""
    missing = [name for name in COPIED_FILES if not (checkpoint_dir / name).exists()]
    if missing:
        raise FileNotFoundError(f"{checkpoint_dir} lacks {', '.join(missing)}")
    config = json.loads((checkpoint_dir / "config.json").read_text(encoding="utf-8"))
    expected = {"decoder_start_token_id": 0, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
    wrong = {key: config.get(key) for key, value in expected.items() if config.get(key) != value}
    if wrong:
        raise ValueError(f"checkpoint special token ids {wrong} differ from the tokenizer conventions {expected}")
    if config.get("max_position_embeddings", max_input_tokens) < max_input_tokens:
        raise ValueError(f"max_input_tokens {max_input_tokens} exceeds the model's position embeddings")


def _run_optimum_export(checkpoint_dir: Path, scratch: Path, validate: bool) -> None:
    # Imported here: optimum pulls in torch + transformers, which only the build step needs.
    import torch
    from optimum.exporters.onnx import main_export

    with warnings.catch_warnings():
        # Tracing BART warns about every Python-level shape check; the export is validated by tests instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        main_export(
            model_name_or_path=str(checkpoint_dir),
            output=scratch,
            task=EXPORT_TASK,
            local_files_only=True,
            do_validation=validate,
        )


def _move_onnx(source: Path, target: Path) -> None:
    """Move a graph and its external-data file if the model is large enough to have one."""
    if target.exists():
        target.unlink()
    shutil.move(source, target)
    external = source.with_name(source.name + "_data")
    if external.exists():
        shutil.move(external, target.with_name(target.name + "_data"))


def _quantize_int8_in_place(path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_suffix(".int8.onnx")
    # EnableSubgraph: the merged decoder keeps its layers inside the two branches of an `If` node.
    quantize_dynamic(
        path,
        quantized,
        weight_type=QuantType.QInt8,
        extra_options={"EnableSubgraph": True},
        use_external_data_format=False,
    )
    path.unlink()
    external = path.with_name(path.name + "_data")
    if external.exists():
        external.unlink()
    quantized.rename(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export a ReviewSum BART checkpoint to ONNX serving artifacts.")
    parser.add_argument("checkpoint", type=Path, help="directory of a saved BartForConditionalGeneration")
    parser.add_argument("out", type=Path, help="artifacts directory to write")
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--model-version", default=DEFAULT_MODEL_VERSION)
    parser.add_argument("--max-input-tokens", type=int, default=DEFAULT_MAX_INPUT_TOKENS)
    parser.add_argument("--no-validate", action="store_true", help="skip optimum's PyTorch/ONNX comparison")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = export_onnx(
        args.checkpoint,
        args.out,
        args.quantize,
        model_name=args.model_name,
        model_version=args.model_version,
        max_input_tokens=args.max_input_tokens,
        validate=not args.no_validate,
    )
    print(f"exported {args.checkpoint} -> {out} in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
