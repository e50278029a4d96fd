"""The ONNX Runtime engine reproduces transformers' generate() on the tiny checkpoint, token for token."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reviewsum_engine import Generation, GenerationOptions, InvalidOptionsError, OnnxSummarizer, Summarizer
from reviewsum_engine.onnx_backend import OrtDecoderState
from reviewsum_engine.streaming import IncrementalDetokenizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = [
    "这家店的外卖送得很快，味道也不错，下次还会再点。",
    "The room was clean but the street outside was noisy at night.",
    "质量不错",
    "Great value 😀 for the price, I will order again.",
    "包装很好，菜品新鲜，分量足。The delivery was fast!",
    "屏幕有划痕，客服处理很慢，不推荐购买。",
]
GREEDY_OPTIONS = [
    GenerationOptions(max_new_tokens=24),
    GenerationOptions(max_new_tokens=16, no_repeat_ngram_size=0),
    GenerationOptions(max_new_tokens=20, no_repeat_ngram_size=1),
    GenerationOptions(max_new_tokens=32, no_repeat_ngram_size=2),
]
BEAM_OPTIONS = [
    GenerationOptions(max_new_tokens=24, num_beams=2),
    GenerationOptions(max_new_tokens=20, num_beams=3, length_penalty=2.0),
    GenerationOptions(max_new_tokens=16, num_beams=4, length_penalty=0.5, no_repeat_ngram_size=2),
    GenerationOptions(max_new_tokens=24, num_beams=3, length_penalty=-1.0, no_repeat_ngram_size=0),
    GenerationOptions(max_new_tokens=12, num_beams=5, no_repeat_ngram_size=1),
]


@pytest.fixture(scope="module")
def engine(tiny_artifacts: Path) -> OnnxSummarizer:
    return OnnxSummarizer(tiny_artifacts, intra_op_threads=1)


@pytest.fixture(scope="module")
def hf_model(tiny_checkpoint: Path) -> Any:
    # Thread fan-out makes a model this small ~15x slower on a busy 2-core machine.
    torch.set_num_threads(1)
    return transformers.BartForConditionalGeneration.from_pretrained(tiny_checkpoint).eval()


def hf_generate(model: Any, input_ids: list[int], options: GenerationOptions, **overrides: Any) -> list[int]:
    """transformers' ids for one input, decoder start token and trailing padding removed."""
    with torch.no_grad():
        output = model.generate(
            torch.tensor([input_ids]),
            attention_mask=torch.ones(1, len(input_ids), dtype=torch.long),
            max_new_tokens=options.max_new_tokens,
            num_beams=options.num_beams,
            length_penalty=options.length_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            do_sample=False,
            **overrides,
        )
    ids = output[0, 1:].tolist()
    if 2 in ids:
        ids = ids[: ids.index(2) + 1]
    return ids


def one_by_one_ids(
    engine: OnnxSummarizer, input_ids: list[list[int]], options: list[GenerationOptions]
) -> list[list[int]]:
    return [engine.generate_ids([ids], [option])[0].token_ids for ids, option in zip(input_ids, options, strict=True)]


@pytest.mark.parametrize("options", GREEDY_OPTIONS, ids=repr)
def test_greedy_matches_transformers(engine: OnnxSummarizer, hf_model: Any, options: GenerationOptions) -> None:
    input_ids = engine.tokenize(TEXTS)
    expected = [hf_generate(hf_model, ids, options) for ids in input_ids]
    batched = [result.token_ids for result in engine.generate_ids(input_ids, [options] * len(TEXTS))]
    assert one_by_one_ids(engine, input_ids, [options] * len(TEXTS)) == expected
    assert batched == expected


@pytest.mark.parametrize("options", BEAM_OPTIONS, ids=repr)
def test_beam_search_matches_transformers(engine: OnnxSummarizer, hf_model: Any, options: GenerationOptions) -> None:
    input_ids = engine.tokenize(TEXTS)
    expected = [hf_generate(hf_model, ids, options) for ids in input_ids]
    batched = [result.token_ids for result in engine.generate_ids(input_ids, [options] * len(TEXTS))]
    assert batched == expected


@pytest.mark.parametrize(
    ("early_stopping", "forced_eos_token_id"), [(True, 2), ("never", 2), (False, None), ("never", None)]
)
def test_checkpoint_decoding_rules_match_transformers(
    engine: OnnxSummarizer, hf_model: Any, early_stopping: bool | str, forced_eos_token_id: int | None
) -> None:
    """generation_config.json's early_stopping and forced_eos_token_id change results; both are honoured."""
    rules = dataclasses.replace(
        engine.artifacts.rules, early_stopping=early_stopping, forced_eos_token_id=forced_eos_token_id
    )
    variant = Summarizer(dataclasses.replace(engine.artifacts, rules=rules), engine._backend)
    overrides = {"early_stopping": early_stopping, "forced_eos_token_id": forced_eos_token_id}
    input_ids = engine.tokenize(TEXTS)
    for options in (BEAM_OPTIONS[1], BEAM_OPTIONS[2], GREEDY_OPTIONS[0]):
        expected = [hf_generate(hf_model, ids, options, **overrides) for ids in input_ids]
        assert [r.token_ids for r in variant.generate_ids(input_ids, [options] * len(TEXTS))] == expected


def test_tiny_model_exercises_both_stop_reasons(engine: OnnxSummarizer) -> None:
    """Guards the fixture: parity above only means something if some rows stop early and others do not."""
    reasons = {g.finish_reason for g in engine.summarize(TEXTS, [GenerationOptions(max_new_tokens=24)] * len(TEXTS))}
    assert reasons == {"eos", "length"}


def test_summarize_text_and_counts_match_transformers(engine: OnnxSummarizer, hf_model: Any) -> None:
    options = [
        GREEDY_OPTIONS[0],
        BEAM_OPTIONS[1],
        GREEDY_OPTIONS[3],
        BEAM_OPTIONS[2],
        GREEDY_OPTIONS[1],
        BEAM_OPTIONS[0],
    ]
    generations = engine.summarize(TEXTS, options)
    for text, option, generation in zip(TEXTS, options, generations, strict=True):
        input_ids = engine.tokenize([text])[0]
        expected_ids = hf_generate(hf_model, input_ids, option)
        assert generation.text == engine._tokenizer.decode(expected_ids, skip_special_tokens=True)
        assert generation.input_tokens == len(input_ids)
        assert generation.output_tokens == len(expected_ids)
        stopped_by_model = expected_ids[-1] == 2 and len(expected_ids) < option.max_new_tokens
        assert generation.finish_reason == ("eos" if stopped_by_model else "length")


def test_mixed_options_batch_equals_one_by_one(engine: OnnxSummarizer) -> None:
    options = [
        GREEDY_OPTIONS[0],
        BEAM_OPTIONS[0],
        GREEDY_OPTIONS[2],
        BEAM_OPTIONS[1],
        BEAM_OPTIONS[4],
        GREEDY_OPTIONS[3],
    ]
    batched = engine.summarize(TEXTS, options)
    one_by_one = [engine.summarize([text], [option])[0] for text, option in zip(TEXTS, options, strict=True)]
    assert batched == one_by_one


def test_input_is_truncated_to_max_input_tokens(engine: OnnxSummarizer) -> None:
    long_text = "味道不错，" * 400
    (generation,) = engine.summarize([long_text], [GenerationOptions(max_new_tokens=4)])
    assert generation.input_tokens == engine.artifacts.max_input_tokens == 256


class RecordingBackend:
    """Wraps a backend and records the batch size of every decode step."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.step_rows: list[int] = []

    @property
    def vocab_size(self) -> int:
        return self.inner.vocab_size

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> OrtDecoderState:
        return self.inner.encode(input_ids, attention_mask)

    def decode_step(self, state: OrtDecoderState, input_ids: np.ndarray) -> tuple[np.ndarray, OrtDecoderState]:
        self.step_rows.append(len(input_ids))
        return self.inner.decode_step(state, input_ids)

    def select_rows(self, state: OrtDecoderState, rows: np.ndarray, encoder_rows: np.ndarray | None = None) -> Any:
        return self.inner.select_rows(state, rows, encoder_rows)


def recording_engine(engine: OnnxSummarizer) -> tuple[Summarizer, RecordingBackend]:
    backend = RecordingBackend(engine._backend)
    return Summarizer(engine.artifacts, backend), backend


def test_finished_rows_leave_the_batch(engine: OnnxSummarizer) -> None:
    recorder_engine, backend = recording_engine(engine)
    options = [GenerationOptions(max_new_tokens=n) for n in (3, 30, 8, 30, 30, 30)]
    generations = recorder_engine.summarize(TEXTS, options)
    # Each row takes part in exactly as many decode steps as tokens it generated.
    assert sum(backend.step_rows) == sum(g.output_tokens for g in generations)
    assert backend.step_rows[0] == len(TEXTS)
    assert backend.step_rows[-1] < len(TEXTS)
    assert backend.step_rows == sorted(backend.step_rows, reverse=True)


def test_finished_beam_requests_leave_the_batch(engine: OnnxSummarizer) -> None:
    recorder_engine, backend = recording_engine(engine)
    options = [GenerationOptions(max_new_tokens=n, num_beams=3) for n in (2, 20, 5)]
    generations = recorder_engine.summarize(TEXTS[:3], options)
    assert backend.step_rows[0] == 9
    assert backend.step_rows[-1] == 3
    assert len(backend.step_rows) == max(g.output_tokens for g in generations)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_cancelled_row_stops_and_others_are_unaffected(engine: OnnxSummarizer, num_beams: int) -> None:
    options = [GenerationOptions(max_new_tokens=30, num_beams=num_beams)] * 3
    texts = [TEXTS[1], TEXTS[3], TEXTS[5]]
    reference = engine.summarize(texts, options)
    polls: list[int] = []

    def is_cancelled(index: int) -> bool:
        if index == 1:
            polls.append(index)
            return len(polls) > 5
        return False

    generations = engine.summarize(texts, options, is_cancelled=is_cancelled)
    assert generations[1].finish_reason == "cancelled"
    # Greedy returns the 5 tokens generated; beam search its best finished or running hypothesis so far.
    assert generations[1].output_tokens == 5 if num_beams == 1 else 1 <= generations[1].output_tokens <= 5
    assert len(polls) == 6  # polled before each step, never again once cancelled
    assert [generations[0], generations[2]] == [reference[0], reference[2]]


def test_cancelled_before_the_first_step_generates_nothing(engine: OnnxSummarizer) -> None:
    (generation,) = engine.summarize([TEXTS[0]], [GenerationOptions()], is_cancelled=lambda _: True)
    assert generation == Generation(
        text="", input_tokens=len(engine.tokenize([TEXTS[0]])[0]), output_tokens=0, finish_reason="cancelled"
    )


def test_on_tokens_deltas_concatenate_to_the_final_text(engine: OnnxSummarizer) -> None:
    options = [GenerationOptions(max_new_tokens=40, num_beams=1 if i % 3 else 2) for i in range(len(TEXTS))]
    deltas: dict[int, list[str]] = {i: [] for i in range(len(TEXTS))}
    generations = engine.summarize(TEXTS, options, on_tokens=lambda i, delta: deltas[i].append(delta))
    for index, generation in enumerate(generations):
        assert "".join(deltas[index]) == generation.text
        assert all(delta for delta in deltas[index])
        if options[index].num_beams > 1:
            assert deltas[index] == [generation.text]
    assert sum(len(pieces) for pieces in deltas.values()) > len(TEXTS)  # greedy rows really stream


def stream(tokenizer: Any, ids: list[int]) -> list[str]:
    detokenizer = IncrementalDetokenizer(tokenizer)
    deltas = [detokenizer.push(token_id) for token_id in ids] + [detokenizer.finish()]
    return [delta for delta in deltas if delta]


def test_detokenizer_never_splits_byte_fallback_characters(engine: OnnxSummarizer) -> None:
    tokenizer = engine._tokenizer
    text = "好😀味道𠀀"
    encoding = tokenizer.encode(text)
    assert sum(token.startswith("<0x") for token in encoding.tokens) == 8
    emitted = stream(tokenizer, encoding.ids)
    # A byte run is released with the next regular token (or at the end), whole.
    assert emitted == ["好", "😀味道", "𠀀"]


def test_detokenizer_holds_a_byte_run_until_it_is_final(engine: OnnxSummarizer) -> None:
    """`<0x61>` alone decodes to "a", but `<0x61><0xBD>` to two U+FFFD: the run is only final once it ends."""
    tokenizer = engine._tokenizer
    ids = [tokenizer.token_to_id(token) for token in ("<0x61>", "<0xBD>", "▁good", "<0xE5>")]
    detokenizer = IncrementalDetokenizer(tokenizer)
    assert [detokenizer.push(token_id) for token_id in ids] == ["", "", "\ufffd\ufffd good", ""]
    assert detokenizer.finish() == "\ufffd"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (GenerationOptions(max_new_tokens=0), "max_new_tokens"),
        (GenerationOptions(max_new_tokens=10_000), "max_new_tokens"),
        (GenerationOptions(num_beams=0), "num_beams"),
        (GenerationOptions(num_beams=99), "num_beams"),
        (GenerationOptions(length_penalty=float("nan")), "length_penalty"),
        (GenerationOptions(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
    ],
)
def test_invalid_options_are_rejected(engine: OnnxSummarizer, options: GenerationOptions, field: str) -> None:
    with pytest.raises(InvalidOptionsError) as error:
        engine.summarize(["好"], [options])
    assert error.value.field == field


def test_metadata_comes_from_the_artifacts(engine: OnnxSummarizer) -> None:
    assert (engine.model_name, engine.model_version) == ("reviewsum-tiny", "1")
    assert engine.artifacts.rules.forced_eos_token_id == 2
    assert engine.summarize([], []) == []


def test_a_short_row_finishes_before_the_rest_of_its_batch(engine: OnnxSummarizer) -> None:
    texts = ["好评", "屏幕很好，电池续航短。"]
    options = [GenerationOptions(max_new_tokens=2, no_repeat_ngram_size=0), GenerationOptions(max_new_tokens=20)]
    events: list[tuple[str, int]] = []
    generations = engine.summarize(
        texts,
        options,
        on_tokens=lambda i, _delta: events.append(("token", i)),
        on_finish=lambda i, generation: events.append(("finish", i)),
    )
    short_finished = events.index(("finish", 0))
    assert ("token", 1) in events[short_finished + 1 :]  # the long row was still decoding
    assert events[-1] == ("finish", 1)
    assert [e for e in events if e[0] == "finish"] == [("finish", 0), ("finish", 1)]
    assert generations[0].output_tokens <= 2
