"""Start and stop the real Triton Inference Server shipped in the `nvidia-pytriton` wheel.

The wheel carries `tritonserver` (Triton 2.51), the Python backend and one backend
stub per Python version. Triton wants them in one `<backends>/python/` folder, so
that folder is assembled once under a cache directory. On a GPU host NVIDIA's
tritonserver container serves the same model repository with its own binary.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 8000, 8001, 8002


class TritonNotFound(RuntimeError):
    pass


class TritonStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backend_dir: Path  # pytriton/tritonserver/backends/python
    stub: Path
    libs: Path  # nvidia_pytriton.libs: the wheel's bundled shared libraries

    @classmethod
    def from_wheel(cls) -> TritonInstall:
        try:
            import pytriton  # type: ignore[import-untyped]
        except ImportError as exc:
            raise TritonNotFound("nvidia-pytriton is not installed: pip install nvidia-pytriton==0.7.0") from exc
        root = Path(pytriton.__file__).parent / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        install = cls(
            binary=root / "bin" / "tritonserver",
            backend_dir=root / "backends" / "python",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
            libs=root.parent.parent / "nvidia_pytriton.libs",
        )
        for path in (install.binary, install.backend_dir, install.stub):
            if not path.exists():
                raise TritonNotFound(f"{path} is missing from the nvidia-pytriton wheel (Python {version})")
        return install

    def assemble_backends(self, cache_dir: Path) -> Path:
        """`<cache>/backends/python/` with the backend library, its utils and this Python's stub."""
        target = cache_dir / "backends" / "python"
        target.mkdir(parents=True, exist_ok=True)
        for source in [*self.backend_dir.iterdir(), self.stub]:
            if source.is_file() and not (target / source.name).exists():
                shutil.copy2(source, target / source.name)
        return target.parent


@dataclass(frozen=True)
class TritonOptions:
    model_repository: Path
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    cache_dir: Path = Path(".cache/triton")
    log_verbose: int = 0
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def command(install: TritonInstall, options: TritonOptions, backends: Path) -> list[str]:
    return [
        str(install.binary),
        f"--model-repository={options.model_repository.resolve()}",
        f"--backend-directory={backends.resolve()}",
        f"--http-port={options.http_port}",
        f"--grpc-port={options.grpc_port}",
        f"--metrics-port={options.metrics_port}",
        f"--log-verbose={options.log_verbose}",
        *options.extra_args,
    ]


def environment(install: TritonInstall) -> dict[str, str]:
    """The wheel's libraries on the loader path, and this interpreter's venv first on PATH for the stub."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(install.libs), env.get("LD_LIBRARY_PATH")]))
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    return env


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM to Triton if our process dies, even by SIGKILL.

    The signal follows the thread that forked, so start Triton from the main thread.
    """
    with contextlib.suppress(OSError):  # not Linux: Ctrl-C and SIGTERM handling still stop Triton
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class TritonServer:
    """One tritonserver process: start, wait until the models are ready, stop (SIGTERM, then SIGKILL)."""

    def __init__(self, options: TritonOptions, log_file: IO[bytes] | None = None) -> None:
        self.options = options
        self.install = TritonInstall.from_wheel()
        self._log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.options.grpc_port}"

    def start(self) -> None:
        backends = self.install.assemble_backends(self.options.cache_dir)
        self.process = subprocess.Popen(
            command(self.install, self.options, backends),
            env=environment(self.install),
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C handling decides when Triton stops
            preexec_fn=_die_with_parent,
        )

    def is_ready(self) -> bool:
        url = f"http://localhost:{self.options.http_port}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TritonStartError(f"tritonserver exited with code {self.process.returncode} while starting")
            if self.is_ready():
                return
            time.sleep(0.25)
        raise TritonStartError(f"tritonserver was not ready within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reap_process_group()

    def reap_process_group(self) -> None:
        if self.process is not None:
            reap_process_group(self.process)


def reap_process_group(leader: subprocess.Popen[bytes]) -> None:
    """Kill what is left of an exited group leader's process group (Triton leads its own session).

    Triton's Python-backend stubs share its group and can outlive a Triton killed with SIGKILL (once
    for 30+ minutes in a fault drill), each holding a loaded model's memory.
    """
    if leader.poll() is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader.pid, signal.SIGKILL)
