"""Growing a checkpoint deeper with layers that start near the identity."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from reviewsum_build import grow
from reviewsum_build.modeling import build_config
from transformers import BartForConditionalGeneration


def _fresh_model() -> BartForConditionalGeneration:
    torch.manual_seed(0)
    return BartForConditionalGeneration(build_config(100, "tiny", dropout=0.0)).eval()


def _logits(model: BartForConditionalGeneration) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    source = torch.randint(5, 100, (2, 12), generator=generator)
    target = torch.randint(5, 100, (2, 7), generator=generator)
    with torch.no_grad():
        return model(input_ids=source, decoder_input_ids=target).logits


def test_insertion_points_spread_the_new_layers() -> None:
    assert grow.insertion_points(4, 8) == [0, 1, 2, 3]
    assert grow.insertion_points(3, 5) == [0, 1]
    assert grow.insertion_points(3, 3) == []
    with pytest.raises(ValueError, match="shrink"):
        grow.insertion_points(4, 2)


def test_grown_model_computes_the_same_function_when_norms_are_plain() -> None:
    # Freshly initialised layer norms have weight 1 and bias 0, so re-normalizing a normalized
    # input changes nothing and an inserted layer is exactly the identity.
    model = _fresh_model()
    grown = grow.grow(copy.deepcopy(model), encoder_layers=3, decoder_layers=3)
    assert len(grown.model.encoder.layers) == 3 and len(grown.model.decoder.layers) == 3
    assert (grown.config.encoder_layers, grown.config.decoder_layers) == (3, 3)
    torch.testing.assert_close(_logits(grown), _logits(model), atol=1e-5, rtol=1e-5)


def test_inserted_layers_add_nothing_on_their_residual_branches() -> None:
    grown = grow.grow(_fresh_model(), encoder_layers=2, decoder_layers=2)
    inserted_encoder, inserted_decoder = grown.model.encoder.layers[1], grown.model.decoder.layers[1]
    for linear in (inserted_encoder.self_attn.out_proj, inserted_encoder.fc2, inserted_decoder.encoder_attn.out_proj):
        assert torch.count_nonzero(linear.weight) == 0 and torch.count_nonzero(linear.bias) == 0
    # the original layer keeps its weights
    assert torch.count_nonzero(grown.model.encoder.layers[0].fc2.weight) > 0
    assert [layer.self_attn.layer_idx for layer in grown.model.decoder.layers] == [0, 1]


def test_cli_writes_a_loadable_deeper_checkpoint_that_generates(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep"
    grow.main([str(tiny_checkpoint), "--out", str(out), "--encoder-layers", "2", "--decoder-layers", "3"])
    model = BartForConditionalGeneration.from_pretrained(out).eval()
    assert (model.config.encoder_layers, model.config.decoder_layers) == (2, 3)
    assert (out / "tokenizer.json").read_bytes() == (tiny_checkpoint / "tokenizer.json").read_bytes()
    generated = model.generate(torch.tensor([[5, 6, 7, 8, 2]]), max_new_tokens=4, do_sample=False, num_beams=1)
    assert generated.shape[0] == 1


def test_grown_model_decodes_the_same_with_and_without_the_kv_cache() -> None:
    # A reloaded checkpoint numbers its layers afresh; the model `grow` returns must do so itself, or the
    # inserted decoder layers would share the cache slot of the layer they copy. The weights are
    # perturbed so that the inserted layers' attention matters.
    grown = grow.grow(_fresh_model(), encoder_layers=1, decoder_layers=3)
    torch.manual_seed(2)
    with torch.no_grad():
        for parameter in grown.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    source = torch.tensor([[5, 6, 7, 8, 2]])
    settings = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False, "num_beams": 1}
    cached = grown.generate(source, use_cache=True, **settings)
    uncached = grown.generate(source, use_cache=False, **settings)
    assert cached.shape[1] >= 8
    assert torch.equal(cached, uncached)
