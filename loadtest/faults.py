"""Faults under load, scripted: each scenario runs while Locust drives steady load, and reports counts.

    .venv/bin/python loadtest/faults.py [--scenarios kill-triton,sigterm-gateway,saturate] [--artifacts DIR]
                                        [--users 8] [--out results/faults]

- `kill-triton`: the `make run` supervisor (`python -m reviewsum_server.run`) serves; Triton is killed with
  SIGKILL. Measured: when health turns NOT_SERVING and calls fail (with which code, and how fast: none
  may hang to its deadline), when the supervisor's new Triton is up and health is SERVING again, and
  whether the gateway process stayed the same.
- `sigterm-gateway`: Triton + a stand-alone gateway; long calls are started, then the gateway gets
  SIGTERM. Measured: how many calls in flight at SIGTERM failed (goal 0), how new calls are refused
  (code, latency), how long the gateway took to exit and its exit status.
- `saturate`: many users with no think time, far past capacity. Measured: calls per status code (goal:
  RESOURCE_EXHAUSTED, not DEADLINE_EXCEEDED), and the RSS of the gateway and of Triton (start, peak, end).

Besides Locust (whose per-call log is kept), two probe threads call the gateway directly: a health check
every 50 ms and a one-review SummarizeReviews every 100 ms with a 5 s deadline. Everything lands in
`<out>/<UTC timestamp>/<scenario>/` and a `faults.json` summary; the script prints a table.
All traffic goes to 127.0.0.1 and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

LOADTEST_DIR = Path(__file__).resolve().parent
REPO_ROOT = LOADTEST_DIR.parent
sys.path[:0] = [str(LOADTEST_DIR), str(REPO_ROOT)]

from bench import resolve_artifacts, rss_bytes  # noqa: E402
from reviewsum.v1 import reviewsum_pb2 as pb  # noqa: E402
from reviewsum.v1 import reviewsum_pb2_grpc as pb_grpc  # noqa: E402

from tests.integration.services import (  # noqa: E402
    free_ports,
    log_tail,
    running_triton,
    start_gateway,
    stop_process,
    wait_serving,
)

SERVICE_NAME = "reviewsum.v1.ReviewSummarizer"
PROBE_DEADLINE_S = 5.0
PROBE_REVIEW = "屏幕效果非常棒，性价比高，但品控有待提升。"
LONG_REVIEWS = [
    "酒店位置很好，离地铁站很近，房间干净整洁，服务员态度也很热情，就是早餐品种少了一点，隔音一般。",
    "The battery lasts two days, the screen is bright and sharp, but the camera struggles in low light.",
    "外卖送得很快，包装也很好，菜的味道不错，分量足，价格实惠，下次还会再点这家。",
    "衣服质量不错，做工精细，穿着舒服，颜色和图片一样，尺码偏小建议买大一号。",
]


# ---------------------------------------------------------------- probes


@dataclass
class Probes:
    """Health every 50 ms and a one-review call every 100 ms, timestamped with the wall clock."""

    address: str
    health: list[tuple[float, str]] = field(default_factory=list)  # (time, SERVING | NOT_SERVING | code)
    calls: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, code)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Probes:
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._health_loop, self._call_loop)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(PROBE_DEADLINE_S + 2)

    def _health_loop(self) -> None:
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not self._stop.is_set():
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=1.0).status
                    state = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
                except grpc.RpcError as exc:
                    state = exc.code().name
                self.health.append((time.time(), state))
                self._stop.wait(0.05)

    def _call_loop(self) -> None:
        request = pb.SummarizeReviewsRequest(reviews=[pb.Review(id="probe", text=PROBE_REVIEW)])
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.ReviewSummarizerStub(channel)
            while not self._stop.is_set():
                start = time.time()
                try:
                    stub.SummarizeReviews(request, timeout=PROBE_DEADLINE_S)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                self.calls.append((start, time.time(), code))
                self._stop.wait(0.1)


def first(items: list[Any], predicate: Any, after: float) -> Any:
    return next((item for item in items if item[0] >= after and predicate(item)), None)


# ---------------------------------------------------------------- load


@dataclass
class Load:
    process: subprocess.Popen[bytes]
    results: Path
    log: Path

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            return self.process.wait(30)

    def summary(self) -> dict[str, Any]:
        runs = sorted(self.results.iterdir()) if self.results.exists() else []
        if not runs:
            return {"error": f"no Locust results; see {self.log}"}
        path = runs[-1] / "locust_reviewsum.json"
        data = json.loads(path.read_text()) if path.exists() else {"error": f"no {path}"}
        data["results"] = str(runs[-1])
        return data

    def request_log(self) -> list[dict[str, Any]]:
        runs = sorted(self.results.iterdir()) if self.results.exists() else []
        path = runs[-1] / "requests.jsonl" if runs else None
        if path is None or not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def start_load(address: str, out: Path, duration_s: int, *args: str) -> Load:
    results = out / "locust"
    log = out / "locust-runner.log"
    command = [
        sys.executable, str(LOADTEST_DIR / "run.py"), "--host", address, "-t", f"{duration_s}s",
        "--results-dir", str(results), "--max-error-ratio", "-1", "--request-log", "--call-timeout", "10", *args,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    return Load(process, results, log)


# ---------------------------------------------------------------- scenario: kill Triton


@contextmanager
def supervised(repository: Path, out: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`python -m reviewsum_server.run` (what `make run` starts) on free ports."""
    http, grpc_port, metrics, gateway_port, gateway_metrics = free_ports(5)
    help_text = subprocess.run(
        [sys.executable, "-m", "reviewsum_server.run", "--help"], capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout
    prefix = "--triton-" if "--triton-grpc-port" in help_text else "--"
    command = [
        sys.executable, "-m", "reviewsum_server.run", "--model-repository", str(repository),
        f"{prefix}http-port", str(http), f"{prefix}grpc-port", str(grpc_port), f"{prefix}metrics-port", str(metrics),
        "--host", "127.0.0.1", "--port", str(gateway_port),
    ]  # fmt: skip
    if prefix == "--triton-":
        command += ["--metrics-port", str(gateway_metrics)]
    log = out / "supervisor.log"
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    address = f"127.0.0.1:{gateway_port}"
    try:
        wait_serving(address, process, log, timeout_s=240)
        yield process, address, log
    finally:
        stop_process(process, timeout_s=30)


def triton_pid(supervisor: subprocess.Popen[bytes]) -> int | None:
    try:
        children = psutil.Process(supervisor.pid).children(recursive=True)
    except psutil.Error:
        return None
    return next((c.pid for c in children if c.name() == "tritonserver"), None)


def kill_triton(repository: Path, out: Path, users: int, load_s: int, fault_at_s: float) -> dict[str, Any]:
    with supervised(repository, out) as (supervisor, address, log):
        old_pid = triton_pid(supervisor)
        load = start_load(address, out, load_s, "-u", str(users), "-r", str(users), "--think-time", "0.5")
        with Probes(address) as probes:
            time.sleep(fault_at_s)
            killed_at = time.time()
            os.kill(old_pid, signal.SIGKILL)  # type: ignore[arg-type]
            new_pid, restarted_at = None, None
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                pid = triton_pid(supervisor)
                if new_pid is None and pid not in (None, old_pid):
                    new_pid, restarted_at = pid, time.time()
                if restarted_at is not None and first(probes.calls, lambda c: c[2] == "OK", restarted_at):
                    break
                time.sleep(0.1)
            code = load.wait(load_s + 120)
        gateway_same = supervisor.poll() is None
    orphans = orphaned_stubs(old_pid, wait_s=10.0)
    failed = [c for c in probes.calls if c[0] >= killed_at and c[2] != "OK"]
    not_serving = first(probes.health, lambda h: h[1] != "SERVING", killed_at)
    serving_again = first(probes.health, lambda h: h[1] == "SERVING", not_serving[0] if not_serving else killed_at)
    first_failure = min(failed, key=lambda c: c[1]) if failed else None
    last_failure = max(failed, key=lambda c: c[0]) if failed else None
    recovered = first(probes.calls, lambda c: c[2] == "OK", last_failure[0] if last_failure else killed_at)
    requests = load.request_log()
    after_kill = [r for r in requests if r["start"] and r["start"] + r["ms"] / 1000 >= killed_at]
    return {
        "triton_pid_before": old_pid,
        "triton_pid_after": new_pid,
        "gateway_process_kept": gateway_same,
        "health_not_serving_after_s": _since(not_serving, killed_at),
        "first_failed_call_after_s": round(first_failure[1] - killed_at, 3) if first_failure else None,
        "triton_restarted_after_s": round(restarted_at - killed_at, 3) if restarted_at else None,
        "health_serving_again_after_s": _since(serving_again, killed_at),
        "calls_ok_again_after_s": round(recovered[1] - killed_at, 3) if recovered else None,
        "probe_failures_by_code": dict(Counter(c[2] for c in failed)),
        "probe_failed_call_max_ms": round(max((c[1] - c[0]) * 1000 for c in failed), 1) if failed else None,
        "probe_calls_at_deadline": sum(1 for c in probes.calls if c[1] - c[0] >= PROBE_DEADLINE_S - 0.05),
        "locust_calls_ending_after_kill_by_code": _codes(after_kill),
        "locust_failed_call_max_ms": _max_failed_ms(requests),
        "locust_calls_over_10s_deadline": sum(1 for r in requests if r["ms"] >= 9950),
        "orphaned_backend_stubs": orphans,
        "locust_exit_code": code,
        "locust": load.summary(),
        "supervisor_log_tail": log_tail(log, 15),
    }


def orphaned_stubs(killed_pid: int | None, wait_s: float) -> list[dict[str, Any]]:
    """Python-backend stub processes of the killed Triton (their argv names the parent pid) still alive after
    `wait_s`: reported, then killed so they do not outlive the drill."""
    time.sleep(wait_s)
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "memory_info"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] != "triton_python_backend_stub" or len(cmdline) < 9:
            continue
        if cmdline[5] == str(killed_pid):
            found.append(
                {"pid": process.pid, "model": cmdline[8], "rss_mib": round(process.info["memory_info"].rss / 2**20, 1)}
            )
            with suppress(psutil.Error):
                process.kill()
    return found


# ---------------------------------------------------------------- scenario: SIGTERM the gateway


def sigterm_gateway(repository: Path, out: Path, users: int, load_s: int, fault_at_s: float) -> dict[str, Any]:
    with running_triton(repository, out) as (triton, _):
        gateway, log, address = start_gateway(triton.grpc_url, out)
        try:
            wait_serving(address, gateway, log)
            load = start_load(address, out, load_s, "-u", str(users), "-r", str(users), "--think-time", "0.5")
            with Probes(address) as probes:
                time.sleep(fault_at_s)
                long_calls = start_long_calls(address, 8)
                time.sleep(0.3)  # the long calls are in flight
                terminated_at = time.time()
                gateway.send_signal(signal.SIGTERM)
                refused = new_call_after(address, 0.05)
                in_flight = [_outcome(f) for f in long_calls]
                try:
                    exit_code = gateway.wait(60)
                except subprocess.TimeoutExpired:
                    exit_code = None
                exited_at = time.time()
                after_exit = new_call_after(address, 0.2)
                code = load.wait(load_s + 120)
        finally:
            stop_process(gateway)
    requests = load.request_log()
    started_before = [r for r in requests if r["start"] and r["start"] < terminated_at]
    in_flight_locust = [r for r in started_before if r["start"] + r["ms"] / 1000 > terminated_at]
    started_after = [r for r in requests if r["start"] and r["start"] >= terminated_at]
    spanning = [c for c in in_flight if c["start"] < terminated_at < c["end"]]
    return {
        "long_calls_in_flight_at_sigterm": len(spanning),
        "long_calls_failed": sum(1 for outcome in in_flight if outcome["code"] != "OK"),
        "long_calls_ms": [c["ms"] for c in in_flight],
        "long_calls_codes": dict(Counter(c["code"] for c in in_flight)),
        "locust_calls_in_flight_at_sigterm": len(in_flight_locust),
        "locust_in_flight_calls_failed_by_code": _codes([r for r in in_flight_locust if r["code"] != "OK"]),
        "locust_calls_started_after_sigterm_by_code": _codes(started_after),
        "locust_refused_call_max_ms": _max_failed_ms(started_after),
        "new_call_during_drain": refused,
        "new_call_after_exit": after_exit,
        "gateway_exit_code": exit_code,
        "gateway_exit_after_s": round(exited_at - terminated_at, 3),
        "probe_calls_by_code_after_sigterm": dict(Counter(c[2] for c in probes.calls if c[0] >= terminated_at)),
        "locust_exit_code": code,
        "locust": load.summary(),
        "gateway_log_tail": log_tail(log, 15),
    }


def start_long_calls(address: str, count: int) -> list[Future[dict[str, Any]]]:
    """`count` calls of 4 reviews with 128-token summaries, each on its own channel (8 x 4 = 32 Triton
    requests: with the steady load they stay within Triton's queue of 64, so none is refused for capacity)."""

    def call() -> dict[str, Any]:
        reviews = [pb.Review(id=str(i), text=LONG_REVIEWS[i % len(LONG_REVIEWS)]) for i in range(4)]
        request = pb.SummarizeReviewsRequest(reviews=reviews, options=pb.SummarizeOptions(max_summary_tokens=128))
        start = time.time()
        with grpc.insecure_channel(address) as channel:
            try:
                pb_grpc.ReviewSummarizerStub(channel).SummarizeReviews(request, timeout=30)
                code = "OK"
            except grpc.RpcError as exc:
                code = f"{exc.code().name}: {exc.details()}"
        end = time.time()
        return {"code": code, "ms": round((end - start) * 1000, 1), "start": start, "end": end}

    pool = ThreadPoolExecutor(count)
    futures = [pool.submit(call) for _ in range(count)]
    pool.shutdown(wait=False)
    return futures


def _outcome(future: Future[dict[str, Any]]) -> dict[str, Any]:
    return future.result(timeout=60)


def new_call_after(address: str, delay_s: float) -> dict[str, Any]:
    time.sleep(delay_s)
    start = time.time()
    with grpc.insecure_channel(address) as channel:
        try:
            pb_grpc.ReviewSummarizerStub(channel).SummarizeReviews(
                pb.SummarizeReviewsRequest(reviews=[pb.Review(text=PROBE_REVIEW)]), timeout=PROBE_DEADLINE_S
            )
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
    return {"code": code, "ms": round((time.time() - start) * 1000, 1)}


# ---------------------------------------------------------------- scenario: saturate


def gateway_counters(metrics_port: int) -> dict[str, int]:
    """The gateway's own count of finished calls by method and code, and of refusals by reason."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    counters: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith(("reviewsum_requests_total{", "reviewsum_admission_refused_total{")):
            name, value = line.rsplit(" ", 1)
            if float(value):
                counters[name] = int(float(value))
    return dict(sorted(counters.items()))


def saturate(repository: Path, out: Path, users: int, load_s: int, gateway_args: list[str]) -> dict[str, Any]:
    (metrics_port,) = free_ports(1)
    with running_triton(repository, out) as (triton, _):
        gateway, log, address = start_gateway(triton.grpc_url, out, *gateway_args, "--metrics-port", str(metrics_port))
        try:
            wait_serving(address, gateway, log)
            triton_pids = [triton.process.pid] + [c.pid for c in psutil.Process(triton.process.pid).children(True)]
            memory: dict[str, list[int]] = {"gateway": [], "triton": []}
            load = start_load(
                address, out, load_s, "-u", str(users), "-r", str(max(users // 5, 1)), "--think-time", "0.05",
                "--rpc-mix", "SummarizeReviews:8,StreamSummarizeReview:2",
            )  # fmt: skip
            deadline = time.monotonic() + load_s + 120
            with Probes(address) as probes:
                while load.process.poll() is None and time.monotonic() < deadline:
                    memory["gateway"].append(rss_bytes([gateway.pid]))
                    memory["triton"].append(rss_bytes(triton_pids))
                    time.sleep(0.5)
            code = load.wait(60)
            healthy_after = new_call_after(address, 1.0)
            server_view = gateway_counters(metrics_port)
        finally:
            stop_process(gateway)
    requests = load.request_log()
    mib = 2**20
    return {
        "users": users,
        "gateway_args": gateway_args,
        "locust_calls_by_code": _codes(requests),
        # As the gateway saw them: a call it answered in time can still time out in a starved client.
        "gateway_counters": server_view,
        "deadline_exceeded": sum(1 for r in requests if r["code"] == "DEADLINE_EXCEEDED"),
        "resource_exhausted_p50_ms": _percentile([r["ms"] for r in requests if r["code"] == "RESOURCE_EXHAUSTED"], 50),
        "ok_p95_ms": _percentile([r["ms"] for r in requests if r["code"] == "OK"], 95),
        "locust_over_deadline_by_code": _codes([r for r in requests if r["ms"] > 10_500]),
        "probe_calls_by_code": dict(Counter(c[2] for c in probes.calls)),
        "probe_ms_by_code": {
            code: {"p50": _percentile(ms, 50), "max": round(max(ms), 1)}
            for code in {c[2] for c in probes.calls}
            for ms in [[(c[1] - c[0]) * 1000 for c in probes.calls if c[2] == code]]
        },
        "rss_mib": {
            name: {
                "start": round(values[0] / mib, 1) if values else None,
                "peak": round(max(values) / mib, 1) if values else None,
                "end": round(values[-1] / mib, 1) if values else None,
            }
            for name, values in memory.items()
        },
        "call_after_load": healthy_after,
        "locust_exit_code": code,
        "locust": load.summary(),
    }


# ---------------------------------------------------------------- helpers and main


def _since(item: Any, origin: float) -> float | None:
    return round(item[0] - origin, 3) if item else None


def _codes(requests: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(f"{r['name']} {r['code']}" for r in requests).items()))


def _max_failed_ms(requests: list[dict[str, Any]]) -> float | None:
    failed = [r["ms"] for r in requests if r["code"] != "OK"]
    return round(max(failed), 1) if failed else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="kill-triton,sigterm-gateway,saturate")
    parser.add_argument("--artifacts", type=Path, default=None, help="model artifacts (default as in bench.py)")
    parser.add_argument("--users", type=int, default=8, help="Locust users of the steady load")
    parser.add_argument("--load-s", type=int, default=45, help="seconds of load per scenario")
    parser.add_argument("--fault-at-s", type=float, default=15.0, help="seconds into the load the fault comes")
    parser.add_argument("--saturate-users", type=int, default=400)
    parser.add_argument("--saturate-gateway-args", default="", help="extra gateway flags for the saturate run")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "faults")
    args = parser.parse_args(argv)
    from reviewsum_build.model_repository import write_repository

    artifacts, origin = resolve_artifacts(args.artifacts)
    out = args.out / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    repository = write_repository(out / "model_repository", artifacts)
    report: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "model": origin,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "scenarios": {},
    }
    for scenario in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        folder = out / scenario
        folder.mkdir()
        print(f"--- {scenario} ({folder})", flush=True)
        if scenario == "kill-triton":
            result = kill_triton(repository, folder, args.users, args.load_s, args.fault_at_s)
        elif scenario == "sigterm-gateway":
            result = sigterm_gateway(repository, folder, args.users, args.load_s, args.fault_at_s)
        elif scenario == "saturate":
            extra = shlex.split(args.saturate_gateway_args)
            result = saturate(repository, folder, args.saturate_users, args.load_s, extra)
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
        report["scenarios"][scenario] = result
        shown = {k: v for k, v in result.items() if k not in ("locust", "supervisor_log_tail", "gateway_log_tail")}
        print(json.dumps(shown, indent=2, ensure_ascii=False), flush=True)
        (out / "faults.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out / 'faults.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
