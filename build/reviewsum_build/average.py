"""Average the weights of several checkpoints of one model into a new checkpoint.

Checkpoints saved a few dozen steps apart along one fine-tuning run lie close together, so their mean
is a working model of the same kind (Izmailov et al. 2018, stochastic weight averaging) that does not
hinge on one step's dev evaluation. On this project it scored about the mean of its inputs, not more
(seventh session, `docs/model_card.md`, Training).

    python -m reviewsum_build.average --out runs/scst4/avg runs/scst4/steps/step_00400 runs/scst4/steps/step_00450

All checkpoints must share the architecture (same tensor names and shapes) and the tokenizer; the
configuration, generation config and tokenizer are copied from the first. `averaged_from.json` in the
output lists the inputs and their weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
# What `train.save_hf` writes besides the weights; provenance files of the inputs are not copied.
COPIED_FILES = ("config.json", "generation_config.json", TOKENIZER_FILE, "tokenizer_config.json")


def normalized_weights(count: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise SystemExit(f"--weights gives {len(weights)} weights for {count} checkpoints")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise SystemExit(f"--weights must be non-negative with a positive sum, got {list(weights)}")
    total = sum(weights)
    return [w / total for w in weights]


def check_compatible(checkpoints: Sequence[Path], states: Sequence[dict]) -> None:
    """Refuse to average checkpoints that are not the same model: a silent mean of mismatched
    tensors or tokenizers would produce a plausible-looking but broken model."""
    first, reference = checkpoints[0], states[0]
    tokenizer = (first / TOKENIZER_FILE).read_bytes()
    for path, state in zip(checkpoints[1:], states[1:], strict=True):
        if state.keys() != reference.keys():
            diff = sorted(state.keys() ^ reference.keys())[:5]
            raise SystemExit(f"{path} and {first} have different tensors (e.g. {diff})")
        for name, tensor in state.items():
            if tensor.shape != reference[name].shape:
                raise SystemExit(
                    f"{path}: {name} has shape {tuple(tensor.shape)}, {first} has {tuple(reference[name].shape)}"
                )
        if (path / TOKENIZER_FILE).read_bytes() != tokenizer:
            raise SystemExit(f"{path} has a different tokenizer from {first}")


def average_states(states: Sequence[dict], weights: Sequence[float]) -> dict:
    """Weighted mean of each floating-point tensor, computed in float32 and cast back; any other
    tensor (integer buffers) is taken from the first checkpoint."""
    out = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            total = sum(w * s[name].float() for w, s in zip(weights, states, strict=True))
            out[name] = total.to(first.dtype).contiguous()
        else:
            out[name] = first.clone()
    return out


def average_checkpoints(checkpoints: Sequence[Path], out_dir: Path, weights: Sequence[float] | None = None) -> Path:
    from safetensors.torch import load_file, save_file

    if len(checkpoints) < 2:
        raise SystemExit("give at least two checkpoints to average")
    missing = [str(p) for p in checkpoints if not (p / WEIGHTS_FILE).is_file()]
    if missing:
        raise SystemExit(f"no {WEIGHTS_FILE} in: {', '.join(missing)}")
    if out_dir.resolve() in {p.resolve() for p in checkpoints}:
        raise SystemExit(f"--out {out_dir} is one of the inputs")
    shares = normalized_weights(len(checkpoints), weights)
    states = [load_file(p / WEIGHTS_FILE) for p in checkpoints]
    check_compatible(checkpoints, states)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in COPIED_FILES:
        if (checkpoints[0] / name).is_file():
            shutil.copy(checkpoints[0] / name, out_dir / name)
    save_file(average_states(states, shares), out_dir / WEIGHTS_FILE, metadata={"format": "pt"})
    sources = [{"checkpoint": str(p), "weight": round(w, 6)} for p, w in zip(checkpoints, shares, strict=True)]
    (out_dir / "averaged_from.json").write_text(json.dumps(sources, indent=2) + "\n")
    return out_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+", help="checkpoint directories (model.safetensors + tokenizer)")
    p.add_argument("--out", type=Path, required=True, help="directory for the averaged checkpoint")
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one per checkpoint; default equal")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = average_checkpoints(args.checkpoints, args.out, args.weights)
    print(f"averaged {len(args.checkpoints)} checkpoints into {out}")


if __name__ == "__main__":
    main()
