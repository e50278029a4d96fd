"""Self-critical fine-tuning: its reward is the evaluation's ROUGE-L, it punishes invented characters, and
its log-probabilities are the teacher-forced loss's."""

from __future__ import annotations

from pathlib import Path

import pytest
from reviewsum_build import metrics, scst, train
from reviewsum_build.tiny import TINY_CORPUS
from reviewsum_build.tokenizer import EOS_ID, load_tokenizer

PAIRS = [
    ("屏幕效果棒，性价比高，但品控需提升。", "屏幕效果非常棒，性价比高，但品控有待提升。"),
    ("轻薄便携，但性能稍弱。", "轻薄便携，但性能稍弱，续航能力一般。"),
    ("电池不错", "性能出色，但电池续航时间较短。"),
    ("Great sound, but the battery dies fast.", "The battery died quickly; sound is great."),
    ("完全无关", "物流很快"),
]


@pytest.mark.parametrize(("prediction", "reference"), PAIRS)
def test_rouge_l_is_the_evaluations(prediction: str, reference: str):
    expected = metrics.rouge(prediction, reference)["rougeL"] / 100
    got = scst.rouge_l_f1(metrics.tokens(prediction), metrics.tokens(reference))
    assert got == pytest.approx(expected, abs=1e-9)


def test_lcs_length():
    assert scst.lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert scst.lcs_length([], list("abc")) == 0


def test_reward_loses_the_share_of_invented_characters():
    review = "屏幕效果非常棒，性价比高，但品控有待提升。"
    target = scst.make_target(review, "屏幕效果棒，性价比高，但品控需提升。")
    faithful = scst.reward("屏幕效果棒，性价比高。", target, absent_penalty=0.5)
    invented = scst.reward("屏幕效果好，性价比高。", target, absent_penalty=0.5)  # 好 is not in the review
    assert faithful == pytest.approx(scst.rouge_l_f1(metrics.tokens("屏幕效果棒性价比高"), target.reference))
    rouge_invented = scst.rouge_l_f1(metrics.tokens("屏幕效果好性价比高"), target.reference)
    assert invented == pytest.approx(rouge_invented - 0.5 * 1 / 9)
    assert scst.reward("", target, absent_penalty=0.5) == 0.0
    # 但 is the template's connective: never counted as invented
    but = scst.make_target("声音好，电池差", "声音好，但电池差")
    assert scst.reward("声音好，但电池差", but, absent_penalty=1.0) == pytest.approx(1.0)


def test_reward_loses_the_but_penalty_only_for_a_contrast_the_reference_does_not_draw():
    plain = scst.make_target("声音好，但是电池差", "声音好，电池差")
    contrast = scst.make_target("声音好，但是电池差", "声音好，但电池差")
    summary = "声音好，但电池差"
    assert scst.reward(summary, plain, 0.5, but_penalty=0.2) == pytest.approx(scst.reward(summary, plain, 0.5) - 0.2)
    assert scst.reward(summary, contrast, 0.5, but_penalty=0.2) == pytest.approx(1.0)


def test_strip_generated_drops_the_start_token_and_what_follows_eos():
    assert scst.strip_generated([0, 7, 8, EOS_ID, 1, 1]) == [7, 8, EOS_ID]
    assert scst.strip_generated([0, 7, 8]) == [7, 8]


def test_sequence_log_probs_match_the_teacher_forced_loss(tiny_checkpoint: Path):
    import torch
    from transformers import BartForConditionalGeneration

    tokenizer = load_tokenizer(tiny_checkpoint)
    model = BartForConditionalGeneration.from_pretrained(tiny_checkpoint).eval()
    src = train.encode_all(tokenizer, TINY_CORPUS[:4], 64)
    tgt = train.encode_all(tokenizer, TINY_CORPUS[4:8], 64)
    batch = train.make_batch(src, tgt)
    with torch.no_grad():
        loss, ntok = train.seq2seq_loss(model, batch, 0.0)
        logp, lengths = scst.sequence_log_probs(model, batch["input_ids"], batch["attention_mask"], tgt)
    assert lengths.tolist() == [len(t) for t in tgt]
    assert float(-logp.sum() / ntok) == pytest.approx(float(loss), rel=1e-5)


def _scst_loss_on_tiny_model(checkpoint: Path, *options: str, judge=None, polarity_weight: float = 0.0):
    """The self-critical loss of the tiny model on three reviews that are their own references."""
    import torch
    from transformers import BartForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = load_tokenizer(checkpoint)
    model = BartForConditionalGeneration.from_pretrained(checkpoint)
    src = train.encode_all(tokenizer, TINY_CORPUS[:3], 64)
    targets = [scst.make_target(t, t, reference_positive=0.5) for t in TINY_CORPUS[:3]]
    args = scst.parse_args(["--init", "x", "--run-dir", "y", *options])
    args.polarity_weight = polarity_weight  # the judge is handed over directly, not loaded from a file
    return model, *scst.scst_loss(model, tokenizer, src, targets, args, judge)


def _has_gradients(model) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_scst_loss_rewards_are_scored_against_each_reviews_own_reference(tiny_checkpoint: Path):
    import torch

    # without the 但 penalty, rewards lie in [-0.5, 1]
    options = ("--samples", "2", "--absent-penalty", "0.5", "--but-penalty", "0")
    model, loss, sample_reward, greedy_reward = _scst_loss_on_tiny_model(tiny_checkpoint, *options)
    assert loss.requires_grad and torch.isfinite(loss)
    assert -0.5 <= sample_reward <= 1.0 and -0.5 <= greedy_reward <= 1.0
    assert model.training  # generation ran in eval mode; the gradient pass trains
    loss.backward()
    assert _has_gradients(model)


def test_scst_loss_with_the_leave_one_out_baseline_decodes_no_greedy_summary(tiny_checkpoint: Path):
    import torch

    options = ("--samples", "3", "--baseline", "loo", "--faithful-only")
    model, loss, sample_reward, greedy_reward = _scst_loss_on_tiny_model(tiny_checkpoint, *options)
    assert greedy_reward is None
    assert torch.isfinite(loss) and -2.2 <= sample_reward <= 1.0  # penalties 2.0 (absent) and 0.2 (但)
    loss.backward()
    assert _has_gradients(model)


def test_leave_one_out_advantage_is_reward_minus_the_mean_of_the_others():
    got = scst.leave_one_out_advantages([0.9, 0.3, 0.3, 0.1, 0.5, 0.5], k=3)
    expected = [0.9 - 0.3, 0.3 - 0.6, 0.3 - 0.6, 0.1 - 0.5, 0.5 - 0.3, 0.5 - 0.3]
    assert got == pytest.approx(expected)
    assert scst.leave_one_out_advantages([0.4, 0.4], k=2) == [0.0, 0.0]  # equal samples teach nothing


def test_faithful_only_takes_all_overlap_credit_from_a_summary_that_invents():
    target = scst.make_target("屏幕效果非常棒，性价比高。", "屏幕效果棒，性价比高。")
    faithful = "屏幕效果棒，性价比高。"
    inventing = "屏幕效果棒，性价比超高。"  # 超 is not in the review
    assert scst.reward(faithful, target, 0.0, faithful_only=True) == pytest.approx(1.0)
    assert scst.reward(inventing, target, 0.0) > 0.8
    assert scst.reward(inventing, target, 0.0, faithful_only=True) == 0.0
    share = 1 / len(metrics.tokens(inventing))
    assert scst.reward(inventing, target, 2.0, faithful_only=True) == pytest.approx(-2.0 * share)


def test_scst_run_end_to_end_keeps_every_evaluations_weights(tiny_checkpoint: Path, tmp_path: Path):
    import json

    from tests.unit.fake_pairs import data_and_references

    data, refs = data_and_references(tmp_path)
    run_dir = tmp_path / "run"
    args = scst.parse_args(
        [
            *("--init", str(tiny_checkpoint), "--run-dir", str(run_dir), "--data-dir", str(data)),
            *("--references-dir", str(refs), "--batch", "1", "--samples", "2", "--max-steps", "3"),
            *("--eval-every", "2", "--log-every", "1", "--threads", "1", "--warmup", "1"),
            *("--baseline", "loo", "--temperature", "0.6", "--faithful-only", "--keep-evals"),
        ]
    )

    state = scst.run(args)

    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["step"] for row in log if row.get("event") == "dev"] == [0, 2, 3]  # start, every 2, the end
    steps = [row for row in log if "sample_reward" in row]
    assert [row["step"] for row in steps] == [1, 2, 3]
    assert all("greedy_reward" not in row for row in steps)  # the leave-one-out baseline decodes no greedy
    assert sorted(p.name for p in (run_dir / "steps").iterdir()) == ["step_00002", "step_00003"]
    assert (run_dir / "steps" / "step_00003" / "model.safetensors").exists()
    assert 0.0 <= state["best_rougeL"] <= 100.0 and (run_dir / "best" / "model.safetensors").exists()


class _LexiconJudge:
    """A stand-in polarity judge: positive probability 0.9 with 好 in the text, 0.2 with 差, else 0.5."""

    def positive_probability(self, texts):
        return [0.9 if "好" in t else 0.2 if "差" in t else 0.5 for t in texts]


def test_polarity_bonus_is_the_weight_times_how_close_the_judge_reads_summary_and_reference():
    judge = _LexiconJudge()
    target = scst.make_target("质量好，但物流差。", "质量好。", reference_positive=0.9)
    texts = ["质量好。", "物流差。", "质量。"]
    assert scst.polarity_bonuses(judge, texts, [target] * 3, 0.5) == pytest.approx([0.5, 0.5 * 0.3, 0.5 * 0.6])
    assert scst.polarity_bonuses(None, texts, [target] * 3, 0.5) == [0.0, 0.0, 0.0]


def test_scst_loss_adds_the_polarity_bonus_to_every_sample_and_greedy_reward(tiny_checkpoint: Path):
    # a judge that reads every text at 0.5, as it reads the references: each reward gains the weight
    class Undecided:
        def positive_probability(self, texts):
            return [0.5] * len(texts)

    options = ("--samples", "2")
    _, _, plain_sample, plain_greedy = _scst_loss_on_tiny_model(tiny_checkpoint, *options)
    weighted = {"judge": Undecided(), "polarity_weight": 0.25}
    _, _, sample, greedy = _scst_loss_on_tiny_model(tiny_checkpoint, *options, **weighted)
    assert sample == pytest.approx(plain_sample + 0.25) and greedy == pytest.approx(plain_greedy + 0.25)


def test_full_rewards_add_the_polarity_bonus_to_the_overlap_reward():
    args = scst.parse_args(["--init", "x", "--run-dir", "y", "--absent-penalty", "0", "--but-penalty", "0"])
    args.polarity_weight = 0.5
    target = scst.make_target("质量好，但物流差。", "质量好。", reference_positive=0.9)
    same, flipped = scst.full_rewards(["质量好。", "物流差。"], [target, target], args, _LexiconJudge())
    assert same == pytest.approx(1.0 + 0.5)
    assert flipped == pytest.approx(0.0 + 0.5 * 0.3)  # no overlap with 质量好, and the opposite reading
    assert scst.full_rewards(["质量好。"], [target], args, None) == [pytest.approx(1.0)]  # no judge, no bonus


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--baseline", "loo", "--samples", "1"), "needs --samples 2"),
        (("--temperature", "0"), "must be positive"),
        (("--polarity-weight", "0.5"), "go together"),
        (("--polarity-judge", "judge.pkl"), "go together"),
        (("--polarity-judge", "no/such/judge.pkl", "--polarity-weight", "0.5"), "no such file"),
        (("--min-review-chars", "-1"), "must be 0 or more"),
    ],
)
def test_options_that_cannot_work_are_refused(options: tuple[str, ...], message: str, capsys):
    with pytest.raises(SystemExit):
        scst.parse_args(["--init", "x", "--run-dir", "y", *options])
    assert message in capsys.readouterr().err


def test_min_review_chars_keeps_only_the_pairs_with_long_reviews():
    from types import SimpleNamespace

    pairs = [SimpleNamespace(review="好" * n, summary="好。") for n in (5, 59, 60, 140)]
    assert [len(p.review) for p in scst.long_reviews_only(pairs, 60)] == [60, 140]
    assert scst.long_reviews_only(pairs, 0) == pairs
    assert scst.parse_args(["--init", "x", "--run-dir", "y"]).min_review_chars == 0
