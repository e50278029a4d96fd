"""ONNX Runtime implementation of the step interface over optimum's encoder + merged decoder graphs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

_PAST_INPUT = re.compile(r"past_key_values\.(\d+)\.(decoder|encoder)\.(key|value)")


@dataclass(frozen=True)
class OrtDecoderState:
    encoder_hidden_states: np.ndarray  # float32 [rows, source_len, d_model]
    encoder_attention_mask: np.ndarray  # int64 [rows, source_len]
    self_attention: tuple[np.ndarray, ...]  # per layer key, value: [rows, heads, decoded_len, head_dim]
    cross_attention: tuple[np.ndarray, ...] | None  # per layer key, value; None until the first decode step

    @property
    def rows(self) -> int:
        return self.encoder_hidden_states.shape[0]


def make_session_options(intra_op_threads: int | None, allow_spinning: bool = True) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One request batch at a time per model instance: parallelism comes from intra-op threads only.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    if not allow_spinning:
        # Idle worker threads otherwise busy-wait for more work, taking cores from Triton's and the gateway's
        # network path; on 2 cores it caused latency stalls (docs/benchmarks.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OrtSeq2SeqBackend:
    """Encoder session + merged decoder session (`use_cache_branch` False on the first step, True after)."""

    def __init__(
        self, encoder_path: Path, decoder_path: Path, intra_op_threads: int | None = None, allow_spinning: bool = True
    ) -> None:
        options = make_session_options(intra_op_threads, allow_spinning)
        providers = ["CPUExecutionProvider"]
        self._encoder = ort.InferenceSession(str(encoder_path), sess_options=options, providers=providers)
        self._decoder = ort.InferenceSession(str(decoder_path), sess_options=options, providers=providers)
        self._self_names, self._cross_names, past_shape = self._discover_cache_inputs()
        self._heads, self._head_dim = int(past_shape[1]), int(past_shape[3])
        self._present_self = [name.replace("past_key_values", "present") for name in self._self_names]
        self._present_cross = [name.replace("past_key_values", "present") for name in self._cross_names]
        self._vocab_size = int(self._decoder.get_outputs()[0].shape[-1])

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def _discover_cache_inputs(self) -> tuple[list[str], list[str], list[int | str]]:
        """Order the cache inputs by layer, then key before value, matching the `present.*` outputs."""
        found: list[tuple[int, str, str, str, list[int | str]]] = []
        for node in self._decoder.get_inputs():
            match = _PAST_INPUT.fullmatch(node.name)
            if match:
                found.append((int(match[1]), match[2], match[3], node.name, node.shape))
        if not found:
            raise ValueError("decoder graph has no past_key_values inputs; export with text2text-generation-with-past")
        found.sort(key=lambda item: (item[0], item[2] != "key"))
        self_names = [item[3] for item in found if item[1] == "decoder"]
        cross_names = [item[3] for item in found if item[1] == "encoder"]
        return self_names, cross_names, found[0][4]

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> OrtDecoderState:
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        (hidden,) = self._encoder.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        return OrtDecoderState(hidden, mask, self_attention=(), cross_attention=None)

    def decode_step(self, state: OrtDecoderState, input_ids: np.ndarray) -> tuple[np.ndarray, OrtDecoderState]:
        feeds: dict[str, np.ndarray] = {
            "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64).reshape(-1, 1),
            "encoder_hidden_states": state.encoder_hidden_states,
            "encoder_attention_mask": state.encoder_attention_mask,
        }
        first_step = state.cross_attention is None
        if first_step:
            # The no-cache branch ignores the past inputs, but the graph still needs them bound: empty tensors.
            empty = np.zeros((state.rows, self._heads, 0, self._head_dim), dtype=np.float32)
            feeds.update(dict.fromkeys(self._self_names + self._cross_names, empty))
            outputs = ["logits", *self._present_self, *self._present_cross]
        else:
            feeds.update(zip(self._self_names, state.self_attention, strict=True))
            feeds.update(zip(self._cross_names, state.cross_attention, strict=True))
            outputs = ["logits", *self._present_self]
        feeds["use_cache_branch"] = np.array([not first_step], dtype=np.bool_)
        results = self._decoder.run(outputs, feeds)
        layers = len(self._self_names)
        self_attention = tuple(results[1 : 1 + layers])
        cross_attention = tuple(results[1 + layers :]) if first_step else state.cross_attention
        logits = np.ascontiguousarray(results[0][:, -1, :], dtype=np.float32)
        new_state = OrtDecoderState(
            state.encoder_hidden_states, state.encoder_attention_mask, self_attention, cross_attention
        )
        return logits, new_state

    def select_rows(
        self, state: OrtDecoderState, rows: np.ndarray, encoder_rows: np.ndarray | None = None
    ) -> OrtDecoderState:
        rows = np.asarray(rows, dtype=np.int64)
        encoder_rows = rows if encoder_rows is None else np.asarray(encoder_rows, dtype=np.int64)
        keep_encoder = _is_identity(encoder_rows, state.rows)
        hidden, mask = state.encoder_hidden_states, state.encoder_attention_mask
        cross = state.cross_attention
        if not keep_encoder:
            hidden, mask = hidden.take(encoder_rows, axis=0), mask.take(encoder_rows, axis=0)
            if cross is not None:
                cross = tuple(tensor.take(encoder_rows, axis=0) for tensor in cross)
        self_attention = state.self_attention
        if not _is_identity(rows, state.rows):
            self_attention = tuple(tensor.take(rows, axis=0) for tensor in self_attention)
        return OrtDecoderState(hidden, mask, self_attention, cross)


def _is_identity(rows: np.ndarray, current_rows: int) -> bool:
    return len(rows) == current_rows and bool(np.array_equal(rows, np.arange(current_rows)))
