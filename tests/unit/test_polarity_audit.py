"""Hand-judged polarity: blind batches, collecting annotators' answers, and the score per system."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reviewsum_build import polarity_audit as audit

REF, MODEL = "references", "model PyTorch runs/v5 greedy"
ROWS = [
    {
        "key": "a",
        "category": "手机",
        "review": "性能出色，但电池不耐用",
        REF: "性能出色，但电池不耐用。",
        MODEL: "性能差。",
    },
    {"key": "b", "category": "水果", "review": "很新鲜，好吃", REF: "新鲜好吃。", MODEL: "新鲜好吃。"},
    {"key": "c", "category": "酒店", "review": "房间脏，服务差", REF: "房间脏，服务差。", MODEL: "房间服务。"},
]


def _write_eval(tmp_path: Path, rows=ROWS) -> Path:
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    (eval_dir / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return eval_dir


def _read_batches(batch_dir: Path) -> dict[str, list[dict]]:
    return {
        p.name: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]
        for p in sorted(batch_dir.glob("batch_*.jsonl"))
    }


def _answer_all(batch_dir: Path, verdict) -> None:
    """Answer every batch; `verdict(summary_text)` -> (keeps, problem, why)."""
    key_map = json.loads((batch_dir / "key.json").read_text(encoding="utf-8"))
    for name, items in _read_batches(batch_dir).items():
        answers = []
        for item in items:
            judged = []
            for s in item["summaries"]:
                keeps, problem, why = verdict(key_map[s["sid"]]["summary"], name)
                judged.append({"sid": s["sid"], "keeps": keeps, "problem": problem, "why": why})
            answers.append({"item": item["item"], "review_polarity": "mixed", "judgements": judged})
        text = "\n".join(json.dumps(a, ensure_ascii=False) for a in answers) + "\n"
        (batch_dir / name.replace("batch_", "answers_")).write_text(text, encoding="utf-8")


def _model_fails(summary: str, batch: str):
    if summary == "性能差。":
        return False, "opposite", "评论说性能出色"
    if summary == "房间服务。":  # the two annotators of this review disagree
        return (
            (True, None, "")
            if batch.startswith("batch_1") or batch.startswith("batch_2")
            else (
                False,
                "no_opinion",
                "没有评价",
            )
        )
    return True, None, ""


def test_batches_are_blind_deduplicated_and_give_each_review_to_every_judge(tmp_path: Path):
    eval_dir, out = _write_eval(tmp_path), tmp_path / "batches"
    audit.main(["batches", str(eval_dir), "--out", str(out), "--judges", "2", "--per-batch", "2",
                "--judgements", str(tmp_path / "none.jsonl")])  # fmt: skip
    batches = _read_batches(out)
    assert len(batches) == 4  # 3 reviews in groups of 2 -> 2 batches, twice
    text = "".join(p.read_text(encoding="utf-8") for p in out.glob("batch_*.jsonl"))
    assert "references" not in text and "PyTorch" not in text and '"key"' not in text
    seen: dict[str, int] = {}
    for items in batches.values():
        for item in items:
            seen[item["review"]] = seen.get(item["review"], 0) + 1
            if item["review"] == "很新鲜，好吃":  # reference and model wrote the same summary: judged once
                assert [s["text"] for s in item["summaries"]] == ["新鲜好吃。"]
    assert seen == {"性能出色，但电池不耐用": 2, "很新鲜，好吃": 2, "房间脏，服务差": 2}
    key_map = json.loads((out / "key.json").read_text(encoding="utf-8"))
    assert sorted(v["summary"] for v in key_map.values()) == sorted(
        ["性能出色，但电池不耐用。", "性能差。", "新鲜好吃。", "房间脏，服务差。", "房间服务。"]
    )
    assert (out / "RUBRIC.md").read_text(encoding="utf-8") == audit.RUBRIC.read_text(encoding="utf-8")


def test_collected_answers_score_each_system_by_all_and_by_any_annotator(tmp_path: Path, capsys):
    eval_dir, out, store = _write_eval(tmp_path), tmp_path / "batches", tmp_path / "judgements.jsonl"
    audit.main(["batches", str(eval_dir), "--out", str(out), "--per-batch", "2", "--judgements", str(store)])
    _answer_all(out, _model_fails)
    audit.main(["collect", str(out), "--annotator-prefix", "t-", "--judgements", str(store)])
    judgements = audit.read_judgements(store)
    assert len(judgements) == 10  # 5 distinct summaries x 2 annotators
    assert {j.annotator for j in judgements} == {"t-batch_1", "t-batch_2", "t-batch_3", "t-batch_4"}

    judged = audit.by_pair(judgements)
    ref = audit.score_system(ROWS, REF, judged)
    model = audit.score_system(ROWS, MODEL, judged)
    assert (ref.judged, ref.kept_by_all, ref.kept_by_any, ref.split) == (3, 100.0, 100.0, 0)
    assert (model.judged, model.unjudged, model.split) == (3, 0, 1)
    assert model.kept_by_all == pytest.approx(100 / 3) and model.kept_by_any == pytest.approx(200 / 3)
    assert model.problems == {"opposite": 1, "no_opinion": 1}

    audit.main(["score", str(eval_dir), "--judgements", str(store), "--list", MODEL])
    printed = capsys.readouterr().out
    assert "| model PyTorch runs/v5 greedy | 3 | 33.3 | 66.7 | 1 | opposite 1, no_opinion 1 |" in printed
    assert "2 summaries judged not to keep polarity" in printed and "opposite: 评论说性能出色" in printed


def test_only_summaries_without_enough_judgements_go_out_again(tmp_path: Path):
    eval_dir, store = _write_eval(tmp_path), tmp_path / "judgements.jsonl"
    audit.main(["batches", str(eval_dir), "--out", str(tmp_path / "r1"), "--judgements", str(store)])
    _answer_all(tmp_path / "r1", _model_fails)
    audit.main(["collect", str(tmp_path / "r1"), "--annotator-prefix", "r1-", "--judgements", str(store)])
    new_model = [dict(r, **{"model v6": r[MODEL] if r["key"] != "c" else "房间脏。"}) for r in ROWS]
    todo = audit.pairs_to_judge(new_model, [REF, MODEL, "model v6"], audit.by_pair(audit.read_judgements(store)), 2)
    assert todo == {"c": ["房间脏。"]}
    score = audit.score_system(new_model, "model v6", audit.by_pair(audit.read_judgements(store)))
    assert (score.judged, score.unjudged) == (2, 1)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda a: a["judgements"].pop(), "are not the item's"),
        (lambda a: a["judgements"][0].update(keeps=False, problem=None, why=""), "needs a problem"),
        (lambda a: a["judgements"][0].update(keeps="yes"), "keeps must be true or false"),
        (lambda a: a.update(review_polarity="good"), "review_polarity 'good'"),
        (lambda a: a.update(item="9-999"), "is not in batch_1.jsonl"),
    ],
)
def test_a_malformed_answers_file_is_refused_and_nothing_is_added(tmp_path: Path, corrupt, message: str, capsys):
    eval_dir, out, store = _write_eval(tmp_path), tmp_path / "batches", tmp_path / "judgements.jsonl"
    audit.main(["batches", str(eval_dir), "--out", str(out), "--judgements", str(store)])
    _answer_all(out, _model_fails)
    answers_path = out / "answers_1.jsonl"
    answers = [json.loads(line) for line in answers_path.read_text(encoding="utf-8").splitlines()]
    corrupt(answers[0])
    answers_path.write_text("\n".join(json.dumps(a, ensure_ascii=False) for a in answers), encoding="utf-8")
    with pytest.raises(SystemExit, match="nothing added") as raised:
        audit.main(["collect", str(out), "--annotator-prefix", "t-", "--judgements", str(store)])
    assert message in str(raised.value)
    assert not store.exists()


def test_the_same_answers_are_not_collected_twice(tmp_path: Path):
    eval_dir, out, store = _write_eval(tmp_path), tmp_path / "batches", tmp_path / "judgements.jsonl"
    audit.main(["batches", str(eval_dir), "--out", str(out), "--judgements", str(store)])
    _answer_all(out, _model_fails)
    audit.main(["collect", str(out), "--annotator-prefix", "t-", "--judgements", str(store)])
    with pytest.raises(SystemExit, match="already holds 10"):
        audit.main(["collect", str(out), "--annotator-prefix", "t-", "--judgements", str(store)])
    assert len(audit.read_judgements(store)) == 10


def test_the_shipped_judgements_cover_the_dev_references_and_are_well_formed():
    judgements = audit.read_judgements(audit.DEFAULT_JUDGEMENTS)
    assert len(judgements) >= 1496
    assert all(j.keeps == (j.problem is None) for j in judgements)
    assert {j.problem for j in judgements} - {None} <= set(audit.PROBLEMS)
    assert {j.review_polarity for j in judgements} <= set(audit.REVIEW_POLARITIES)
    assert len({j.key for j in judgements}) == 300


def test_batches_can_be_limited_to_some_systems(tmp_path: Path, capsys):
    eval_dir, out = _write_eval(tmp_path), tmp_path / "batches"
    store = str(tmp_path / "none.jsonl")
    audit.main(["batches", str(eval_dir), "--out", str(out), "--system", MODEL, "--judgements", store])
    key_map = json.loads((out / "key.json").read_text(encoding="utf-8"))
    assert sorted(v["summary"] for v in key_map.values()) == ["性能差。", "房间服务。", "新鲜好吃。"]
    with pytest.raises(SystemExit, match="--system 'model v9'"):
        audit.main(["batches", str(eval_dir), "--out", str(out), "--system", "model v9", "--judgements", store])


def test_sign_test_is_the_exact_two_sided_binomial():
    assert audit.sign_test(0, 0) == 1.0
    assert audit.sign_test(5, 5) == 1.0
    assert audit.sign_test(7, 0) == pytest.approx(2 / 2**7)
    assert audit.sign_test(12, 7) == pytest.approx(0.359, abs=1e-3)
    assert audit.sign_test(7, 12) == audit.sign_test(12, 7)


def _judged_store(tmp_path: Path) -> dict:
    eval_dir, out, store = _write_eval(tmp_path), tmp_path / "batches", tmp_path / "judgements.jsonl"
    audit.main(["batches", str(eval_dir), "--out", str(out), "--per-batch", "2", "--judgements", str(store)])
    _answer_all(out, _model_fails)
    audit.main(["collect", str(out), "--annotator-prefix", "t-", "--judgements", str(store)])
    return audit.by_pair(audit.read_judgements(store))


def test_paired_counts_the_reviews_only_one_system_keeps(tmp_path: Path):
    judged = _judged_store(tmp_path)
    assert audit.kept_by_all(ROWS, MODEL, judged) == [False, True, False]
    assert audit.paired(ROWS, REF, MODEL, judged) == (2, 0, pytest.approx(0.5))
    assert audit.paired(ROWS, MODEL, REF, judged) == (0, 2, pytest.approx(0.5))
    unjudged = [dict(r, **{"model v6": "没见过。"}) for r in ROWS]
    assert audit.paired(unjudged, "model v6", REF, judged) is None


def test_classifier_overlap_sets_the_classifiers_flags_against_the_hand_verdicts(tmp_path: Path):
    judged = _judged_store(tmp_path)

    class Keyword:  # positive exactly when the text says 好 or 出色
        def predict(self, texts):
            return [int("好" in t or "出色" in t) for t in texts]

    # model: a (性能差 vs a positive review: flagged, failed), b (kept, not flagged), c (房间服务: failed by one)
    assert audit.classifier_overlap(ROWS, MODEL, judged, Keyword()) == (1, 2, 1)
    assert audit.classifier_overlap(ROWS, REF, judged, Keyword()) == (0, 0, 0)


def test_failures_by_length_counts_per_review_length_band(tmp_path: Path):
    judged = _judged_store(tmp_path)
    long_row = dict(ROWS[2], key="c", review="房" * 120)  # the same judged summary under a long review
    rows = [ROWS[0], ROWS[1], long_row]
    assert audit.failures_by_length(rows, MODEL, judged) == [
        ("0-29", 2, 1),
        ("30-59", 0, 0),
        ("60-99", 0, 0),
        ("100+", 1, 1),
    ]


def test_score_prints_the_paired_comparison_and_the_length_bands(tmp_path: Path, capsys):
    _judged_store(tmp_path)
    eval_dir, store = tmp_path / "eval", str(tmp_path / "judgements.jsonl")
    audit.main(["score", str(eval_dir), "--judgements", store, "--paired", REF, "--list", MODEL])
    printed = capsys.readouterr().out
    assert f"- {MODEL}: only it keeps 0, only the other keeps 2, sign test p = 0.50" in printed
    assert "by review length: 0-29 chars 2/3, 30-59 chars 0/0, 60-99 chars 0/0, 100+ chars 0/0" in printed
    with pytest.raises(SystemExit, match="--paired 'model v9'"):
        audit.main(["score", str(eval_dir), "--judgements", store, "--paired", "model v9"])


# --- variants: several model variants' hand verdicts, review by review -------------------------

VARIANT_ROWS = [
    {"key": k, "review": review, "model A": a, "model B": b, "model C": c}
    for k, review, a, b, c in (
        ("a", "性能出色，但电池不耐用", "性能差。", "性能出色，电池不耐用。", "性能出色。"),
        ("b", "很新鲜，好吃", "新鲜好吃。", "新鲜好吃。", "新鲜好吃。"),
        ("c", "房间脏，服务差", "房间服务。", "房间服务。", "房间服务。"),
    )
]
VERDICTS = {  # (key, summary) -> each annotator's keeps
    ("a", "性能差。"): [False, False],
    ("a", "性能出色，电池不耐用。"): [True, True],
    ("a", "性能出色。"): [True, True],
    ("b", "新鲜好吃。"): [True, True],
    ("c", "房间服务。"): [True, False],  # split: not kept by every annotator
    ("c", "房间脏。"): [True, True],
}


def _write_verdicts(path: Path) -> Path:
    lines = [
        json.dumps(
            {"key": key, "summary": summary, "annotator": f"t-{i}", "review_polarity": "mixed", "keeps": keeps,
             "problem": None if keeps else "other", "why": "" if keeps else "test"},
            ensure_ascii=False,
        )
        for (key, summary), votes in VERDICTS.items()
        for i, keeps in enumerate(votes)
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _variant_evals(tmp_path: Path) -> tuple[Path, Path]:
    second = [  # model A again with the same summaries, model C with another summary of review c
        {k: v for k, v in r.items() if k != "model B"} | ({"model C": "房间脏。"} if r["key"] == "c" else {})
        for r in VARIANT_ROWS
    ]
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    for eval_dir, rows in ((first_dir, VARIANT_ROWS), (second_dir, second)):
        eval_dir.mkdir()
        rows = [dict(r, references="参考。") for r in rows]  # references are never a variant
        (eval_dir / "predictions.jsonl").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
        )
    return first_dir, second_dir


def test_variants_merge_same_named_systems_and_rename_different_ones(tmp_path: Path):
    first_dir, second_dir = _variant_evals(tmp_path)
    rows, variants = audit.merge_variants([first_dir, second_dir], [])
    assert variants == ["model A", "model B", "model C", "model C (second)"]
    assert [r["model C (second)"] for r in rows] == ["性能出色。", "新鲜好吃。", "房间脏。"]
    assert [r["model C"] for r in rows] == ["性能出色。", "新鲜好吃。", "房间服务。"]
    _, chosen = audit.merge_variants([first_dir, second_dir], ["model C", "model A"])
    assert chosen == ["model C", "model A"]  # the order asked for: the first is the base
    with pytest.raises(SystemExit, match="--system 'model Z'"):
        audit.merge_variants([first_dir], ["model Z", "model A"])
    with pytest.raises(SystemExit, match="at least two model variants"):
        audit.merge_variants([first_dir], ["model A"])


def test_variants_study_counts_oracle_consensus_and_shared_failures_by_value(tmp_path: Path):
    judged = audit.by_pair(audit.read_judgements(_write_verdicts(tmp_path / "j.jsonl")))
    study = audit.study_variants(VARIANT_ROWS, ["model A", "model B", "model C"], judged)
    assert study.kept == {"model A": 1, "model B": 2, "model C": 2}
    assert (study.kept_by_every_variant, study.failed_by_every_variant, study.oracle) == (1, 1, 2)
    # review a: 性能出色。 overlaps both others most, so consensus picks it and keeps polarity where A fails
    assert study.consensus_kept == 2
    assert study.consensus_vs_first == (1, 0, 1.0)
    # A fails a (only A) and c (all three): one of its two failures is shared by at least half
    assert (study.first_failures, study.first_failures_shared) == (2, 1)


def test_variants_refuse_unjudged_summaries_and_other_reviews(tmp_path: Path, capsys):
    first_dir, second_dir = _variant_evals(tmp_path)
    store = str(_write_verdicts(tmp_path / "j.jsonl"))
    audit.main(["variants", str(first_dir), str(second_dir), "--judgements", store])
    printed = capsys.readouterr().out
    assert "4 model variants on 3 dev reviews" in printed
    assert "oracle (a kept summary exists among the variants): 3 (100.0%)" in printed
    assert "- model C (second): 3 (100.0%)" in printed
    rows = [dict(r, **{"model D": "没见过。"}) for r in VARIANT_ROWS]
    with pytest.raises(ValueError, match=r"unjudged summaries \(model D: 3\)"):
        audit.study_variants(rows, ["model A", "model D"], audit.by_pair(audit.read_judgements(Path(store))))
    other = tmp_path / "other"
    other.mkdir()
    (other / "predictions.jsonl").write_text(json.dumps({"key": "z", "review": "好", "model A": "好。"}) + "\n")
    with pytest.raises(SystemExit, match="not the same reviews"):
        audit.main(["variants", str(first_dir), str(other), "--judgements", store])
