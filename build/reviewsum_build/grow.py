"""Make a trained checkpoint deeper: insert encoder/decoder layers that start close to the identity.

    python -m reviewsum_build.grow runs/v5 --out runs/v5_deep --encoder-layers 8 --decoder-layers 4

Hand-read polarity failures of the 9.5M-parameter model are mostly garbled or self-contradicting
summaries of long reviews, which more written references did not fix (model card, tenth session);
capacity is the next suspect, and pretraining a larger model from scratch does not fit two CPU cores.
Each inserted layer is a copy of the layer below it whose residual branches (attention output
projections and second feed-forward matrix) are zero and whose layer norms repeat the layer below's
final one. BART normalizes after each residual sum, so such a layer re-normalizes its input instead
of passing it through exactly: the grown model starts near the original, not at it, and is then
fine-tuned (`train finetune --init OUT`). The tokenizer is copied unchanged.
"""

from __future__ import annotations

import argparse
import copy
import shutil
from pathlib import Path

import torch
from torch import nn
from transformers import BartForConditionalGeneration

from reviewsum_build.tokenizer import TOKENIZER_FILES


def insertion_points(old: int, new: int) -> list[int]:
    """After which original layers (0-based) the `new - old` added layers go, spread evenly from the bottom."""
    if new < old:
        raise ValueError(f"cannot shrink {old} layers to {new}")
    extra = new - old
    return [(j * old) // extra for j in range(extra)]


def _residual_projections(layer: nn.Module) -> list[nn.Linear]:
    projections = [layer.self_attn.out_proj, layer.fc2]
    if hasattr(layer, "encoder_attn"):
        projections.append(layer.encoder_attn.out_proj)
    return projections


def _layer_norms(layer: nn.Module) -> list[nn.LayerNorm]:
    norms = [layer.self_attn_layer_norm, layer.final_layer_norm]
    if hasattr(layer, "encoder_attn_layer_norm"):
        norms.append(layer.encoder_attn_layer_norm)
    return norms


def near_identity_copy(layer: nn.Module) -> nn.Module:
    """A copy of `layer` whose residual branches add nothing and whose norms repeat `layer`'s output norm."""
    fresh = copy.deepcopy(layer)
    with torch.no_grad():
        for linear in _residual_projections(fresh):
            linear.weight.zero_()
            if linear.bias is not None:
                linear.bias.zero_()
        for norm in _layer_norms(fresh):
            norm.weight.copy_(layer.final_layer_norm.weight)
            norm.bias.copy_(layer.final_layer_norm.bias)
    return fresh


def deepen(layers: nn.ModuleList, target: int) -> nn.ModuleList:
    after = insertion_points(len(layers), target)
    grown: list[nn.Module] = []
    for i, layer in enumerate(layers):
        grown.append(layer)
        grown.extend(near_identity_copy(layer) for _ in range(after.count(i)))
    return nn.ModuleList(grown)


def grow(model: BartForConditionalGeneration, encoder_layers: int, decoder_layers: int) -> BartForConditionalGeneration:
    """The same model with `encoder_layers`/`decoder_layers` layers (in place; also returned)."""
    model.model.encoder.layers = deepen(model.model.encoder.layers, encoder_layers)
    model.model.decoder.layers = deepen(model.model.decoder.layers, decoder_layers)
    model.config.encoder_layers = encoder_layers
    model.config.decoder_layers = decoder_layers
    model.config.num_hidden_layers = encoder_layers
    for i, layer in enumerate(model.model.decoder.layers):
        # the KV cache is indexed by each attention module's layer_idx, so copies need their new position
        for attention in (layer.self_attn, layer.encoder_attn):
            if hasattr(attention, "layer_idx"):
                attention.layer_idx = i
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a trained checkpoint directory")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder-layers", type=int, required=True)
    parser.add_argument("--decoder-layers", type=int, required=True)
    args = parser.parse_args(argv)
    model = BartForConditionalGeneration.from_pretrained(args.checkpoint)
    before = sum(p.numel() for p in model.parameters())
    grow(model, args.encoder_layers, args.decoder_layers)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    for name in TOKENIZER_FILES:  # save_pretrained writes the model and generation config
        shutil.copy(args.checkpoint / name, args.out / name)
    after = sum(p.numel() for p in model.parameters())
    print(f"{args.checkpoint} -> {args.out}: {before / 1e6:.2f}M -> {after / 1e6:.2f}M parameters")


if __name__ == "__main__":
    main()
