"""Headless Locust run against a running ReviewSum gateway: results folder, CSV + HTML, pass/fail.

    .venv/bin/python loadtest/run.py --host localhost:50051 --shape steady -u 16 -r 4 -t 2m \\
        [--target-rps 8] [--max-error-ratio 0.01] [--max-p95-ms 3000] [--workers 2] [-- EXTRA LOCUST ARGS]

Writes `results/loadtest/<UTC timestamp>/`: Locust's `locust_stats.csv`, `locust_stats_history.csv`,
`locust_failures.csv`, `locust_exceptions.csv`, `report.html`, `locust_reviewsum.json` (summary
tokens, status codes, stream time to first message), `locust.log` (+ `worker-N.log`), `command.txt`
and `summary.json`. Exit status: 0 within thresholds, 2 past a threshold (error ratio or p95), 3 when
the gateway is not SERVING before the run, 1 for anything else (Locust's own errors).

`--workers N` runs Locust distributed on this machine: one master (which owns the load shape, the
statistics and the thresholds) and N worker processes (which run the users), over 127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LOADTEST_DIR = Path(__file__).resolve().parent
REPO_ROOT = LOADTEST_DIR.parent
LOCUSTFILE = LOADTEST_DIR / "locustfile.py"
EXIT_THRESHOLD, EXIT_NOT_SERVING = 2, 3


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Arguments after -- go to Locust.")
    parser.add_argument("--host", default="localhost:50051", help="gateway address host:port")
    parser.add_argument("--shape", choices=["steady", "ramp", "spike"], default="steady")
    parser.add_argument("-u", "--users", type=int, default=8, help="users (steady), peak (ramp), base (spike)")
    parser.add_argument("-r", "--spawn-rate", type=float, default=4.0, help="users started per second")
    parser.add_argument("-t", "--duration", default="60s", help="run time, e.g. 30s, 10m (default 60s)")
    parser.add_argument("--spike-users", type=int, default=0, help="users during the spike (default 3 x -u)")
    parser.add_argument("--target-rps", type=float, default=0.0, help="total calls per second (0: think time)")
    parser.add_argument("--think-time", type=float, default=1.0, help="mean seconds between a user's calls")
    parser.add_argument("--rpc-mix", default="", help="RPC:weight list (default: the locustfile's mix)")
    parser.add_argument("--call-timeout", type=float, default=30.0, help="deadline of each call, seconds")
    parser.add_argument("--max-error-ratio", type=float, default=0.01, help="fail past this error ratio (-1: off)")
    parser.add_argument("--max-p95-ms", type=float, default=-1.0, help="fail when p95 passes this many ms (-1: off)")
    parser.add_argument("--data-dir", default="", help="review data folder (default ../shared/data)")
    parser.add_argument("--workers", type=int, default=0, help="distributed: this many worker processes")
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "results" / "loadtest")
    parser.add_argument("--no-health-check", action="store_true", help="start even if the gateway is not SERVING")
    parser.add_argument(
        "--request-log", action="store_true", help="also write requests.jsonl (one line per call) and per-minute stats"
    )
    args, rest = parser.parse_known_args(argv)
    extra = rest[1:] if rest[:1] == ["--"] else rest
    return args, extra


def gateway_serving(address: str, timeout_s: float = 10.0) -> bool:
    from reviewsum import NO_RETRIES, ReviewSumClient, ReviewSumError

    deadline = time.monotonic() + timeout_s
    with ReviewSumClient(address, timeout=2.0, retry=NO_RETRIES) as client:
        while time.monotonic() < deadline:
            try:
                if client.health():
                    return True
            except ReviewSumError:
                pass
            time.sleep(0.5)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def locust_command(args: argparse.Namespace, out: Path, extra: list[str]) -> list[str]:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", args.host,
        "--shape", args.shape, "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.duration,
        "--target-rps", str(args.target_rps), "--think-time", str(args.think_time),
        "--call-timeout", str(args.call_timeout), "--spike-users", str(args.spike_users),
        "--max-error-ratio", str(args.max_error_ratio), "--max-p95-ms", str(args.max_p95_ms),
        "--csv", str(out / "locust"), "--csv-full-history", "--html", str(out / "report.html"),
        "--logfile", str(out / "locust.log"), "--stop-timeout", str(int(args.call_timeout) + 5),
    ]  # fmt: skip
    if args.rpc_mix:
        command += ["--rpc-mix", args.rpc_mix]
    command += data_options(args)
    if args.request_log:
        command += ["--request-log", str(out / "requests.jsonl")]
    return command + extra


def data_options(args: argparse.Namespace) -> list[str]:
    """Input-pool options: workers read the pool at start-up, before the master sends its options."""
    return ["--data-dir", args.data_dir] if args.data_dir else []


def aggregated_row(stats_csv: Path) -> dict[str, str]:
    if not stats_csv.exists():
        return {}
    with stats_csv.open(encoding="utf-8") as f:
        return next((row for row in csv.DictReader(f) if row.get("Name") == "Aggregated"), {})


def per_minute(request_log: Path) -> list[dict[str, float | int]]:
    """Calls, errors and latency percentiles per minute of the run, from the per-call log (soak stability)."""
    calls = [json.loads(line) for line in request_log.read_text(encoding="utf-8").splitlines() if line.strip()]
    calls = [c for c in calls if c.get("start")]
    if not calls:
        return []
    origin = min(c["start"] for c in calls)
    minutes: dict[int, list[dict[str, Any]]] = {}
    for call in calls:
        minutes.setdefault(int((call["start"] - origin) // 60), []).append(call)
    rows = []
    for minute, items in sorted(minutes.items()):
        latencies = sorted(c["ms"] for c in items)
        rows.append(
            {
                "minute": minute,
                "calls": len(items),
                "errors": sum(1 for c in items if c["code"] != "OK"),
                **{f"p{q}_ms": latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] for q in (50, 95, 99)},
            }
        )
    return rows


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from locust.util.timespan import parse_timespan

    out = args.results_dir / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_health_check and not gateway_serving(args.host):
        print(f"gateway {args.host} is not SERVING (start it with `make run`); nothing was run", file=sys.stderr)
        return EXIT_NOT_SERVING
    # Fill the input-pool cache once, so that every Locust process starts at once.
    sys.path.insert(0, str(LOADTEST_DIR))
    import review_texts

    review_texts.load_pool(Path(args.data_dir) if args.data_dir else None)
    command = locust_command(args, out, extra)
    workers: list[subprocess.Popen[bytes]] = []
    if args.workers > 0:
        port = free_port()
        command += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        command += ["--expect-workers", str(args.workers), "--expect-workers-max-wait", "60"]
        worker_command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker"]
        worker_command += ["--master-host", "127.0.0.1", "--master-port", str(port), *data_options(args)]
        for index in range(args.workers):
            log = (out / f"worker-{index}.log").open("wb")
            workers.append(subprocess.Popen(worker_command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT))
    (out / "command.txt").write_text(shlex.join(command) + "\n", encoding="utf-8")
    print(f"results: {out}\nrunning: {shlex.join(command)}", flush=True)
    # Bounded: the run stops itself at -t; this is the backstop if it does not.
    limit_s = parse_timespan(args.duration) + args.call_timeout + 90
    started = time.monotonic()
    try:
        code = subprocess.run(command, cwd=REPO_ROOT, timeout=limit_s).returncode
    except subprocess.TimeoutExpired:
        print(f"locust did not stop within {limit_s:.0f} s", file=sys.stderr)
        code = 1
    finally:
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    for kind in ("stats", "failures"):
        final = out / f"locust_{kind}_final.csv"
        if final.exists():
            final.replace(out / f"locust_{kind}.csv")
    row = aggregated_row(out / "locust_stats.csv")
    extra_stats_path = out / "locust_reviewsum.json"
    log_path = out / "requests.jsonl"
    summary = {
        "per_minute": per_minute(log_path) if log_path.exists() else None,
        "command": command,
        "exit_code": code,
        "wall_s": round(time.monotonic() - started, 1),
        "thresholds": {"max_error_ratio": args.max_error_ratio, "max_p95_ms": args.max_p95_ms},
        "aggregated": row,
        "reviewsum": json.loads(extra_stats_path.read_text()) if extra_stats_path.exists() else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if row:
        requests, failures = int(row["Request Count"]), int(row["Failure Count"])
        print(
            f"requests {requests}, failures {failures} ({failures / max(requests, 1):.2%}), "
            f"{float(row['Requests/s']):.2f} req/s, p50 {row['50%']} ms, p95 {row['95%']} ms, p99 {row['99%']} ms"
        )
    for minute in summary["per_minute"] or []:
        print(
            f"  minute {minute['minute']}: {minute['calls']} calls, {minute['errors']} errors, "
            f"p50 {minute['p50_ms']:.0f} ms, p95 {minute['p95_ms']:.0f} ms, p99 {minute['p99_ms']:.0f} ms"
        )
    verdict = {0: "PASS", EXIT_THRESHOLD: "FAIL: past a threshold (see above)"}.get(code, f"FAIL: locust exit {code}")
    print(f"{verdict}; results in {out}")
    return code


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    return run(args, extra)


if __name__ == "__main__":
    sys.exit(main())
