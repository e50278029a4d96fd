"""JSON logs written off the event loop still carry the request id of the call that logged."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from reviewsum_server import logs


def test_each_line_has_the_request_id_of_the_task_that_logged_it() -> None:
    stream = io.StringIO()
    logs.configure("INFO", stream)
    log = logging.getLogger("reviewsum_server.test")

    async def call(request_id: str) -> None:
        logs.REQUEST_ID.set(request_id)
        await asyncio.sleep(0)
        log.info("summarized", extra={"method": "SummarizeReviews", "reviews": 1})

    async def main() -> None:
        await asyncio.gather(*(call(f"req-{i}") for i in range(20)))

    try:
        asyncio.run(main())
    finally:
        logs.stop()  # flushes the queue
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted(line["request_id"] for line in lines) == sorted(f"req-{i}" for i in range(20))
    assert {line["msg"] for line in lines} == {"summarized"}
    assert {line["method"] for line in lines} == {"SummarizeReviews"}


def test_debug_records_are_dropped_at_info_level() -> None:
    stream = io.StringIO()
    logs.configure("INFO", stream)
    try:
        logging.getLogger("x").debug("hidden")
        logging.getLogger("x").warning("shown")
    finally:
        logs.stop()
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["shown"]


def test_after_stop_records_are_written_directly() -> None:
    stream = io.StringIO()
    logs.configure("INFO", stream)
    logs.stop()
    logging.getLogger("x").warning("late")
    assert json.loads(stream.getvalue().splitlines()[-1])["msg"] == "late"
    logging.getLogger().handlers.clear()
