"""Turn a growing list of token ids into text deltas that never split a character.

With byte fallback, characters outside the vocabulary are emitted as `<0xNN>` byte tokens, and the
tokenizer's ByteFallback decoder turns each maximal run of byte tokens into text as a whole: a run that
is valid UTF-8 becomes its characters, any other run becomes one U+FFFD per byte. A run's text can
therefore change with every byte added to it (`<0x61>` is "a", but `<0x61><0xBD>` is "\ufffd\ufffd"), and
only text before the trailing run is final. Deltas are cut there; `finish()` flushes the rest.
Concatenating every delta gives exactly the final decoded text.
"""

from __future__ import annotations

from tokenizers import Tokenizer


def byte_token_ids(tokenizer: Tokenizer) -> frozenset[int]:
    """Ids of the 256 `<0xNN>` pieces (fewer if the vocabulary lacks some)."""
    ids = (tokenizer.token_to_id(f"<0x{value:02X}>") for value in range(256))
    return frozenset(token_id for token_id in ids if token_id is not None)


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Tokenizer, byte_ids: frozenset[int] | None = None) -> None:
        self._tokenizer = tokenizer
        self._byte_ids = byte_token_ids(tokenizer) if byte_ids is None else byte_ids
        self._ids: list[int] = []
        self._emitted = ""
        self._emitted_ids = 0  # how many leading ids `_emitted` is the text of

    def push(self, token_id: int) -> str:
        """Add one generated id; return the newly final text (often "")."""
        self._ids.append(token_id)
        stable = len(self._ids)
        while stable and self._ids[stable - 1] in self._byte_ids:
            stable -= 1
        if stable == self._emitted_ids:
            return ""
        return self._advance_to(stable)

    def finish(self) -> str:
        """Flush the trailing byte run, as U+FFFD if its bytes never formed a character."""
        return self._advance_to(len(self._ids))

    def _advance_to(self, count: int) -> str:
        # Decoding the whole (short) prefix each time is simpler than windowed decoding and correct with the
        # decoder's leading-space strip; summaries are tens of tokens, so the cost is negligible.
        text = self._tokenizer.decode(self._ids[:count], skip_special_tokens=True)
        # Final text only grows at its end; if it ever did not, sending nothing keeps the client's prefix valid.
        if not text.startswith(self._emitted):
            return ""
        delta = text[len(self._emitted) :]
        self._emitted, self._emitted_ids = text, count
        return delta
