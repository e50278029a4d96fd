"""Re-scoring an evaluation's summaries under several polarity judges."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from reviewsum_build import polarity_report


class KeywordJudge:
    """Positive (1) when the text holds `word`, else negative (0)."""

    def __init__(self, word: str):
        self.word = word

    def predict(self, texts):
        return [int(self.word in t) for t in texts]


ROWS = [
    {"key": "a", "category": "x", "review": "好用，不贵", "references": "好用", "model": "好用"},
    {"key": "b", "category": "x", "review": "难用，太贵", "references": "难用", "model": "好用"},
    {"key": "c", "category": "x", "review": "好用，太贵", "references": "太贵", "model": "好用，太贵"},
    {"key": "d", "category": "x", "review": "一般", "references": "一般", "model": "不贵"},
]


@pytest.fixture
def eval_dir(tmp_path: Path) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in ROWS]
    (tmp_path / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for word in ("好用", "贵"):
        (tmp_path / f"judge_{word}.pkl").write_bytes(pickle.dumps(KeywordJudge(word)))
    return tmp_path


def test_systems_are_every_column_but_the_review_fields(eval_dir: Path):
    rows, systems = polarity_report.read_predictions(eval_dir)
    assert len(rows) == 4 and systems == ["references", "model"]


def test_disagreements_are_where_summary_and_review_get_different_labels():
    judge = KeywordJudge("好用")
    labels = judge.predict([r["review"] for r in ROWS])
    assert polarity_report.disagreements(labels, judge, [r["references"] for r in ROWS]) == [2]
    assert polarity_report.disagreements(labels, judge, [r["model"] for r in ROWS]) == [1]


def test_the_table_scores_each_system_under_each_judge(eval_dir: Path, capsys):
    judges = [str(eval_dir / "judge_好用.pkl"), str(eval_dir / "judge_贵.pkl")]
    polarity_report.main([str(eval_dir), "--judge", judges[0], "--judge", judges[1], "--list", "model"])
    out = capsys.readouterr().out
    # every review but d holds 贵: the references disagree on a and b, the model on a, b and d
    assert "| references | 75.0 | 50.0 |" in out
    assert "| model | 75.0 | 25.0 |" in out
    assert "model: 1 disagreements under judge_好用" in out
    assert "- b [0] 难用，太贵\n  -> 好用" in out


def test_unknown_system_and_missing_files_are_refused(eval_dir: Path, tmp_path: Path, capsys):
    judge = str(eval_dir / "judge_好用.pkl")
    with pytest.raises(SystemExit, match="not in"):
        polarity_report.main([str(eval_dir), "--judge", judge, "--list", "nobody"])
    with pytest.raises(SystemExit, match="not found"):
        polarity_report.main([str(tmp_path / "empty"), "--judge", judge])
    with pytest.raises(SystemExit):
        polarity_report.parse_args([str(eval_dir), "--judge", str(tmp_path / "no.pkl")])
    assert "no such file" in capsys.readouterr().err
