"""The SDK is a package of its own: internal services install it without the serving stack."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"
ALLOWED = {"grpcio", "grpcio-status", "grpcio-health-checking", "protobuf"}


def test_client_depends_only_on_grpc_and_protobuf() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("<")[0].split("=")[0].strip() for dep in project["dependencies"]}
    assert names == ALLOWED
    assert project["scripts"]["reviewsum"] == "reviewsum.cli:main"


def test_client_code_imports_nothing_from_the_server_side() -> None:
    forbidden = {"torch", "onnxruntime", "tritonclient", "numpy", "reviewsum_server", "reviewsum_engine", "tokenizers"}
    for path in (CLIENT / "src" / "reviewsum").rglob("*.py"):
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{path.name} imports {roots & forbidden}"
