"""Generation engine: tokenizer + ONNX Runtime encoder/decoder with a KV cache, greedy and beam search."""
