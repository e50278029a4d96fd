"""One real tritonserver + gateway (tiny model) shared by the integration tests that only read from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from reviewsum import NO_RETRIES, ReviewSumClient
from reviewsum_engine import OnnxSummarizer

from tests.integration.services import RunningServices, running_services


@pytest.fixture(scope="session")
def services(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServices]:
    with running_services(tiny_model_repository, tmp_path_factory.mktemp("services")) as running:
        yield running


@pytest.fixture(scope="session")
def client(services: RunningServices) -> Iterator[ReviewSumClient]:
    with ReviewSumClient(services.gateway_address, timeout=60.0, retry=NO_RETRIES) as c:
        yield c


@pytest.fixture(scope="session")
def engine(tiny_artifacts: Path) -> OnnxSummarizer:
    return OnnxSummarizer(tiny_artifacts)
