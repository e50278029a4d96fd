#!/usr/bin/env python
"""ReviewSum's one GPU check: engine build time, TensorRT parity against ONNX Runtime, and latency/throughput at
batch 1, 8 and 32 for PyTorch on the GPU, ONNX Runtime and TensorRT. Prints one table; meant to finish within
8 minutes on a GPU host (a time budget turns whatever is left into "not run" rows).

    python scripts/gpu_check.py --artifacts DIR [--engines DIR] [--precision fp16] [--json OUT.json]

Whatever the host lacks (an NVIDIA GPU, torch with CUDA, TensorRT, onnxruntime-gpu, the checkpoint or a
network to fetch it) turns the rows that need it into "not run: <reason>"; the rest still run. Exit status 0
unless a row that could run failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BATCH_SIZES = (1, 8, 32)
DEFAULT_BUDGET_S = 450.0  # 7.5 minutes: under the 8 the check promises, with room for start-up
PARITY_GOAL = 0.99
LOGIT_SAMPLE_TEXTS = 8
LOGIT_SAMPLE_STEPS = 32
NOT_RUN = "not run"


@dataclass
class Row:
    section: str
    name: str
    result: str
    measured: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.result.startswith("failed")


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


# ---------------------------------------------------------------- what the host has


@dataclass(frozen=True)
class Host:
    gpus: tuple[str, ...]
    torch_cuda: str | None  # None when usable, else why not
    tensorrt: str | None  # None when usable, else why not
    ort_cuda: bool
    versions: dict[str, str]

    def gpu_reason(self) -> str | None:
        return None if self.gpus else "no NVIDIA GPU found"


def detect_host() -> Host:
    from reviewsum_engine.tensorrt_backend import detect_gpus

    gpus = tuple(detect_gpus())
    versions: dict[str, str] = {}
    torch_cuda: str | None = "torch is not installed"
    if importlib.util.find_spec("torch") is not None:
        import torch

        versions["torch"] = torch.__version__
        torch_cuda = None if torch.cuda.is_available() else f"torch {torch.__version__} has no usable CUDA"
    tensorrt: str | None = "the tensorrt package is not installed"
    if importlib.util.find_spec("tensorrt") is not None:
        import tensorrt

        versions["tensorrt"] = tensorrt.__version__
        tensorrt = None
    import onnxruntime

    versions["onnxruntime"] = onnxruntime.__version__
    ort_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return Host(gpus, torch_cuda, tensorrt, ort_cuda, versions)


def joined(*reasons: str | None) -> str | None:
    """All the reasons that apply, or None when nothing is missing."""
    present = [reason for reason in reasons if reason]
    return "; ".join(present) or None


def network_reachable(host: str = "huggingface.co", port: int = 443, timeout_s: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- texts


def load_texts(source: str, limit: int) -> tuple[list[str], str]:
    """The dev set's reviews (via load_pairs, when ../shared/data is present) or the built-in sample reviews."""
    if source in ("auto", "dev"):
        from reviewsum_build.sources import DEFAULT_DATA_DIR

        if DEFAULT_DATA_DIR.is_dir():
            from reviewsum_build.annotation import load_pairs

            pairs, _ = load_pairs(DEFAULT_DATA_DIR.resolve())
            dev = [pair.review for pair in pairs if pair.split == "dev"][:limit]
            if dev:
                return dev, f"dev set ({len(dev)} reviews)"
        if source == "dev":
            raise SystemExit(f"error: no dev set under {DEFAULT_DATA_DIR}")
    from reviewsum_build.tiny import TINY_CORPUS

    return list(TINY_CORPUS)[:limit], f"built-in sample reviews ({min(limit, len(TINY_CORPUS))})"


def batch_of(texts: Sequence[str], size: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(size)]


# ---------------------------------------------------------------- parity


def identical_share(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]]) -> float:
    if len(reference) != len(candidate) or not reference:
        raise ValueError("need two equally long, non-empty lists of summaries")
    return sum(list(a) == list(b) for a, b in zip(reference, candidate, strict=True)) / len(reference)


def max_logit_difference(
    reference: Any, candidate: Any, input_ids: np.ndarray, attention_mask: np.ndarray, decoder_tokens: np.ndarray
) -> float:
    """Largest |logit difference| over every step when both backends are fed the same decoder tokens.

    Teacher forcing (the same tokens for both) compares the networks, not the searches: one flipped argmax
    would otherwise make every later step differ."""
    ref_state = reference.encode(input_ids, attention_mask)
    cand_state = candidate.encode(input_ids, attention_mask)
    largest = 0.0
    for step in range(decoder_tokens.shape[1]):
        ref_logits, ref_state = reference.decode_step(ref_state, decoder_tokens[:, step])
        cand_logits, cand_state = candidate.decode_step(cand_state, decoder_tokens[:, step])
        largest = max(largest, float(np.max(np.abs(ref_logits - cand_logits))))
    return largest


def greedy_ids(summarizer: Any, texts: Sequence[str], batch_size: int = 32) -> list[list[int]]:
    from reviewsum_engine import GenerationOptions

    ids = summarizer.tokenize(texts)
    results = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        results += [r.token_ids for r in summarizer.generate_ids(chunk, [GenerationOptions()] * len(chunk))]
    return results


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(rows), max(len(row) for row in rows)), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for index, row in enumerate(rows):
        ids[index, : len(row)], mask[index, : len(row)] = row, 1
    return ids, mask


def teacher_tokens(summarizer: Any, texts: Sequence[str], steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input ids, mask and a [rows, steps] decoder-token matrix (start token, then the reference's greedy ids)."""
    rules = summarizer.artifacts.rules
    input_ids, mask = pad_right(summarizer.tokenize(texts), rules.pad_token_id)
    generated = greedy_ids(summarizer, texts)
    tokens = np.full((len(texts), steps), rules.pad_token_id, dtype=np.int64)
    for row, ids in enumerate(generated):
        sequence = [rules.decoder_start_token_id, *ids][:steps]
        tokens[row, : len(sequence)] = sequence
    return input_ids, mask, tokens


# ---------------------------------------------------------------- timing


def measure(
    run_batch: Callable[[list[str]], int], texts: Sequence[str], size: int, repeats: int, budget: Budget
) -> dict[str, float]:
    """Warm up once, then time `repeats` calls; returns latency (median s), summaries/s and generated tokens/s."""
    batch = batch_of(texts, size)
    run_batch(batch)
    seconds, tokens = [], []
    for _ in range(repeats):
        if seconds and budget.remaining() < 2 * max(seconds):
            break
        started = time.perf_counter()
        tokens.append(run_batch(batch))
        seconds.append(time.perf_counter() - started)
    latency = statistics.median(seconds)
    return {
        "batch": size,
        "latency_ms": round(latency * 1000, 2),
        "summaries_per_s": round(size / latency, 2),
        "tokens_per_s": round(statistics.mean(tokens) / latency, 1),
        "runs": len(seconds),
    }


def bench_rows(
    label: str,
    make: Callable[[], Callable[[list[str]], int]] | str,
    texts: Sequence[str],
    args: argparse.Namespace,
    budget: Budget,
) -> list[Row]:
    """One row per batch size; `make` is a reason string when this engine cannot run here."""
    rows = []
    if isinstance(make, str):
        return [Row("speed", f"{label} batch {size}", f"{NOT_RUN}: {make}") for size in BATCH_SIZES]
    try:
        run_batch = make()
    except Exception as error:  # a host problem found only when loading (driver, versions)
        return [Row("speed", f"{label} batch {size}", f"failed to load: {error!r}"[:300]) for size in BATCH_SIZES]
    for size in BATCH_SIZES:
        name = f"{label} batch {size}"
        if budget.remaining() < 10:
            rows.append(Row("speed", name, f"{NOT_RUN}: time budget exhausted"))
            continue
        try:
            result = measure(run_batch, texts, size, args.repeats, budget)
        except Exception as error:
            rows.append(Row("speed", name, f"failed: {error!r}"[:300]))
            continue
        rows.append(
            Row(
                "speed",
                name,
                f"{result['latency_ms']:.1f} ms/batch, {result['summaries_per_s']:.1f} summaries/s, "
                f"{result['tokens_per_s']:.0f} tokens/s",
                result,
            )
        )
    return rows


def summarizer_runner(summarizer: Any) -> Callable[[list[str]], int]:
    from reviewsum_engine import GenerationOptions

    def run(batch: list[str]) -> int:
        generations = summarizer.summarize(batch, [GenerationOptions()] * len(batch))
        return sum(g.output_tokens for g in generations)

    return run


# ---------------------------------------------------------------- the three engines


def ort_summarizer(artifacts_dir: Path, use_cuda: bool) -> Any:
    """A Summarizer over ONNX Runtime; its backend is also at `.backend` for the logit comparison."""
    import onnxruntime as ort
    from reviewsum_engine import OrtSeq2SeqBackend, Summarizer, load_artifacts
    from reviewsum_engine.onnx_backend import make_session_options

    artifacts = load_artifacts(artifacts_dir)
    backend = OrtSeq2SeqBackend(artifacts.encoder_path, artifacts.decoder_path)
    if use_cuda:
        # OrtSeq2SeqBackend pins the CPU provider; the check swaps in CUDA sessions of the same two graphs (same
        # inputs and outputs). Feeds are numpy, so the KV cache crosses PCIe every step: ONNX Runtime on the GPU
        # without IO binding, a pessimistic row. A `providers` argument on OrtSeq2SeqBackend would replace this.
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        options = make_session_options(None)
        backend._encoder = ort.InferenceSession(str(artifacts.encoder_path), options, providers=providers)
        backend._decoder = ort.InferenceSession(str(artifacts.decoder_path), options, providers=providers)
    summarizer = Summarizer(artifacts, backend)
    summarizer.backend = backend  # type: ignore[attr-defined]
    return summarizer


def torch_generate_runner(checkpoint: str, artifacts_dir: Path, precision: str) -> Callable[[list[str]], int]:
    import torch
    from reviewsum_engine import GenerationOptions, OnnxSummarizer
    from transformers import BartForConditionalGeneration

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    model = BartForConditionalGeneration.from_pretrained(checkpoint, torch_dtype=dtype).to("cuda").eval()
    tokenizer = OnnxSummarizer(artifacts_dir)  # the same tokenizer.json and truncation as serving
    options = GenerationOptions()
    pad = tokenizer.artifacts.rules.pad_token_id

    def run(batch: list[str]) -> int:
        ids = tokenizer.tokenize(batch)
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, values in enumerate(ids):
            input_ids[row, : len(values)] = torch.tensor(values)
            mask[row, : len(values)] = 1
        with torch.no_grad():
            output = model.generate(
                input_ids.to("cuda"),
                attention_mask=mask.to("cuda"),
                max_new_tokens=options.max_new_tokens,
                num_beams=1,
                do_sample=False,
                no_repeat_ngram_size=options.no_repeat_ngram_size,
            )
        torch.cuda.synchronize()
        return int((output[:, 1:] != pad).sum())

    return run


def torch_reason(host: Host, artifacts: Any) -> str | None:
    missing = joined(host.gpu_reason(), host.torch_cuda)
    if missing:
        return missing
    if importlib.util.find_spec("transformers") is None:
        return "transformers is not installed"
    checkpoint = artifacts.source_checkpoint
    if not checkpoint:
        return "reviewsum.json records no source_checkpoint"
    if not Path(checkpoint).is_dir() and not network_reachable():
        return f"checkpoint {checkpoint} is not on this host and there is no network to fetch it"
    return None


# ---------------------------------------------------------------- the check


def run_check(args: argparse.Namespace) -> tuple[list[Row], Host]:
    from reviewsum_engine import load_artifacts

    budget = Budget(args.budget_s)
    host = detect_host()
    artifacts = load_artifacts(args.artifacts)
    texts, text_source = load_texts(args.samples, args.parity_limit)
    rows = [Row("setup", "texts", text_source)]
    trt_reason = joined(host.gpu_reason(), host.tensorrt)
    engines_dir = args.engines

    # 1. engine build
    if trt_reason:
        rows.append(Row("build", f"TensorRT engines ({args.precision})", f"{NOT_RUN}: {trt_reason}"))
    elif engines_dir is not None:
        rows.append(Row("build", f"TensorRT engines ({args.precision})", f"{NOT_RUN}: using prebuilt {engines_dir}"))
    else:
        from reviewsum_build.tensorrt_engine import build_engines

        engines_dir = Path(tempfile.mkdtemp(prefix="reviewsum-engines-"))
        try:
            built = build_engines(args.artifacts, engines_dir, precision=args.precision, log=lambda _: None)
            per_engine = {engine.kind: round(engine.seconds, 1) for engine in built}
            total = sum(per_engine.values())
            detail = ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in per_engine.items())
            rows.append(Row("build", f"TensorRT engines ({args.precision})", f"{total:.1f} s ({detail})", per_engine))
        except Exception as error:
            rows.append(Row("build", f"TensorRT engines ({args.precision})", f"failed: {error!r}"[:300]))
            trt_reason = "the engine build failed"

    # 2. parity (reference: ONNX Runtime on the CPU, the engine the CPU service runs)
    reference = ort_summarizer(args.artifacts, use_cuda=False)
    trt_summarizer = None
    if not trt_reason:
        try:
            from reviewsum_engine.tensorrt_backend import TensorRTSummarizer

            trt_summarizer = TensorRTSummarizer(args.artifacts, engines_dir)
        except Exception as error:
            trt_reason = f"the engines did not load: {error!r}"[:300]
    rows += parity_rows(reference, trt_summarizer, trt_reason, texts, budget)

    # 3. speed
    torch_why = torch_reason(host, artifacts)
    torch_make: Any = torch_why or (
        lambda: torch_generate_runner(str(artifacts.source_checkpoint), args.artifacts, args.precision)
    )
    rows += bench_rows(f"PyTorch GPU ({args.precision}, generate)", torch_make, texts, args, budget)
    ort_label = (
        "ONNX Runtime CUDA EP" if host.ort_cuda and not host.gpu_reason() else "ONNX Runtime CPU (no onnxruntime-gpu)"
    )
    use_cuda = host.ort_cuda and not host.gpu_reason()
    rows += bench_rows(
        ort_label, lambda: summarizer_runner(ort_summarizer(args.artifacts, use_cuda)), texts, args, budget
    )
    trt_make: Any = trt_reason or (lambda: summarizer_runner(trt_summarizer))
    rows += bench_rows(f"TensorRT ({args.precision})", trt_make, texts, args, budget)
    return rows, host


def parity_rows(reference: Any, candidate: Any, reason: str | None, texts: Sequence[str], budget: Budget) -> list[Row]:
    names = ("largest logit difference", f"identical greedy summaries (goal >= {PARITY_GOAL:.0%})")
    if reason or candidate is None:
        return [Row("parity", name, f"{NOT_RUN}: {reason}") for name in names]
    rows = []
    try:
        sample = list(texts[:LOGIT_SAMPLE_TEXTS])
        ids, mask, tokens = teacher_tokens(reference, sample, LOGIT_SAMPLE_STEPS)
        difference = max_logit_difference(reference.backend, candidate.backend, ids, mask, tokens)
        rows.append(
            Row(
                "parity",
                names[0],
                f"{difference:.4g} over {len(sample)} reviews x {tokens.shape[1]} steps",
                {"max_abs": difference},
            )
        )
    except Exception as error:
        rows.append(Row("parity", names[0], f"failed: {error!r}"[:300]))
    if budget.remaining() < 30:
        rows.append(Row("parity", names[1], f"{NOT_RUN}: time budget exhausted"))
        return rows
    try:
        share = identical_share(greedy_ids(reference, texts), greedy_ids(candidate, texts))
        verdict = "met" if share >= PARITY_GOAL else "NOT met"
        rows.append(
            Row("parity", names[1], f"{share:.1%} of {len(texts)} ({verdict})", {"share": share, "count": len(texts)})
        )
    except Exception as error:
        rows.append(Row("parity", names[1], f"failed: {error!r}"[:300]))
    return rows


def format_table(rows: Sequence[Row], host: Host) -> str:
    gpus = ", ".join(host.gpus) or "no NVIDIA GPU"
    versions = ", ".join(f"{name} {version}" for name, version in sorted(host.versions.items()))
    header = f"ReviewSum GPU check on {gpus} ({versions}; ONNX Runtime CUDA EP: {'yes' if host.ort_cuda else 'no'})"
    widths = (max(len(r.section) for r in [*rows, Row("section", "row", "")]), max(len(r.name) for r in rows))
    lines = [header, f"{'section':<{widths[0]}} | {'row':<{widths[1]}} | result"]
    lines.append(f"{'-' * widths[0]}-+-{'-' * widths[1]}-+-{'-' * 40}")
    lines += [f"{r.section:<{widths[0]}} | {r.name:<{widths[1]}} | {r.result}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--artifacts", type=Path, required=True, help="ONNX artifacts directory (reviewsum_build.export)"
    )
    parser.add_argument("--engines", type=Path, default=None, help="prebuilt engines (default: build them, timed)")
    parser.add_argument("--precision", choices=["fp16", "bf16", "fp32"], default="fp16")
    parser.add_argument(
        "--samples", choices=["auto", "dev", "builtin"], default="auto", help="texts for parity and speed"
    )
    parser.add_argument("--parity-limit", type=int, default=300, help="most reviews compared for identical summaries")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine and batch size (after a warm-up)")
    parser.add_argument(
        "--budget-s", type=float, default=DEFAULT_BUDGET_S, help="rows past this many seconds are not run"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows, host = run_check(args)
    print(format_table(rows, host))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"host": asdict(host), "rows": [asdict(r) for r in rows]}, indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
