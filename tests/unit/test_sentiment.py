"""The polarity judge: settings, held-out accuracy and the command that trains and saves one."""

from __future__ import annotations

from pathlib import Path

import pytest
from reviewsum_build import sentiment

POSITIVE = ["质量很好，很满意", "物流快，好评", "非常好用，推荐", "不错，值得买", "很喜欢，好看"]
NEGATIVE = ["质量太差，退货", "物流慢，差评", "非常难用，失望", "坏了，不值", "很失望，难看"]


def _examples(copies: int = 8) -> list[tuple[str, int]]:
    rows = [(t, 1) for t in POSITIVE] + [(t, 0) for t in NEGATIVE]
    return [(f"{t}{'！' * i}", y) for i in range(copies) for t, y in rows]


def test_the_default_spec_is_the_evaluations_judge():
    assert sentiment.JudgeSpec() == sentiment.JudgeSpec(
        ngram_max=4, max_features=1_000_000, c=1.0, seed=0, word_ngram_max=3, word_max_features=1_000_000, model="svm"
    )


def test_the_svm_judge_gives_probabilities_on_the_side_of_its_decisions():
    judge = sentiment.train_classifier(_examples(), sentiment.JudgeSpec(ngram_max=2, word_ngram_max=2, seed=3))
    texts = ["质量很好，很满意", "质量太差，很失望", "还行吧，好评", "差评，还行"]
    probabilities = judge.positive_probability(texts)
    assert all(0 < p < 1 for p in probabilities)
    assert [int(p > 0.5) for p in probabilities] == judge.predict(texts)
    assert probabilities[0] > 0.5 > probabilities[1]


def test_a_judge_learns_separable_polarity_and_measures_it_held_out():
    judge = sentiment.train_classifier(_examples(), sentiment.JudgeSpec(ngram_max=2, seed=3))
    assert judge.train_size == 76  # 80 examples, 1 in 20 held out
    assert judge.held_out_accuracy == 1.0
    assert judge.predict(["质量很好", "质量太差"]) == [1, 0]
    good, bad = judge.positive_probability(["很满意，好评", "很失望，差评"])
    assert good > 0.5 > bad
    assert sentiment.agreement(judge, ["很满意", "很失望"], ["好评", "好评"]) == pytest.approx(50.0)


def test_training_is_deterministic_so_a_fresh_machine_rebuilds_the_same_judge():
    texts = ["还行吧，好评", "差评，还行"]
    a = sentiment.train_classifier(_examples(), sentiment.JudgeSpec(seed=1))
    b = sentiment.train_classifier(_examples(), sentiment.JudgeSpec(seed=1))
    assert a.positive_probability(texts) == b.positive_probability(texts)


def test_the_fingerprint_tells_judges_apart_by_how_they_label_the_reviews():
    import sklearn

    reviews = ["质量很好", "质量太差", "还行"]
    a = sentiment.train_classifier(_examples(), sentiment.JudgeSpec(seed=1))
    same = sentiment.fingerprint(a, reviews)
    assert same == sentiment.fingerprint(sentiment.train_classifier(_examples(), sentiment.JudgeSpec(seed=1)), reviews)
    assert same["sklearn_version"] == sklearn.__version__ and same["train_size"] == 76
    assert same["reviews_positive"] == sum(a.predict(reviews))

    class Contrary:  # the same figures, every label flipped
        def __init__(self, judge):
            self.judge, self.train_size, self.held_out_accuracy = judge, judge.train_size, judge.held_out_accuracy

        def predict(self, texts):
            return [1 - y for y in self.judge.predict(texts)]

    other = sentiment.fingerprint(Contrary(a), reviews)
    assert other["review_labels_digest"] != same["review_labels_digest"] and other["sklearn_version"] is None


def test_the_command_trains_with_its_settings_and_saves(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sentiment, "labelled_reviews", lambda data_dir, with_summaries: _examples())
    out = tmp_path / "judge.pkl"
    sentiment.main(["--out", str(out), "--ngram-max", "2", "--max-features", "50", "--C", "2", "--word-ngram-max", "2"])
    judge = sentiment.load(out)
    union, svm = judge.pipeline.steps[0][1], judge.pipeline.steps[1][1]
    (_, chars), (_, words) = union.transformer_list
    assert chars.analyzer == "char" and chars.ngram_range == (1, 2) and chars.max_features == 50
    assert words.tokenizer is sentiment.jieba_words and words.ngram_range == (1, 2)
    assert type(svm).__name__ == "LinearSVC" and svm.C == 2.0
    assert judge.spec == sentiment.JudgeSpec(ngram_max=2, max_features=50, c=2.0, word_ngram_max=2)
    assert judge.predict(["质量很好"]) == [1]


def test_the_command_still_trains_the_first_sessions_judge(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sentiment, "labelled_reviews", lambda data_dir, with_summaries: _examples())
    out = tmp_path / "judge.pkl"
    argv = ["--ngram-max", "3", "--max-features", "300000", "--C", "4", "--word-ngram-max", "0", "--model", "logistic"]
    sentiment.main(["--out", str(out), *argv])
    vectorizer, regression = sentiment.load(out).pipeline.steps[0][1], sentiment.load(out).pipeline.steps[1][1]
    assert vectorizer.analyzer == "char" and vectorizer.ngram_range == (1, 3)
    assert type(regression).__name__ == "LogisticRegression" and regression.C == 4.0


def test_a_cached_judge_with_other_settings_is_retrained(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sentiment, "labelled_reviews", lambda data_dir, with_summaries=True: _examples())
    cache = tmp_path / "classifier.pkl"
    sentiment.main(["--out", str(cache), "--word-ngram-max", "0", "--model", "logistic"])
    judge = sentiment.load_or_train(tmp_path, cache)
    assert judge.spec == sentiment.JudgeSpec()
    assert sentiment.load(cache).spec == sentiment.JudgeSpec()  # the cache now holds the current judge
    assert sentiment.load_or_train(tmp_path, cache).positive_probability(["很好"]) == judge.positive_probability(
        ["很好"]
    )


@pytest.mark.filterwarnings("ignore:'reviewsum_build.sentiment' found in sys.modules:RuntimeWarning")
def test_a_judge_saved_by_the_command_line_loads_in_other_modules(tmp_path: Path, monkeypatch):
    import pickle
    import runpy

    monkeypatch.setattr(sentiment, "labelled_reviews", lambda data_dir, with_summaries: _examples())
    out = tmp_path / "judge.pkl"
    monkeypatch.setattr("sys.argv", ["sentiment", "--out", str(out), "--ngram-max", "2"])
    runpy.run_module("reviewsum_build.sentiment", run_name="__main__")
    assert b"__main__" not in out.read_bytes()
    assert isinstance(pickle.loads(out.read_bytes()), sentiment.PolarityClassifier)


def test_the_command_can_leave_the_training_references_out(tmp_path: Path, monkeypatch):
    asked = []

    def labelled(data_dir, with_summaries):
        asked.append(with_summaries)
        return _examples()

    monkeypatch.setattr(sentiment, "labelled_reviews", labelled)
    sentiment.main(["--out", str(tmp_path / "a.pkl")])
    sentiment.main(["--out", str(tmp_path / "b.pkl"), "--without-train-summaries"])
    assert asked == [True, False]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--ngram-max", "0"), "must be"),
        (("--C", "0"), "must be"),
        (("--max-features", "0"), "must be"),
        (("--word-ngram-max", "-1"), "--word-ngram-max must be"),
        (("--model", "forest"), "invalid choice: 'forest'"),
    ],
)
def test_settings_that_cannot_train_are_refused(option: tuple[str, str], message: str, capsys):
    with pytest.raises(SystemExit):
        sentiment.parse_args(["--out", "x.pkl", *option])
    assert message in capsys.readouterr().err
