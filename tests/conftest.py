"""Shared fixtures: the tiny random-weight model, built once per test session, and a Triton repository for it."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ONNX artifacts directory of the tiny model (its HF checkpoint is the sibling `checkpoint/`)."""
    from reviewsum_build.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_artifacts: Path) -> Path:
    return tiny_artifacts.parent / "checkpoint"


@pytest.fixture(scope="session")
def tiny_model_repository(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete Triton model repository serving the tiny model (artifacts referenced by absolute path).

    Requests wait up to 20 ms for batch mates (2 ms in production) so that tests asserting that concurrent
    requests share a batch do not depend on how fast a busy machine sends them.
    """
    from reviewsum_build.model_repository import write_repository

    tuning = {"max_queue_delay_microseconds": 20_000}
    return write_repository(tmp_path_factory.mktemp("model-repository"), tiny_artifacts, tuning=tuning)
