"""Start the real tritonserver and the gateway on free ports for integration tests, and always tear them down."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reviewsum import NO_RETRIES, ReviewSumClient, ReviewSumError
from reviewsum_server.triton import TritonOptions, TritonServer

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class RunningServices:
    triton: TritonServer
    triton_log: Path
    gateway: subprocess.Popen[bytes]
    gateway_log: Path
    gateway_address: str

    @property
    def triton_grpc_url(self) -> str:
        return self.triton.grpc_url


@contextmanager
def running_triton(repository: Path, workdir: Path) -> Iterator[tuple[TritonServer, Path]]:
    http_port, grpc_port, metrics_port = free_ports(3)
    log_path = workdir / "tritonserver.log"
    with log_path.open("wb") as log_file:
        triton = TritonServer(
            TritonOptions(repository, http_port, grpc_port, metrics_port, cache_dir=REPO_ROOT / ".cache" / "triton"),
            log_file=log_file,
        )
        triton.start()
        try:
            try:
                triton.wait_ready(180.0)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n--- tritonserver log ---\n{log_tail(log_path)}") from exc
            yield triton, log_path
        finally:
            triton.stop()


def start_gateway(triton_url: str, workdir: Path, *extra_args: str) -> tuple[subprocess.Popen[bytes], Path, str]:
    port, metrics_port = free_ports(2)
    log_path = workdir / f"gateway-{port}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reviewsum_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--triton-url",
            triton_url,
            "--readiness-poll-s",
            "0.2",
            "--metrics-port",
            str(metrics_port),
            *extra_args,
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process, log_path, f"127.0.0.1:{port}"


def wait_serving(address: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    with ReviewSumClient(address, timeout=2.0, retry=NO_RETRIES) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited with {process.returncode}\n{log_tail(log_path)}")
            try:
                if client.health():
                    return
            except ReviewSumError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"gateway not SERVING within {timeout_s} s\n{log_tail(log_path)}")


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextmanager
def running_services(repository: Path, workdir: Path) -> Iterator[RunningServices]:
    with running_triton(repository, workdir) as (triton, triton_log):
        gateway, gateway_log, address = start_gateway(triton.grpc_url, workdir)
        try:
            wait_serving(address, gateway, gateway_log)
            yield RunningServices(triton, triton_log, gateway, gateway_log, address)
        finally:
            stop_process(gateway)
