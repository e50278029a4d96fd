"""The tokenizer conventions every other component relies on."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from reviewsum_build.tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID, load_tokenizer
from tokenizers import Tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_artifacts: Path) -> Tokenizer:
    return load_tokenizer(tiny_artifacts)


def test_special_token_ids(tokenizer: Tokenizer) -> None:
    expected = {"<s>": BOS_ID, "<pad>": PAD_ID, "</s>": EOS_ID, "<unk>": UNK_ID, "<mask>": MASK_ID}
    assert {token: tokenizer.token_to_id(token) for token in expected} == {
        "<s>": 0,
        "<pad>": 1,
        "</s>": 2,
        "<unk>": 3,
        "<mask>": 4,
    }


def test_encoding_appends_eos_and_no_bos(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("味道不错 good").ids
    assert ids[-1] == EOS_ID
    assert ids[0] != BOS_ID
    assert ids.count(EOS_ID) == 1


@pytest.mark.parametrize(
    "text",
    [
        "这家店的外卖送得很快，味道也不错。",
        "The delivery was fast and the food was still hot.",
        "质量不错 good quality！",
        "好评😀👍🏻 five stars",
        "罕见字：龘䶮𠀀 and ÇàÑ",
        "full-width，punctuation。stays",
    ],
)
def test_round_trip(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text).ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFC", text)


def test_unseen_characters_use_byte_fallback_not_unk(tokenizer: Tokenizer) -> None:
    encoding = tokenizer.encode("𠀀😀")
    assert UNK_ID not in encoding.ids
    assert all(token.startswith("<0x") for token in encoding.tokens[-9:-1])
