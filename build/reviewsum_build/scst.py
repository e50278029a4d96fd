"""Self-critical fine-tuning (SCST): teach the greedy decoder what scores well, not only what is likely.

Teacher forcing trains each next token on the reference's prefix; the served model is judged on its
own greedy output. For every training review this stage samples `--samples` summaries from the model,
scores each against the written reference (character ROUGE-L F1, as `evaluate` scores, minus a
penalty for every summary character the review lacks and for a 但 the reference lacks), and raises
the probability of the samples that beat the model's own greedy summary and lowers the others
(Rennie et al. 2017's self-critical baseline). A share of plain teacher-forced loss on the same
references keeps the language fluent.

    python -m reviewsum_build.scst --init runs/v4 --data-dir ../shared/data --run-dir runs/scst --max-minutes 40

The defaults are the sixth session's second run (`docs/model_card.md`, Training). The seventh
session's run compares each sample with the mean of the review's other samples instead of the greedy
summary (`--baseline loo`, Kool et al. 2019: no greedy decoding per step), samples at `--temperature
0.6` so the samples stay near what greedy decoding would write, gives no ROUGE-L credit to a summary
that invents (`--faithful-only`), and keeps the weights of every evaluation (`--keep-evals`) for
`reviewsum_build.average`. The eighth session's run adds a polarity term (`--polarity-judge`,
`--polarity-weight`): credit for a summary that a polarity classifier reads as it reads the written
reference. Train that judge with other settings and another split than the evaluation's
(`python -m reviewsum_build.sentiment --out ... --seed 1` with other n-gram settings), so the stage is
not taught the evaluation judge's own quirks. Neither that run nor one with a judge trained
`--without-train-summaries` moved dev polarity: at temperature 0.6 a review's samples rarely differ in
polarity, so against the leave-one-out baseline the term mostly cancels. The ninth session's hand
audit (`reviewsum_build.polarity_audit`) adds that such a judge's disagreements are mostly its own
errors: it flags 29 of version 5's dev summaries, of which annotators fail 11 (they fail 35).

Dev ROUGE-L (greedy, the served decoding) is measured every `--eval-every` steps; the best checkpoint
is kept in `RUN_DIR/best`. Resumable with `--resume`; progress bar and `RUN_DIR/log.jsonl` as in
`train`.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reviewsum_build import metrics, sentiment
from reviewsum_build.sources import DEFAULT_DATA_DIR
from reviewsum_build.train import (
    RunLog,
    encode_all,
    evaluate_generation,
    latest_checkpoint,
    load_for_tuning,
    make_batch,
    make_optimizer,
    optimizer_step,
    pad,
    restore_checkpoint,
    save_checkpoint,
    save_hf,
    seq2seq_loss,
    train_and_dev_pairs,
)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_f1(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F1 in [0, 1] over token lists (the same tokens and formula as `metrics.rouge`)."""
    lcs = lcs_length(prediction, reference)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(prediction), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Target:
    """What a sampled summary is scored against: the reference's tokens, the review's token set and,
    with a polarity judge, the judge's positive probability for the reference."""

    reference: tuple[str, ...]
    review_tokens: frozenset[str]
    reference_positive: float | None = None


def make_target(review: str, reference: str, reference_positive: float | None = None) -> Target:
    return Target(tuple(metrics.tokens(reference)), frozenset(metrics.tokens(review)), reference_positive)


def polarity_bonuses(judge, texts: Sequence[str], targets: Sequence[Target], weight: float) -> list[float]:
    """`weight` x (1 - |p(text) - p(reference)|) under the judge: full credit for a summary the judge
    reads exactly as it reads the written reference, none for the opposite reading. The reference,
    not the review, is the anchor: short summary-style text written to keep the review's polarity."""
    if judge is None or weight == 0:
        return [0.0] * len(texts)
    probabilities = judge.positive_probability(texts)
    return [weight * (1 - abs(p - t.reference_positive)) for p, t in zip(probabilities, targets, strict=True)]


def reward(
    summary: str, target: Target, absent_penalty: float, but_penalty: float = 0.0, faithful_only: bool = False
) -> float:
    """ROUGE-L F1 against the reference, minus `absent_penalty` x the share of invented tokens, minus
    `but_penalty` for a contrast (但) the reference does not draw. With `faithful_only` a summary that
    invents any token earns no ROUGE-L credit at all, so no overlap gain can pay for an invention."""
    toks = metrics.tokens(summary)
    if not toks:
        return 0.0
    content = [t for t in toks if t not in metrics.TEMPLATE_WORDS]
    invented = sum(t not in target.review_tokens for t in content) / max(1, len(content))
    spurious_but = "但" in toks and "但" not in target.reference
    overlap = 0.0 if faithful_only and invented else rouge_l_f1(toks, target.reference)
    return overlap - absent_penalty * invented - but_penalty * spurious_but


def leave_one_out_advantages(rewards: Sequence[float], k: int) -> list[float]:
    """Each sample's reward minus the mean reward of the other k - 1 samples of the same review
    (Kool et al. 2019): a baseline that needs no extra greedy decoding and is unbiased."""
    out = []
    for start in range(0, len(rewards), k):
        group = rewards[start : start + k]
        total = sum(group)
        out.extend(r - (total - r) / (k - 1) for r in group)
    return out


def strip_generated(row: Sequence[int]) -> list[int]:
    """Generated ids without the decoder start token, up to and including `</s>`."""
    from reviewsum_build.tokenizer import EOS_ID

    ids = list(row[1:])
    return ids[: ids.index(EOS_ID) + 1] if EOS_ID in ids else ids


def sequence_log_probs(model, input_ids, attention_mask, sequences: Sequence[Sequence[int]]):
    """Sum of token log-probabilities of each sequence (ending in `</s>`) and its length, teacher-forced."""
    import torch

    from reviewsum_build.tokenizer import BOS_ID, PAD_ID

    labels = pad([list(s) for s in sequences], PAD_ID)
    decoder_input_ids = pad([[BOS_ID, *s[:-1]] for s in sequences], PAD_ID)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    mask = (labels != PAD_ID).float()
    return (logp * mask).sum(-1), mask.sum(-1)


def decode_texts(tokenizer, sequences: Sequence[Sequence[int]]) -> list[str]:
    from reviewsum_build.tokenizer import EOS_ID

    return [tokenizer.decode([t for t in s if t != EOS_ID]) for s in sequences]


def full_rewards(texts: Sequence[str], targets: Sequence[Target], args, judge) -> list[float]:
    """`reward` for each text plus, with a polarity judge, its polarity bonus."""
    penalties = (args.absent_penalty, args.but_penalty, args.faithful_only)
    base = [reward(t, tg, *penalties) for t, tg in zip(texts, targets, strict=True)]
    bonus = polarity_bonuses(judge, texts, targets, args.polarity_weight)
    return [b + p for b, p in zip(base, bonus, strict=True)]


def scst_loss(model, tokenizer, src: Sequence[Sequence[int]], targets: Sequence[Target], args, judge=None) -> tuple:
    """Self-critical policy-gradient loss for one batch, and (mean sample reward, mean greedy reward);
    the greedy reward is None with the leave-one-out baseline, which decodes no greedy summary."""
    import torch

    from reviewsum_build.modeling import generation_config
    from reviewsum_build.tokenizer import PAD_ID

    k = args.samples
    served = generation_config()
    input_ids = pad(src, PAD_ID)
    attention_mask = (input_ids != PAD_ID).long()
    model.eval()
    with torch.no_grad():
        greedy = (
            model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=served)
            if args.baseline == "greedy"
            else None
        )
        sampled = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=served,
            do_sample=True,
            top_k=0,
            temperature=args.temperature,
            num_return_sequences=k,
        )
    model.train()
    sample_seqs = [strip_generated(r) for r in sampled.tolist()]
    sample_targets = [targets[i // k] for i in range(len(sample_seqs))]
    sample_r = full_rewards(decode_texts(tokenizer, sample_seqs), sample_targets, args, judge)
    if greedy is None:
        advantage = torch.tensor(leave_one_out_advantages(sample_r, k))
        greedy_mean = None
    else:
        greedy_texts = decode_texts(tokenizer, [strip_generated(r) for r in greedy.tolist()])
        greedy_r = full_rewards(greedy_texts, targets, args, judge)
        advantage = torch.tensor([r - greedy_r[i // k] for i, r in enumerate(sample_r)])
        greedy_mean = sum(greedy_r) / len(greedy_r)
    keep = [i for i, s in enumerate(sample_seqs) if s]
    rep = torch.tensor([i // k for i in keep])
    logp, lengths = sequence_log_probs(model, input_ids[rep], attention_mask[rep], [sample_seqs[i] for i in keep])
    loss = -(advantage[keep] * logp).sum() / lengths.sum()
    return loss, sum(sample_r) / len(sample_r), greedy_mean


def batches(n: int, size: int, rng: random.Random) -> list[list[int]]:
    order = list(range(n))
    rng.shuffle(order)
    return [order[i : i + size] for i in range(0, n, size)]


def long_reviews_only(pairs: list, min_chars: int) -> list:
    """The training pairs whose review has at least `min_chars` characters (all of them for 0).

    Long, rambling reviews are where the served model loses polarity most (ninth session's hand audit:
    30% of dev reviews of 100+ characters against 4% under 30), so a stage can be spent on them alone."""
    return [p for p in pairs if len(p.review) >= min_chars]


def run(args) -> dict:
    from tqdm import tqdm

    from reviewsum_build.modeling import MAX_SOURCE_TOKENS, MAX_SUMMARY_TOKENS

    tokenizer, model = load_for_tuning(args)
    train, dev, _ = train_and_dev_pairs(args.data_dir, args.references_dir)
    train = long_reviews_only(train, args.min_review_chars)
    if not train or not dev:
        raise SystemExit(f"need training and dev pairs; found {len(train)} train, {len(dev)} dev in {args.data_dir}")
    src = encode_all(tokenizer, [p.review for p in train], MAX_SOURCE_TOKENS)
    tgt = encode_all(tokenizer, [p.summary for p in train], MAX_SUMMARY_TOKENS)
    judge = sentiment.load(args.polarity_judge) if args.polarity_judge else None
    reference_positive = judge.positive_probability([p.summary for p in train]) if judge else [None] * len(train)
    targets = [make_target(p.review, p.summary, q) for p, q in zip(train, reference_positive, strict=True)]
    dev_src = encode_all(tokenizer, [p.review for p in dev], MAX_SOURCE_TOKENS)
    steps_per_epoch = -(-len(train) // args.batch)

    @functools.lru_cache(maxsize=1)
    def epoch_batches(epoch: int) -> list[list[int]]:
        return batches(len(train), args.batch, random.Random(args.seed * 1000 + epoch))

    total = args.max_steps or steps_per_epoch * args.epochs
    print(f"train pairs {len(train)}; dev {len(dev)}; {steps_per_epoch} steps per epoch, {total} planned")
    optimizer, scheduler = make_optimizer(model, args.lr, args.weight_decay, args.warmup, total)
    step, state = 0, {"best_rougeL": -1.0}
    if args.resume and (ckpt := latest_checkpoint(args.run_dir)) is not None:
        saved = restore_checkpoint(ckpt, model, optimizer, scheduler)
        step, state = saved["step"], saved["extra"]
        print(f"resumed from {ckpt} at step {step}")
    log = RunLog(args.run_dir)

    def evaluate_dev() -> None:
        model.eval()
        scores = evaluate_generation(model, tokenizer, dev, dev_src)
        model.train()
        row = {"event": "dev", "step": step, **scores}
        if scores["rougeL"] > state["best_rougeL"]:
            state.update(best_rougeL=scores["rougeL"], best_step=step)
            save_hf(model, tokenizer, args.run_dir / "best")
            row["saved_best"] = True
        log.write(**row)
        print(json.dumps(row))

    def evaluate_and_checkpoint() -> None:
        evaluate_dev()
        # `best` keeps only the top dev score; every evaluated step's weights let a later choice
        # (another split, another metric, `reviewsum_build.average`) be made without retraining.
        if args.keep_evals:
            save_hf(model, tokenizer, args.run_dir / "steps" / f"step_{step:05d}")
        save_checkpoint(args.run_dir, step, model, tokenizer, optimizer, scheduler, {"extra": state})

    if step == 0:
        evaluate_dev()
    start = time.monotonic()
    deadline = start + args.max_minutes * 60 if args.max_minutes else None
    bar = tqdm(total=total, initial=step, desc=args.run_dir.name, dynamic_ncols=True, mininterval=5)
    window: dict[str, list[float]] = {}
    while step < total and (deadline is None or time.monotonic() < deadline):
        epoch, index = divmod(step, steps_per_epoch)
        group = epoch_batches(epoch)[index]
        batch_src = [src[i] for i in group]
        batch_targets = [targets[i] for i in group]
        rl_loss, sample_r, greedy_r = scst_loss(model, tokenizer, batch_src, batch_targets, args, judge)
        mle_loss, _ = seq2seq_loss(model, make_batch(batch_src, [tgt[i] for i in group]), args.label_smoothing)
        optimizer_step(model, optimizer, scheduler, args.rl_weight * rl_loss + (1 - args.rl_weight) * mle_loss)
        step += 1
        bar.update(1)
        observed = {"mle_loss": mle_loss.item(), "sample_reward": sample_r, "greedy_reward": greedy_r}
        for name, value in observed.items():
            if value is not None:
                window.setdefault(name, []).append(value)
        if step % args.log_every == 0:
            means = {name: round(sum(values) / len(values), 4) for name, values in window.items()}
            bar.set_postfix({name: f"{value:.3f}" for name, value in means.items() if name != "mle_loss"})
            log.write(
                step=step,
                **means,
                lr=scheduler.get_last_lr()[0],
                elapsed_s=round(time.monotonic() - start, 1),
            )
            window.clear()
        if step % args.eval_every == 0:
            evaluate_and_checkpoint()
    bar.close()
    if step % args.eval_every:
        evaluate_and_checkpoint()
    save_hf(model, tokenizer, args.run_dir / "final")
    minutes = (time.monotonic() - start) / 60
    log.write(event="stop", step=step, minutes=round(minutes, 2), **state)
    print(
        f"stopped at step {step} after {minutes:.1f} min; best dev ROUGE-L {state['best_rougeL']} at step "
        f"{state.get('best_step')}: {args.run_dir / 'best'}"
    )
    return state


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--init", type=Path, required=True, help="a fine-tuned checkpoint directory")
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--references-dir", type=Path, default=None, help="default: build/data/references")
    p.add_argument("--samples", type=int, default=4, help="sampled summaries per review")
    p.add_argument("--batch", type=int, default=32, help="reviews per step")
    p.add_argument("--rl-weight", type=float, default=0.7, help="share of the self-critical loss; the rest is MLE")
    p.add_argument("--absent-penalty", type=float, default=2.0, help="reward lost per share of invented tokens")
    p.add_argument("--but-penalty", type=float, default=0.2, help="reward lost for a 但 the reference lacks")
    p.add_argument(
        "--baseline",
        choices=("greedy", "loo"),
        default="greedy",
        help="what a sample must beat: the greedy summary, or the mean of the review's other samples",
    )
    p.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature; below 1 samples stay nearer greedy"
    )
    p.add_argument("--faithful-only", action="store_true", help="no ROUGE-L credit for a summary that invents")
    p.add_argument(
        "--polarity-judge",
        type=Path,
        default=None,
        help="a pickled classifier from `python -m reviewsum_build.sentiment`; use one other than the evaluation's",
    )
    p.add_argument(
        "--polarity-weight",
        type=float,
        default=0.0,
        help="reward for a summary the judge reads as it reads the reference (needs --polarity-judge)",
    )
    p.add_argument("--keep-evals", action="store_true", help="also save the weights at every dev evaluation")
    p.add_argument(
        "--min-review-chars", type=int, default=0, help="train only on pairs whose review has this many characters"
    )
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0, help="stop cleanly (and save) after this long")
    p.add_argument("--eval-every", type=int, default=100, help="steps between dev ROUGE-L evaluations")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --run-dir")
    args = p.parse_args(argv)
    if args.baseline == "loo" and args.samples < 2:
        p.error("--baseline loo compares each sample with the others: it needs --samples 2 or more")
    if args.polarity_weight < 0 or (args.polarity_weight > 0) != (args.polarity_judge is not None):
        p.error("--polarity-weight (positive) and --polarity-judge go together")
    if args.polarity_judge is not None and not args.polarity_judge.is_file():
        p.error(f"--polarity-judge {args.polarity_judge}: no such file (make one with reviewsum_build.sentiment)")
    if args.min_review_chars < 0:
        p.error(f"--min-review-chars must be 0 or more, got {args.min_review_chars}")
    if args.temperature <= 0:
        p.error(f"--temperature must be positive, got {args.temperature}")
    return args


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
