"""Rebuild a PyTorch checkpoint from shipped ONNX artifacts, so training can continue from them.

Training runs (`runs/`) are not committed; a fresh machine has only the serving form in
`model_repository/summarizer/1/artifacts`. The export keeps every weight: named initializers
(embeddings, biases, layer norms) carry their parameter names, and each Linear weight appears
transposed as an anonymous `MatMul` input whose output is added to a named bias. Following that
MatMul -> Add edge recovers the name. The rebuilt model is checked against the encoder graph.

    python -m reviewsum_build.from_onnx model_repository/summarizer/1/artifacts runs/shipped
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

from reviewsum_build.export import DECODER_FILE, ENCODER_FILE, METADATA_FILE
from reviewsum_build.tokenizer import TOKENIZER_FILES

MERGED_SUFFIX = "_merged_0"
LM_HEAD_BIAS = "final_logits_bias"


def _all_nodes(graph: onnx.GraphProto):
    """Nodes of `graph` and of every subgraph (the merged decoder keeps its layers inside If branches)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _linear_weight_names(model: onnx.ModelProto, named: set[str]) -> dict[str, str]:
    """Map each anonymous MatMul weight initializer to the name of the Linear bias added to its output."""
    nodes = list(_all_nodes(model.graph))
    adds_by_input: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        if node.op_type == "Add":
            for name in node.input:
                adds_by_input.setdefault(name, []).append(node)
    mapping: dict[str, str] = {}
    for node in nodes:
        if node.op_type != "MatMul":
            continue
        weight = node.input[1]
        if weight in named or not weight.startswith("onnx::"):
            continue
        for add in adds_by_input.get(node.output[0], []):
            bias = next((name for name in add.input if name != node.output[0]), None)
            if bias is not None and (bias in named or bias.startswith("onnx::Add")):
                mapping[weight] = bias
    return mapping


def _parameter_name(bias_name: str, prefix: str) -> str:
    name = bias_name.removesuffix(MERGED_SUFFIX)
    if name.startswith("onnx::Add"):  # the LM head's bias is a constant-folded buffer
        return LM_HEAD_BIAS
    return name if name.startswith("model.") else prefix + name


def _graph_state(path: Path, prefix: str) -> dict[str, np.ndarray]:
    """Parameters of one graph, by `BartForConditionalGeneration` state-dict name."""
    model = onnx.load(str(path))
    arrays = _initializers(model)
    named = {name for name in arrays if not name.startswith("onnx::")}
    state = {_parameter_name(name, prefix): arrays[name] for name in named}
    for weight, bias in _linear_weight_names(model, named).items():
        parameter = _parameter_name(bias, prefix)
        if parameter == LM_HEAD_BIAS:
            state["lm_head.weight"] = arrays[weight].T
            state[LM_HEAD_BIAS] = arrays[bias].reshape(1, -1)
        else:
            state[parameter.removesuffix(".bias") + ".weight"] = arrays[weight].T
    return state


def rebuild_state_dict(artifacts: Path) -> dict[str, torch.Tensor]:
    state = _graph_state(artifacts / ENCODER_FILE, "model.encoder.")
    state.update(_graph_state(artifacts / DECODER_FILE, ""))
    return {name: torch.from_numpy(np.array(value, copy=True)) for name, value in state.items()}


def rebuild_model(artifacts: Path) -> BartForConditionalGeneration:
    """A `BartForConditionalGeneration` with the artifacts' weights; raises if any parameter is missing."""
    config = BartConfig.from_pretrained(artifacts)
    model = BartForConditionalGeneration(config)
    state = rebuild_state_dict(artifacts)
    expected = model.state_dict()
    # Tied copies (shared/encoder/decoder embeddings, lm_head) all equal model.shared.weight.
    shared = state.get("model.shared.weight", state.get("model.encoder.embed_tokens.weight"))
    for tied in ("model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"):
        state.setdefault(tied, shared)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"cannot rebuild {artifacts}: missing {missing[:5]}, unexpected {unexpected[:5]} "
            "(the export stores equal tensors once, so untrained weights cannot be told apart)"
        )
    for name, value in state.items():
        if tuple(value.shape) != tuple(expected[name].shape):
            raise ValueError(f"{name}: shape {tuple(value.shape)} != {tuple(expected[name].shape)}")
    model.load_state_dict(state)
    return model.eval()


def max_encoder_difference(model: BartForConditionalGeneration, artifacts: Path, text: str) -> float:
    """Largest absolute difference between the rebuilt encoder and the ONNX encoder on `text`."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(artifacts / "tokenizer.json")).encode(text).ids
    input_ids = np.array([ids], dtype=np.int64)
    mask = np.ones_like(input_ids)
    session = ort.InferenceSession(str(artifacts / ENCODER_FILE), providers=["CPUExecutionProvider"])
    (onnx_hidden,) = session.run(None, {"input_ids": input_ids, "attention_mask": mask})
    with torch.no_grad():
        torch_hidden = model.get_encoder()(torch.from_numpy(input_ids), torch.from_numpy(mask)).last_hidden_state
    return float(np.abs(torch_hidden.numpy() - onnx_hidden).max())


def rebuild_checkpoint(artifacts: Path, out_dir: Path) -> Path:
    """Write a `save_pretrained` checkpoint (model, tokenizer, generation config) to `out_dir`."""
    model = rebuild_model(artifacts)
    difference = max_encoder_difference(model, artifacts, "屏幕效果非常棒，性价比高，但品控有待提升。")
    if difference > 1e-4:
        raise ValueError(f"rebuilt encoder differs from the ONNX encoder by {difference:.2e}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    GenerationConfig.from_pretrained(artifacts).save_pretrained(out_dir)
    for name in TOKENIZER_FILES:
        shutil.copy2(artifacts / name, out_dir / name)
    source = json.loads((artifacts / METADATA_FILE).read_text(encoding="utf-8"))
    (out_dir / "rebuilt_from.json").write_text(
        json.dumps({"artifacts": str(artifacts), "metadata": source}, ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8",
    )
    print(f"rebuilt {out_dir} from {artifacts} (encoder max |diff| {difference:.1e})")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path, help="an ONNX artifacts directory written by reviewsum_build.export")
    parser.add_argument("out_dir", type=Path, help="where to write the PyTorch checkpoint")
    args = parser.parse_args(argv)
    rebuild_checkpoint(args.artifacts, args.out_dir)


if __name__ == "__main__":
    main()
