"""The `make run` supervisor: Triton and the gateway start together, Triton is restarted when it dies,
and SIGTERM stops both, leaving no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reviewsum import NO_RETRIES, ReviewSumClient, ReviewSumError

from tests.integration.services import free_ports, log_tail

pytestmark = pytest.mark.integration


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def wait_for(predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (zombies excluded)."""
    members = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z" and int(proc.name) != pgid:
                members.append(int(proc.name))
    return members


def healthy(address: str) -> bool:
    with ReviewSumClient(address, timeout=2, retry=NO_RETRIES) as client:
        try:
            return client.health()
        except ReviewSumError:
            return False


def test_supervisor_serves_restarts_triton_and_leaves_nothing_behind(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    http, grpc_port, metrics, gateway_port, gateway_metrics = free_ports(5)
    log_path = tmp_path / "run.log"
    args = [
        sys.executable, "-m", "reviewsum_server.run", "--model-repository", str(tiny_model_repository),
        "--triton-http-port", str(http), "--triton-grpc-port", str(grpc_port), "--triton-metrics-port", str(metrics),
        "--port", str(gateway_port), "--metrics-port", str(gateway_metrics), "--readiness-poll-s", "0.2",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        supervisor = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{gateway_port}"
    try:
        assert wait_for(lambda: healthy(address), 120), log_tail(log_path)
        assert f"gateway: gRPC 0.0.0.0:{gateway_port}" in log_path.read_text()
        with ReviewSumClient(address, retry=NO_RETRIES) as client:
            assert client.summarize(["性能出色，通话顺畅，但电池续航时间较短。"]).summaries[0].summary

        (triton_pid,) = children_of(supervisor.pid)
        assert group_members(triton_pid), "Triton's Python-backend stubs share its process group"
        os.kill(triton_pid, signal.SIGKILL)
        assert wait_for(lambda: not healthy(address), 15), "health did not turn NOT_SERVING"
        assert wait_for(lambda: healthy(address), 120), log_tail(log_path)  # restarted, gateway untouched
        (new_triton_pid,) = children_of(supervisor.pid)
        assert new_triton_pid != triton_pid
        assert wait_for(lambda: not group_members(triton_pid), 5), "the killed Triton's stubs were left running"

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0, log_tail(log_path)
        assert wait_for(lambda: not alive(new_triton_pid), 10), "tritonserver outlived the supervisor"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
