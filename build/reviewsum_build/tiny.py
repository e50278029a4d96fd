"""A tiny random-weight ReviewSum model for tests: real tokenizer conventions, real export, seconds to build.

The weights are random, so the summaries are nonsense, but every shape, special token and file the
serving path touches is the same as for the trained model. Two tweaks keep it useful for tests:
a larger init std makes next-token logits peaked (ties between candidates would make ONNX-vs-PyTorch
parity flaky), and a positive bias on `</s>` makes some generations stop early with "eos" while
others run to the length limit.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from reviewsum_build.export import export_onnx
from reviewsum_build.tokenizer import BOS_ID, EOS_ID, PAD_ID, save_tokenizer, train_tokenizer

TINY_VOCAB_SIZE = 600
TINY_MAX_POSITIONS = 320
TINY_MAX_INPUT_TOKENS = 256
TINY_INIT_STD = 0.5
TINY_EOS_LOGIT_BIAS = 7.0

TINY_CORPUS = [
    "这家店的外卖送得很快，味道也不错，下次还会再点。",
    "包装很好，菜品新鲜，分量足，性价比很高。",
    "等了一个多小时才送到，饭菜都凉了，非常失望。",
    "酒店位置方便，房间干净，服务员态度很好。",
    "房间有点小，隔音不好，晚上很吵，睡不好觉。",
    "手机运行流畅，拍照效果清晰，电池也很耐用。",
    "屏幕有划痕，客服处理很慢，不推荐购买。",
    "衣服质量很好，穿着舒服，颜色和图片一样。",
    "尺码偏小，退货很麻烦，物流也很慢。",
    "书的内容很有意思，印刷清楚，孩子很喜欢。",
    "水果很新鲜，个头大，甜度高，会回购的。",
    "洗发水味道好闻，用完头发很顺滑。",
    "电脑开机速度快，散热好，玩游戏不卡。",
    "快递员服务态度差，包裹被压坏了。",
    "总体来说还可以，价格有点贵，但是质量不错。",
    "味道一般，米饭太硬，汤太咸了。",
    "The delivery was fast and the food was still hot.",
    "Great value for the price, I will order again.",
    "The room was clean and the staff were very friendly.",
    "The hotel was noisy at night and the bed was too soft.",
    "Battery life is excellent and the screen is bright.",
    "The phone arrived with a cracked screen, very disappointed.",
    "Customer service was slow to respond and not helpful.",
    "The shirt fits well and the fabric feels soft.",
    "The package was late and the box was damaged.",
    "Fresh fruit, sweet and juicy, highly recommended.",
    "The book is interesting and the print quality is good.",
    "Too expensive for what you get, the quality is poor.",
    "Overall a good experience, but the portion was small.",
    "The laptop runs fast and stays cool under load.",
    "质量不错，物流很快，好评！",
    "服务很好，环境也不错，推荐大家来。",
    "Good quality, fast shipping, five stars!",
    "Nice location, easy to find, would stay again.",
]


def build_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Build tokenizer + random BART under `out_dir/checkpoint`, export to `out_dir/artifacts`; return the latter."""
    out_dir = Path(out_dir)
    checkpoint_dir = out_dir / "checkpoint"
    save_tiny_checkpoint(checkpoint_dir, seed)
    # Validation is skipped: the engine tests compare the ONNX outputs with PyTorch token for token.
    return export_onnx(
        checkpoint_dir,
        out_dir / "artifacts",
        model_name="reviewsum-tiny",
        model_version="1",
        max_input_tokens=TINY_MAX_INPUT_TOKENS,
        validate=False,
    )


def save_tiny_checkpoint(checkpoint_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

    tokenizer = train_tokenizer(TINY_CORPUS, vocab_size=TINY_VOCAB_SIZE)
    save_tokenizer(tokenizer, checkpoint_dir, model_max_length=TINY_MAX_INPUT_TOKENS)
    config = BartConfig(
        vocab_size=tokenizer.get_vocab_size(),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=TINY_MAX_POSITIONS,
        init_std=TINY_INIT_STD,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        bos_token_id=BOS_ID,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
        forced_bos_token_id=None,
        forced_eos_token_id=EOS_ID,
    )
    torch.manual_seed(seed)
    model = BartForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.final_logits_bias[0, EOS_ID] = TINY_EOS_LOGIT_BIAS
    model.generation_config = GenerationConfig.from_model_config(config)
    model.save_pretrained(checkpoint_dir)
    return checkpoint_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the tiny random-weight ReviewSum model for tests.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    artifacts = build_tiny_model(args.out, args.seed)
    print(f"tiny model artifacts in {artifacts} ({time.perf_counter() - started:.1f}s)")


if __name__ == "__main__":
    main()
