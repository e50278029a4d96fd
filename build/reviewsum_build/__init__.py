"""ReviewSum model pipeline: data, tokenizer, training, evaluation, export, model repository."""
