"""A short headless Locust run of loadtest/locustfile.py against the real Triton + gateway (tiny model)."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.services import REPO_ROOT, RunningServices

pytestmark = [
    pytest.mark.integration,
    # Not imported here: importing locust monkey-patches the test process with gevent.
    pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="locust missing: install the bench extra"),
]

RUNNER = REPO_ROOT / "loadtest" / "run.py"
RPC_NAMES = {"SummarizeReviews", "StreamSummarizeReview", "SummarizeProduct", "StreamSummarizeReviews", "GetModelInfo"}


def run_locust(address: str, results: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    command = [sys.executable, str(RUNNER), "--host", address, "--results-dir", str(results), *args]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    (out,) = results.iterdir()
    return completed, out


def test_headless_run_makes_requests_without_failures(services: RunningServices, tmp_path: Path) -> None:
    completed, out = run_locust(
        services.gateway_address, tmp_path / "pass", "-u", "4", "-r", "4", "-t", "6s", "--think-time", "0.2",
        "--max-error-ratio", "0", "--max-p95-ms", "30000",
    )  # fmt: skip
    log = f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    assert completed.returncode == 0, log
    summary = json.loads((out / "summary.json").read_text())
    extra = summary["reviewsum"]
    assert extra["requests"] > 0, log
    assert extra["failures"] == 0, log
    assert extra["summary_tokens_total"] > 0
    assert set(extra["status_codes"]) <= {f"{name} OK" for name in RPC_NAMES}
    with (out / "locust_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert int(rows["Aggregated"]["Request Count"]) == extra["requests"]
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["SummarizeReviews"]["Request Count"]) > 0
    assert set(rows) - {"Aggregated"} <= RPC_NAMES
    assert (out / "report.html").stat().st_size > 0


def test_run_exits_non_zero_past_the_p95_threshold(services: RunningServices, tmp_path: Path) -> None:
    completed, out = run_locust(
        services.gateway_address, tmp_path / "fail", "-u", "2", "-r", "2", "-t", "2s", "--think-time", "0.1",
        "--rpc-mix", "SummarizeReviews:1", "--max-p95-ms", "0",
    )  # fmt: skip
    assert completed.returncode == 2, completed.stdout[-3000:]
    assert "threshold passed: p95" in completed.stdout
    assert json.loads((out / "summary.json").read_text())["reviewsum"]["requests"] > 0
