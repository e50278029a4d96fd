"""Train the ReviewSum tokenizer and model on CPU: tokenizer, denoising pretraining, fine-tuning.

    python -m reviewsum_build.train tokenizer --corpus runs/corpus/corpus.txt --out runs/tokenizer
    python -m reviewsum_build.train pretrain  --corpus runs/corpus/corpus.txt --tokenizer runs/tokenizer \\
        --run-dir runs/pretrain --max-steps 3437 --max-minutes 75
    python -m reviewsum_build.train finetune  --init runs/pretrain/final --run-dir runs/finetune \\
        --epochs 30 --max-minutes 25
    python -m reviewsum_build.train all --data-dir ../shared/data      # every step above, in order

Every training run is seeded, shows a tqdm bar, appends one JSON line per logged step to
`RUN_DIR/log.jsonl`, writes a checkpoint every `--save-every` steps under `RUN_DIR/checkpoints/`
(model, tokenizer, generation config and optimizer state), resumes from the latest one with
`--resume`, and stops cleanly at `--max-minutes`, saving a checkpoint and `RUN_DIR/final`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS = REPO_ROOT / "runs"


def _limit_threads(n: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---------------------------------------------------------------- data


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…~])")


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


@dataclass
class Noiser:
    """BART noise: sentence permutation (with probability `permute_prob`) and text infilling.

    Infilling masks about `mask_ratio` of the tokens in spans whose lengths follow Poisson(`span_lambda`);
    each span becomes one `<mask>`; spans of length 0 insert a `<mask>`.
    """

    mask_id: int
    eos_id: int
    mask_ratio: float = 0.3
    span_lambda: float = 3.0
    permute_prob: float = 0.3

    def permute(self, text: str, rng: random.Random) -> str:
        sentences = split_sentences(text)
        if len(sentences) > 1 and rng.random() < self.permute_prob:
            rng.shuffle(sentences)
            return "".join(sentences)
        return text

    def infill(self, ids: Sequence[int], rng: random.Random) -> list[int]:
        body = list(ids)
        if body and body[-1] == self.eos_id:
            body = body[:-1]
        n = len(body)
        if n == 0:
            return [self.eos_id]
        to_mask = max(1, round(n * self.mask_ratio))
        masked = [False] * n
        span_start = [False] * n
        inserts: set[int] = set()
        budget = to_mask
        tries = 0
        while budget > 0 and tries < 10 * n:
            tries += 1
            length = _poisson(self.span_lambda, rng)
            start = rng.randrange(n)
            if length == 0:
                if rng.random() < 0.1:
                    inserts.add(start)
                continue
            length = min(length, budget, n - start)
            if any(masked[start : start + length]):
                continue
            for i in range(start, start + length):
                masked[i] = True
            span_start[start] = True
            budget -= length
        out: list[int] = []
        for i, tok in enumerate(body):
            if i in inserts and not masked[i]:
                out.append(self.mask_id)
            if masked[i]:
                if span_start[i] or i == 0 or not masked[i - 1]:
                    out.append(self.mask_id)
                continue
            out.append(tok)
        out.append(self.eos_id)
        return out


def _poisson(lam: float, rng: random.Random) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def length_batches(
    lengths: Sequence[int], tokens_per_batch: int, max_batch: int, rng: random.Random, bucket: int = 100
) -> list[list[int]]:
    """Mixed-length batching: shuffle, sort within buckets of `bucket` batches, cut by a token budget
    (padded size = batch size x longest item), shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = bucket * max_batch
    batches: list[list[int]] = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c : c + chunk], key=lambda i: lengths[i])
        current: list[int] = []
        longest = 0
        for i in part:
            longest_if = max(longest, lengths[i])
            if current and (longest_if * (len(current) + 1) > tokens_per_batch or len(current) >= max_batch):
                batches.append(current)
                current, longest_if = [], lengths[i]
            current.append(i)
            longest = longest_if
        if current:
            batches.append(current)
    rng.shuffle(batches)
    return batches


def pad(seqs: Sequence[Sequence[int]], pad_id: int):
    import torch

    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def make_batch(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]):
    """Model inputs: padded source, attention mask, decoder inputs (`<s>` + target[:-1]) and labels (-100 = pad)."""
    from reviewsum_build.tokenizer import BOS_ID, PAD_ID

    input_ids = pad(sources, PAD_ID)
    labels = pad(targets, -100)
    decoder_input_ids = pad([[BOS_ID, *t[:-1]] for t in targets], PAD_ID)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != PAD_ID).long(),
        "decoder_input_ids": decoder_input_ids,
        "labels": labels,
    }


def encode_all(tokenizer, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Token ids ending in `</s>`, cut to `max_len` (the cut keeps the final `</s>`)."""
    from reviewsum_build.tokenizer import EOS_ID

    out = []
    for enc in tokenizer.encode_batch(list(texts)):
        ids = enc.ids
        if len(ids) > max_len:
            ids = ids[: max_len - 1] + [EOS_ID]
        out.append(ids)
    return out


# ---------------------------------------------------------------- checkpoints and logging


class RunLog:
    def __init__(self, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "log.jsonl"

    def write(self, **row) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def save_hf(model, tokenizer, out_dir: Path) -> None:
    """A `transformers` checkpoint: model + generation config, tokenizer files next to it."""
    from reviewsum_build.tokenizer import save_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    model.generation_config.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, extra: dict, keep: int = 2):
    import torch

    ckpt_root = run_dir / "checkpoints"
    out = ckpt_root / f"step_{step:07d}"
    tmp = ckpt_root / f".tmp_step_{step:07d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_hf(model, tokenizer, tmp)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "python_rng": random.getstate(),
        "torch_rng": torch.get_rng_state(),
        **extra,
    }
    torch.save(state, tmp / "trainer_state.pt")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    for old in sorted(ckpt_root.glob("step_*"))[:-keep]:
        shutil.rmtree(old)
    return out


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob("step_*"))
    return found[-1] if found else None


def restore_checkpoint(ckpt: Path, model, optimizer, scheduler) -> dict:
    """Load a `save_checkpoint` directory into the model, optimizer, scheduler and RNGs; returns its state."""
    import torch
    from transformers import BartForConditionalGeneration

    model.load_state_dict(BartForConditionalGeneration.from_pretrained(ckpt).state_dict())
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    random.setstate(state["python_rng"])
    torch.set_rng_state(state["torch_rng"])
    return state


def make_optimizer(
    model,
    lr: float,
    weight_decay: float,
    warmup: int,
    total: int,
    min_ratio: float = 0.1,
    encoder_lr: float | None = None,
):
    """AdamW with warmup + cosine; `encoder_lr` (if set) applies to the encoder's own layers and positions
    (not the shared embeddings), e.g. a lower rate for a warm-started encoder under a fresh decoder."""
    import torch

    decay, no_decay, enc_decay, enc_no_decay = [], [], [], []
    for name, p in model.named_parameters():
        encoder = encoder_lr is not None and name.startswith("model.encoder.") and "embed_tokens" not in name
        if p.ndim < 2 or "norm" in name:
            (enc_no_decay if encoder else no_decay).append(p)
        else:
            (enc_decay if encoder else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if encoder_lr is not None:
        groups += [
            {"params": enc_decay, "weight_decay": weight_decay, "lr": encoder_lr},
            {"params": enc_no_decay, "weight_decay": 0.0, "lr": encoder_lr},
        ]
    optimizer = torch.optim.AdamW(
        groups,
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, scheduler


def optimizer_step(model, optimizer, scheduler, loss) -> None:
    """One update from `loss`: gradients clipped to norm 1, then the learning-rate schedule advances."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()


def seq2seq_loss(model, batch, label_smoothing: float):
    import torch.nn.functional as F

    labels = batch["labels"]
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=batch["decoder_input_ids"],
    )
    logits = out.logits
    loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100, label_smoothing=label_smoothing
    )
    return loss, int((labels != -100).sum())


def probe_batch(texts: Sequence[str], tokenizer, max_len: int, size: int = 32, seed: int = 0):
    """A fixed denoising batch of `size` corpus texts, for `input_gain` (same noise every call)."""
    from reviewsum_build.tokenizer import EOS_ID, MASK_ID

    rng = random.Random(seed)
    chosen = rng.sample(list(texts), min(size, len(texts)))
    return denoise_batch(chosen, tokenizer, Noiser(MASK_ID, EOS_ID), max_len, rng)


def input_gain(model, batch) -> float:
    """Loss (nats/token) with each target paired with another text's source, minus the matched loss.

    Near zero means the decoder ignores its input and writes generic text: the failure a too-high
    pretraining learning rate produced (the fourth session's from-scratch run).
    """
    import torch

    if len(batch["input_ids"]) < 2:
        raise ValueError("input_gain needs at least two texts")
    shuffled = dict(batch)
    shuffled["input_ids"] = torch.roll(batch["input_ids"], 1, dims=0)
    shuffled["attention_mask"] = torch.roll(batch["attention_mask"], 1, dims=0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        matched, _ = seq2seq_loss(model, batch, 0.0)
        mismatched, _ = seq2seq_loss(model, shuffled, 0.0)
    model.train(was_training)
    return float(mismatched - matched)


# ---------------------------------------------------------------- tokenizer


def cmd_tokenizer(args) -> None:
    from reviewsum_build.corpus import read_corpus
    from reviewsum_build.tokenizer import save_tokenizer, train_tokenizer

    texts = read_corpus(args.corpus)
    if args.data_dir is not None:
        # The reference summaries of the training split teach the tokenizer their style (。，但);
        # dev summaries are not read.
        from reviewsum_build.annotation import load_pairs

        pairs, _ = load_pairs(args.data_dir.resolve())
        texts += [p.summary for p in pairs if p.split == "train"]
    tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size)
    save_tokenizer(tokenizer, args.out)
    sample = texts[0][:40]
    print(
        f"vocab {tokenizer.get_vocab_size()} from {len(texts)} texts; '{sample}' -> {tokenizer.encode(sample).tokens}"
    )


# ---------------------------------------------------------------- pretraining


def _train_loop(
    args,
    model,
    tokenizer,
    batches_for_epoch,
    run_dir: Path,
    total_steps: int,
    on_epoch_end=None,
    extra_state: dict | None = None,
    probe=None,
):
    """Shared loop. `batches_for_epoch(epoch)` returns a list of callables producing batches; the loop
    resumes inside an epoch by skipping the batches already done. `probe(model)`, if given, returns the
    model's input gain at every checkpoint (logged; the run stops below `args.min_input_gain`)."""
    from tqdm import tqdm

    optimizer, scheduler = make_optimizer(
        model, args.lr, args.weight_decay, args.warmup, total_steps, encoder_lr=getattr(args, "encoder_lr", None)
    )
    step, epoch, batch_in_epoch = 0, 0, 0
    state_extra = dict(extra_state or {})
    if args.resume and (ckpt := latest_checkpoint(run_dir)) is not None:
        state = restore_checkpoint(ckpt, model, optimizer, scheduler)
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        state_extra.update(state.get("extra", {}))
        print(f"resumed from {ckpt} at step {step} (epoch {epoch}, batch {batch_in_epoch})")
    log = RunLog(run_dir)
    start = time.monotonic()
    deadline = start + args.max_minutes * 60 if args.max_minutes else None
    model.train()
    bar = tqdm(total=total_steps, initial=step, desc=run_dir.name, dynamic_ncols=True, mininterval=5)
    running, running_n = 0.0, 0
    stop_reason = "max steps"

    def checkpoint():
        extra = {"epoch": epoch, "batch_in_epoch": batch_in_epoch, "extra": state_extra}
        return save_checkpoint(run_dir, step, model, tokenizer, optimizer, scheduler, extra)

    while step < total_steps:
        batches = batches_for_epoch(epoch)
        while batch_in_epoch < len(batches) and step < total_steps:
            batch = batches[batch_in_epoch]()
            loss, ntok = seq2seq_loss(model, batch, args.label_smoothing)
            optimizer_step(model, optimizer, scheduler, loss)
            step += 1
            batch_in_epoch += 1
            running += loss.item()
            running_n += 1
            bar.update(1)
            if step % args.log_every == 0:
                avg = running / running_n
                bar.set_postfix(loss=f"{avg:.3f}", ep=epoch)
                log.write(
                    step=step,
                    epoch=epoch,
                    loss=round(avg, 4),
                    lr=scheduler.get_last_lr()[0],
                    batch=len(batch["input_ids"]),
                    elapsed_s=round(time.monotonic() - start, 1),
                )
                running, running_n = 0.0, 0
            if step % args.save_every == 0:
                checkpoint()
                if probe is not None:
                    check_input_gain(args, probe(model), step, log)
            if deadline is not None and time.monotonic() > deadline:
                stop_reason = "time budget"
                break
        if deadline is not None and time.monotonic() > deadline:
            stop_reason = "time budget"
            break
        if batch_in_epoch >= len(batches):
            if on_epoch_end is not None:
                model.eval()
                stop = on_epoch_end(epoch, step, state_extra, log)
                model.train()
            else:
                stop = False
            epoch, batch_in_epoch = epoch + 1, 0
            if stop:
                stop_reason = "early stop"
                break
    bar.close()
    ckpt = checkpoint()
    if probe is not None and step % args.save_every:  # steps on the saving grid were probed in the loop
        check_input_gain(args, probe(model), step, log)
    minutes = (time.monotonic() - start) / 60
    log.write(event="stop", reason=stop_reason, step=step, minutes=round(minutes, 2))
    print(f"stopped ({stop_reason}) at step {step} after {minutes:.1f} min; checkpoint {ckpt}")
    return step, state_extra


class NotReadingInput(RuntimeError):
    pass


def check_input_gain(args, gain: float, step: int, log: RunLog) -> None:
    """Log the input gain; raise `NotReadingInput` when it is still too low after the grace steps."""
    from tqdm import tqdm

    log.write(step=step, input_gain=round(gain, 4))
    tqdm.write(f"step {step}: input gain {gain:.2f} nats/token")
    if args.min_input_gain and step >= args.input_gain_after and gain < args.min_input_gain:
        log.write(event="stop", reason="not reading its input", step=step, input_gain=round(gain, 4))
        raise NotReadingInput(
            f"step {step}: input gain {gain:.2f} < {args.min_input_gain} nats/token: the model writes the "
            "same text whatever its input. Start again with a lower --lr (or another --seed); "
            "--min-input-gain 0 turns this check off."
        )


def cmd_pretrain(args) -> None:
    import torch

    from reviewsum_build.corpus import read_corpus
    from reviewsum_build.modeling import MAX_SOURCE_TOKENS, build_model, count_parameters
    from reviewsum_build.tokenizer import EOS_ID, MASK_ID, load_tokenizer

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    if args.init is not None:  # continue from a checkpoint (e.g. a warm-started encoder); its tokenizer too
        from transformers import BartForConditionalGeneration

        from reviewsum_build.modeling import generation_config

        tokenizer = load_tokenizer(args.tokenizer or args.init)
        model = BartForConditionalGeneration.from_pretrained(args.init, dropout=args.dropout)
        model.generation_config = generation_config()
        name = str(args.init)
    else:
        tokenizer = load_tokenizer(args.tokenizer or RUNS / "tokenizer")
        model = build_model(tokenizer.get_vocab_size(), args.size, args.dropout)
        name = args.size
    texts = read_corpus(args.corpus)
    max_len = min(args.max_len, MAX_SOURCE_TOKENS)
    print(f"model {name}: {count_parameters(model) / 1e6:.2f}M parameters; corpus {len(texts)} texts")
    noiser = Noiser(MASK_ID, EOS_ID)
    lengths = [len(ids) for ids in encode_all(tokenizer, texts, max_len)]

    def batches_for_epoch(epoch: int):
        rng = random.Random(args.seed * 1000 + epoch)
        groups = length_batches(lengths, args.tokens_per_batch, args.max_batch, rng)
        return [
            _denoise_batch_fn(texts, g, tokenizer, noiser, max_len, args.seed, epoch, b) for b, g in enumerate(groups)
        ]

    probe = probe_batch(texts, tokenizer, max_len, seed=args.seed)
    total = args.max_steps
    try:
        _train_loop(
            args, model, tokenizer, batches_for_epoch, args.run_dir, total, probe=lambda m: input_gain(m, probe)
        )
    except NotReadingInput as err:
        raise SystemExit(f"pretraining stopped: {err}") from None
    final = args.run_dir / "final"
    save_hf(model, tokenizer, final)
    print(f"saved {final}")


def _denoise_batch_fn(texts, indices, tokenizer, noiser, max_len, seed, epoch, b):
    def make():
        rng = random.Random(hash((seed, epoch, b)) & 0xFFFFFFFF)
        return denoise_batch([texts[i] for i in indices], tokenizer, noiser, max_len, rng)

    return make


def denoise_batch(texts, tokenizer, noiser, max_len, rng):
    """Targets are the original texts; sources are permuted + infilled. Long texts get a random window."""
    from reviewsum_build.tokenizer import EOS_ID

    sources, targets = [], []
    for text in texts:
        ids = tokenizer.encode(text).ids
        if len(ids) > max_len:  # a random window of a long review, no permutation
            begin = rng.randrange(0, len(ids) - max_len + 1)
            target = ids[begin : begin + max_len - 1] + [EOS_ID]
            noisy = target
        else:
            target = ids
            noisy = tokenizer.encode(noiser.permute(text, rng)).ids[:max_len]
        sources.append(noiser.infill(noisy, rng))
        targets.append(target)
    return make_batch(sources, targets)


# ---------------------------------------------------------------- fine-tuning


def load_for_tuning(args):
    """Tokenizer and model of `args.init`, with the run's threads, seed, dropout and served decoding."""
    import torch
    from transformers import BartForConditionalGeneration

    from reviewsum_build.modeling import generation_config
    from reviewsum_build.tokenizer import load_tokenizer

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    tokenizer = load_tokenizer(args.init)
    model = BartForConditionalGeneration.from_pretrained(args.init, dropout=args.dropout)
    model.generation_config = generation_config()
    return tokenizer, model


def train_and_dev_pairs(data_dir: Path, references_dir: Path | None) -> tuple[list, list, dict]:
    """Training pairs, Chinese dev pairs and what was skipped; stops if a training review is a dev review."""
    from reviewsum_build.annotation import load_pairs

    if references_dir is not None:
        pairs, skipped = load_pairs(data_dir.resolve(), references_dir.resolve())
    else:
        pairs, skipped = load_pairs(data_dir.resolve())
    train = [p for p in pairs if p.split == "train"]
    dev = [p for p in pairs if p.split == "dev" and p.language == "zh"]
    dev_reviews = {p.review for p in dev}
    leaked = [p for p in train if p.review in dev_reviews]
    if leaked:
        raise SystemExit(f"{len(leaked)} training pairs share a review with the dev set")
    return train, dev, skipped


def cmd_finetune(args) -> None:
    from reviewsum_build.corpus import read_corpus
    from reviewsum_build.modeling import MAX_SOURCE_TOKENS, MAX_SUMMARY_TOKENS
    from reviewsum_build.tokenizer import EOS_ID, MASK_ID

    tokenizer, model = load_for_tuning(args)
    train, dev, skipped = train_and_dev_pairs(args.data_dir, args.references_dir)
    dev_reviews = {p.review for p in dev}
    print(
        f"train pairs {len(train)} (zh {sum(p.language == 'zh' for p in train)}, en "
        f"{sum(p.language == 'en' for p in train)}); dev {len(dev)}; skipped {skipped}"
    )
    reviews, summaries = [p.review for p in train], [p.summary for p in train]
    if args.silver is not None:
        silver = silver_pairs(args.silver, dev_reviews | set(reviews))
        print(f"silver pairs {len(silver)} from {args.silver} (machine-written, kept apart from the references)")
        reviews += [p.review for p in silver]
        summaries += [p.summary for p in silver]
    src = encode_all(tokenizer, reviews, MAX_SOURCE_TOKENS)
    tgt = encode_all(tokenizer, summaries, MAX_SUMMARY_TOKENS)
    dev_src = encode_all(tokenizer, [p.review for p in dev], MAX_SOURCE_TOKENS)
    dev_tgt = encode_all(tokenizer, [p.summary for p in dev], MAX_SUMMARY_TOKENS)
    noiser = Noiser(MASK_ID, EOS_ID)
    corpus = read_corpus(args.corpus) if args.denoise_mix > 0 and args.corpus and args.corpus.exists() else []
    lengths = [len(s) + len(t) for s, t in zip(src, tgt, strict=True)]

    def batches_for_epoch(epoch: int):
        rng = random.Random(args.seed * 1000 + epoch)
        groups = length_batches(lengths, args.tokens_per_batch, args.max_batch, rng, bucket=20)
        fns = [(lambda g=g: make_batch([src[i] for i in g], [tgt[i] for i in g])) for g in groups]
        if corpus:
            n_mix = round(len(groups) * args.denoise_mix)
            picks = [rng.sample(range(len(corpus)), args.max_batch) for _ in range(n_mix)]
            fns += [
                _denoise_batch_fn(corpus, g, tokenizer, noiser, 96, args.seed, epoch, 10_000 + b)
                for b, g in enumerate(picks)
            ]
            rng.shuffle(fns)
        return fns

    steps_per_epoch = len(batches_for_epoch(0))
    total = args.max_steps or steps_per_epoch * args.epochs
    print(f"{steps_per_epoch} steps per epoch, {total} steps planned")
    best_dir = args.run_dir / "best"

    def on_epoch_end(epoch: int, step: int, state: dict, log: RunLog) -> bool:
        dev_loss = evaluate_loss(model, dev_src, dev_tgt)
        row = {"event": "dev", "epoch": epoch, "step": step, "dev_loss": round(dev_loss, 4)}
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 >= args.epochs:
            scores = evaluate_generation(model, tokenizer, dev, dev_src)
            row.update(scores)
            best = state.get("best_rougeL", -1.0)
            if scores["rougeL"] > best:
                state["best_rougeL"] = scores["rougeL"]
                state["best_step"] = step
                state["stale"] = 0
                save_hf(model, tokenizer, best_dir)
                row["saved_best"] = True
            else:
                state["stale"] = state.get("stale", 0) + 1
        log.write(**row)
        print(json.dumps(row))
        return state.get("stale", 0) >= args.patience

    _, state = _train_loop(args, model, tokenizer, batches_for_epoch, args.run_dir, total, on_epoch_end)
    save_hf(model, tokenizer, args.run_dir / "final")
    if not best_dir.exists():
        save_hf(model, tokenizer, best_dir)
    print(f"best dev ROUGE-L {state.get('best_rougeL')} at step {state.get('best_step')}: {best_dir}")


def silver_pairs(path: Path, excluded_reviews: set[str]) -> list:
    """The written (faithful) silver pairs whose review is neither a dev review nor a referenced one."""
    from reviewsum_build.silver import read_silver

    return [p for p in read_silver(path) if p.summary and p.review not in excluded_reviews]


def evaluate_loss(model, src, tgt, batch_size: int = 64) -> float:
    import torch

    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(src), batch_size):
            batch = make_batch(src[i : i + batch_size], tgt[i : i + batch_size])
            loss, ntok = seq2seq_loss(model, batch, 0.0)
            total += loss.item() * ntok
            n += ntok
    return total / max(1, n)


def generate_ids(model, src: Sequence[Sequence[int]], batch_size: int = 48, **gen_kwargs) -> list[list[int]]:
    """Greedy (or beam) generation in length-sorted batches; returns ids without `<s>`/`</s>`/pad."""
    return [best for best, *_ in generate_nbest_ids(model, src, 1, batch_size, **gen_kwargs)]


def generate_nbest_ids(
    model, src: Sequence[Sequence[int]], n: int, batch_size: int = 48, **gen_kwargs
) -> list[list[list[int]]]:
    """Each source's `n` best generations (beam search needs at least `n` beams), best first, as `generate_ids`."""
    import torch

    from reviewsum_build.tokenizer import PAD_ID

    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    out: list[list[list[int]]] = [[] for _ in src]
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            input_ids = pad([src[i] for i in idx], PAD_ID)
            gen = model.generate(
                input_ids=input_ids,
                attention_mask=(input_ids != PAD_ID).long(),
                num_return_sequences=n,
                **gen_kwargs,
            ).tolist()
            for k, i in enumerate(idx):
                out[i] = [_strip_specials(row) for row in gen[k * n : (k + 1) * n]]
    return out


def _strip_specials(row: Sequence[int]) -> list[int]:
    from reviewsum_build.tokenizer import BOS_ID, EOS_ID, PAD_ID

    ids = [t for t in row if t not in (BOS_ID, PAD_ID)]
    return ids[: ids.index(EOS_ID)] if EOS_ID in ids else ids


def evaluate_generation(model, tokenizer, dev, dev_src) -> dict:
    from reviewsum_build.metrics import rouge_scores

    ids = generate_ids(model, dev_src)
    preds = [tokenizer.decode(x) for x in ids]
    scores = rouge_scores(preds, [p.summary for p in dev])
    return {k: round(v, 2) for k, v in scores.items()}


# ---------------------------------------------------------------- all


def cmd_all(args) -> None:
    """Every step from scratch, in order; each later step reads the previous one's output."""
    import subprocess
    import sys

    run = args.runs_dir
    py = [sys.executable, "-m"]
    steps = [
        [*py, "reviewsum_build.corpus", "--data-dir", str(args.data_dir), "--out", str(run / "corpus/corpus.txt")],
        [
            *py,
            "reviewsum_build.train",
            "tokenizer",
            "--corpus",
            str(run / "corpus/corpus.txt"),
            "--data-dir",
            str(args.data_dir),
            "--out",
            str(run / "tokenizer"),
            "--vocab-size",
            str(args.vocab_size),
        ],
        [
            *py,
            "reviewsum_build.train",
            "pretrain",
            "--corpus",
            str(run / "corpus/corpus.txt"),
            "--tokenizer",
            str(run / "tokenizer"),
            "--run-dir",
            str(run / "pretrain"),
            "--max-steps",
            str(args.pretrain_steps),
            "--max-minutes",
            str(args.pretrain_minutes),
            "--resume",
        ],
        [
            *py,
            "reviewsum_build.train",
            "finetune",
            "--init",
            str(run / "pretrain/final"),
            "--data-dir",
            str(args.data_dir),
            "--corpus",
            str(run / "corpus/corpus.txt"),
            "--run-dir",
            str(run / "finetune"),
            "--epochs",
            str(args.finetune_epochs),
            "--max-minutes",
            str(args.finetune_minutes),
            "--resume",
        ],
    ]
    for cmd in steps:
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


# ---------------------------------------------------------------- CLI


def _train_args(
    p: argparse.ArgumentParser, lr: float, warmup: int, tokens: int, save_every: int, max_batch: int, dropout: float
) -> None:
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--encoder-lr", type=float, default=None, help="a separate rate for the encoder layers")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=dropout)
    p.add_argument("--tokens-per-batch", type=int, default=tokens, help="padded source tokens per batch")
    p.add_argument("--max-batch", type=int, default=max_batch)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0, help="stop cleanly (and save) after this long")
    p.add_argument("--save-every", type=int, default=save_every)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --run-dir")


def main(argv: list[str] | None = None) -> None:
    from reviewsum_build.sources import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tokenizer", help="train the BPE tokenizer on the corpus")
    t.add_argument("--corpus", type=Path, default=RUNS / "corpus" / "corpus.txt")
    t.add_argument("--data-dir", type=Path, default=None, help="also read training reference summaries")
    t.add_argument("--out", type=Path, default=RUNS / "tokenizer")
    t.add_argument("--vocab-size", type=int, default=12000)

    p = sub.add_parser("pretrain", help="BART denoising on the unlabeled corpus")
    p.add_argument("--corpus", type=Path, default=RUNS / "corpus" / "corpus.txt")
    p.add_argument("--tokenizer", type=Path, default=None, help="default: runs/tokenizer, or --init's tokenizer")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint instead of a fresh model")
    p.add_argument("--size", default="small")
    p.add_argument("--max-len", type=int, default=128)
    # lr 8e-4 with 200 warm-up steps (version 1's) left a fresh model that never read its input in the fourth
    # session's run; 4e-4 with 500 reconstructed its input within 1,200 steps (model card, Training).
    _train_args(p, lr=4e-4, warmup=500, tokens=2560, save_every=200, max_batch=64, dropout=0.1)
    p.add_argument(
        "--min-input-gain",
        type=float,
        default=0.5,
        help="stop when the loss gained from the real input (nats/token) is below this; 0: never",
    )
    p.add_argument("--input-gain-after", type=int, default=1500, help="steps before --min-input-gain applies")

    f = sub.add_parser("finetune", help="fine-tune on the training reference pairs; keep the best by dev ROUGE-L")
    f.add_argument("--init", type=Path, required=True, help="a pretrained checkpoint directory")
    f.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    f.add_argument("--references-dir", type=Path, default=None, help="default: build/data/references")
    f.add_argument("--corpus", type=Path, default=RUNS / "corpus" / "corpus.txt")
    f.add_argument(
        "--silver", type=Path, default=None, help="also train on these machine-written pairs (reviewsum_build.silver)"
    )
    f.add_argument("--denoise-mix", type=float, default=0.2, help="denoising batches per summary batch")
    f.add_argument("--epochs", type=int, default=30)
    f.add_argument("--eval-every", type=int, default=1, help="epochs between dev ROUGE evaluations")
    f.add_argument("--patience", type=int, default=4, help="stop after this many evaluations without gain")
    _train_args(f, lr=3e-4, warmup=100, tokens=4096, save_every=200, max_batch=32, dropout=0.3)

    a = sub.add_parser("all", help="corpus, tokenizer, pretrain, finetune from scratch")
    a.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    a.add_argument("--runs-dir", type=Path, default=RUNS)
    a.add_argument("--vocab-size", type=int, default=12000)
    a.add_argument("--pretrain-steps", type=int, default=3437)
    a.add_argument("--pretrain-minutes", type=float, default=75)
    # The fifth session's run: pretraining 3,437 steps in 54 min, three fine-tuning epochs on all pairs in
    # 42 min (2-core Xeon), dev ROUGE-L 52.4; the time caps keep a slower machine inside 150 minutes.
    a.add_argument("--finetune-epochs", type=int, default=3)
    a.add_argument("--finetune-minutes", type=float, default=60)

    args = parser.parse_args(argv)
    _limit_threads(getattr(args, "threads", 2))
    {"tokenizer": cmd_tokenizer, "pretrain": cmd_pretrain, "finetune": cmd_finetune, "all": cmd_all}[args.command](args)


if __name__ == "__main__":
    main()
