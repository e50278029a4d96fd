"""`make run`: the real Triton server and the gateway in the foreground, supervised together.

Triton is restarted when it dies (the gateway reports NOT_SERVING meanwhile and
recovers without a restart). Ctrl-C or SIGTERM stops the gateway gracefully, then
Triton; nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reviewsum_server import config as config_module
from reviewsum_server import logs
from reviewsum_server.app import create_server
from reviewsum_server.config import GatewayConfig
from reviewsum_server.triton import TritonNotFound, TritonOptions, TritonServer, TritonStartError
from reviewsum_server.triton_engine import TritonEngine

log = logging.getLogger("reviewsum.run")
REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_REPOSITORY = REPO_ROOT / "model_repository"
SHIPPED_ARTIFACTS = SHIPPED_REPOSITORY / "summarizer" / "1" / "artifacts"
TRAINED_RUN_ARTIFACTS = REPO_ROOT / "runs" / "final" / "artifacts"
CACHE = REPO_ROOT / ".cache"
RESTART_DELAY_S = 1.0
EXAMPLE_REVIEW = '"性能出色，通话顺畅，但电池续航时间较短。"'


@dataclass(frozen=True)
class ServedModel:
    repository: Path
    description: str
    artifacts: Path | None = None  # lets the gateway count tokens with the model's own tokenizer


def has_artifacts(path: Path) -> bool:
    return (path / "encoder_model.onnx").exists() and (path / "tokenizer.json").exists()


def resolve_model() -> ServedModel:
    """The best model that exists: the committed one, else a local training run, else the tiny test model."""
    if has_artifacts(SHIPPED_ARTIFACTS):
        shipped = SHIPPED_ARTIFACTS.relative_to(REPO_ROOT)
        return ServedModel(SHIPPED_REPOSITORY, f"trained model shipped in {shipped}", SHIPPED_ARTIFACTS)
    from reviewsum_build.model_repository import write_repository

    serving = CACHE / "serving_repository"
    if has_artifacts(TRAINED_RUN_ARTIFACTS):
        write_repository(serving, TRAINED_RUN_ARTIFACTS)
        local_run = TRAINED_RUN_ARTIFACTS.relative_to(REPO_ROOT)
        return ServedModel(serving, f"local training run {local_run}", TRAINED_RUN_ARTIFACTS)
    from reviewsum_build.tiny import build_tiny_model

    tiny = CACHE / "tiny"
    artifacts = tiny / "artifacts"
    if not has_artifacts(artifacts):
        log.warning("no trained model found: building the tiny random-weight test model")
        artifacts = build_tiny_model(tiny)
    write_repository(serving, artifacts)
    description = "UNTRAINED tiny random-weight model (summaries are nonsense): no trained model yet"
    return ServedModel(serving, description, artifacts)


async def keep_triton_alive(triton: TritonServer, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        if triton.exited():
            code = triton.process.returncode if triton.process else None
            log.error("tritonserver exited with code %s; restarting in %.0f s", code, RESTART_DELAY_S)
            triton.reap_process_group()
            await asyncio.sleep(RESTART_DELAY_S)
            if not stopping.is_set():
                triton.start()
        await asyncio.sleep(0.5)


async def supervise(gateway_config: GatewayConfig, triton_options: TritonOptions, model: ServedModel) -> None:
    log_path = triton_options.cache_dir / "tritonserver.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as triton_log:
        triton = TritonServer(triton_options, log_file=triton_log)
        triton.start()  # from the main thread: Triton's parent-death signal follows the forking thread
        try:
            await asyncio.to_thread(triton.wait_ready, 300.0)
            await serve_until_signal(gateway_config, triton, model, log_path)
        finally:
            triton.stop()


async def serve_until_signal(config: GatewayConfig, triton: TritonServer, model: ServedModel, log_path: Path) -> None:
    gateway = await create_server(config, TritonEngine.from_config(config, triton.grpc_url))
    o = triton.options
    print(
        f"model:   {model.description}\n"
        f"triton:  HTTP localhost:{o.http_port}  gRPC localhost:{o.grpc_port}  metrics localhost:{o.metrics_port}"
        f"  (log {log_path})\n"
        f"gateway: gRPC {config.host}:{gateway.port}  (reviewsum.v1, grpc.health.v1, reflection)"
        f"  metrics localhost:{gateway.metrics.port}\n"
        f"try:     .venv/bin/reviewsum --address localhost:{gateway.port} summarize {EXAMPLE_REVIEW}\n"
        "Ctrl-C stops both.",
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    watchdog = asyncio.create_task(keep_triton_alive(triton, stopping))
    await stopping.wait()
    print("stopping: gateway first (in-flight calls finish), then Triton", flush=True)
    await gateway.stop(config.shutdown_grace_s)
    await watchdog


def parse_args(argv: Sequence[str] | None) -> tuple[GatewayConfig, TritonOptions, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="reviewsum-run", description=__doc__.splitlines()[0])
    parser.add_argument("--triton-http-port", type=int, default=8000, help="Triton HTTP port (default 8000)")
    parser.add_argument("--triton-grpc-port", type=int, default=8001, help="Triton gRPC port (default 8001)")
    parser.add_argument("--triton-metrics-port", type=int, default=8002, help="Triton metrics port (default 8002)")
    parser.add_argument("--model-repository", type=Path, default=None, help="serve this repository as it is")
    config_module.add_arguments(parser)
    args = parser.parse_args(argv)
    triton_options = TritonOptions(
        model_repository=SHIPPED_REPOSITORY,
        http_port=args.triton_http_port,
        grpc_port=args.triton_grpc_port,
        metrics_port=args.triton_metrics_port,
        cache_dir=CACHE / "triton",
    )
    gateway_config = config_module.from_sources(args)
    gateway_config = replace(gateway_config, triton_url=f"localhost:{args.triton_grpc_port}")
    return gateway_config, triton_options, args


def main(argv: Sequence[str] | None = None) -> None:
    gateway_config, triton_options, args = parse_args(argv)
    logs.configure(gateway_config.log_level)
    if args.model_repository is not None:
        model = ServedModel(args.model_repository, f"repository {args.model_repository}")
    else:
        model = resolve_model()
    triton_options = replace(triton_options, model_repository=model.repository)
    if not gateway_config.tokenizer_file and model.artifacts is not None:
        gateway_config = replace(gateway_config, tokenizer_file=str(model.artifacts / "tokenizer.json"))
    try:
        asyncio.run(supervise(gateway_config, triton_options, model))
    except (TritonStartError, TritonNotFound, OSError) as exc:
        log_file = triton_options.cache_dir / "tritonserver.log"
        raise SystemExit(f"reviewsum run: {exc} (Triton's log: {log_file})") from exc


if __name__ == "__main__":
    main()
