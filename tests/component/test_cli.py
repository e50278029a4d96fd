"""The `reviewsum` CLI against the real gateway on a free port (fake engine)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from reviewsum import cli
from reviewsum_server.app import Gateway

from tests.component.fake_engine import FakeEngine


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(cli.main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_summarize_text_prints_the_summary(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run_cli(capsys, "--address", f"127.0.0.1:{gateway.port}", "summarize", "电池续航短")
    assert (code, out) == (0, "摘要:电池续航短\n")


async def test_file_json_answers_every_line_in_input_order(
    gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "reviews.jsonl"
    rows = [{"id": f"r{i}", "text": f"评论{i}"} for i in range(100)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    address = f"127.0.0.1:{gateway.port}"
    code, out, _ = await run_cli(capsys, "--address", address, "summarize", "--file", str(path), "--json")
    printed = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [p["id"] for p in printed] == [r["id"] for r in rows]
    assert [p["summary"] for p in printed] == [f"摘要:评论{i}" for i in range(100)]
    assert printed[0]["finish_reason"] == "stop"


async def test_health_exit_code_follows_serving(
    gateway: Gateway, engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncio.sleep(0.15)
    assert (await run_cli(capsys, "--address", f"127.0.0.1:{gateway.port}", "health"))[:2] == (0, "SERVING\n")
    engine.ready = False
    await asyncio.sleep(0.15)
    assert (await run_cli(capsys, "--address", f"127.0.0.1:{gateway.port}", "health"))[:2] == (1, "NOT_SERVING\n")


async def test_service_errors_exit_1_with_one_line(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await run_cli(capsys, "--address", f"127.0.0.1:{gateway.port}", "summarize", "   ")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "INVALID_ARGUMENT" in err and "reviews[0].text" in err


async def test_malformed_file_exits_2_naming_the_line(
    gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1, "text": "好"}\n{oops\n', encoding="utf-8")
    code, _, err = await run_cli(capsys, "--address", f"127.0.0.1:{gateway.port}", "summarize", "--file", str(path))
    assert code == 2 and f"{path}:2:" in err


async def test_unreachable_service_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await run_cli(capsys, "--address", "127.0.0.1:1", "--timeout", "2", "health")
    assert code == 1 and err.startswith("reviewsum: UNAVAILABLE")


async def test_stream_prints_the_whole_summary(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run_cli(capsys, "--address", f"127.0.0.1:{gateway.port}", "stream", "屏幕很好")
    assert (code, out) == (0, "摘要:屏幕很好\n")


async def test_product_json_reports_counts(
    gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "product.jsonl"
    rows = [{"id": "a", "text": "屏幕很好。", "rating": 5}, {"id": "b", "text": "电池不行。", "rating": 1}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    address = f"127.0.0.1:{gateway.port}"
    code, out, _ = await run_cli(capsys, "--address", address, "product", "--file", str(path), "--json")
    product = json.loads(out)
    assert code == 0 and product["review_count"] == 2
    assert product["rating_distribution"] == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 1}


async def test_bulk_prints_one_line_per_item_and_exits_1_when_one_failed(
    gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bulk.jsonl"
    rows = [{"id": f"r{i}", "text": f"评论{i}"} for i in range(5)] + [{"id": "bad", "text": " "}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    code, out, _ = await run_cli(capsys, "--address", f"127.0.0.1:{gateway.port}", "bulk", "--file", str(path))
    printed = {row["id"]: row for row in map(json.loads, out.splitlines())}
    assert code == 1 and set(printed) == {"r0", "r1", "r2", "r3", "r4", "bad"}
    assert printed["r3"]["summary"] == "摘要:评论3" and printed["bad"]["error"]["code"] == "INVALID_ARGUMENT"
