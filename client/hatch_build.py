"""Generate the reviewsum.v1 Python stubs from the repository's protos/ before packaging."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

HERE = Path(__file__).resolve().parent
PROTO_ROOTS = (HERE.parent / "protos", HERE / "protos")  # the repository, or an unpacked sdist
PROTO_FILE = "reviewsum/v1/reviewsum.proto"
OUT = HERE / "src"


def find_proto_root() -> Path:
    for root in PROTO_ROOTS:
        if (root / PROTO_FILE).exists():
            return root
    raise FileNotFoundError(f"{PROTO_FILE} not found under any of {[str(r) for r in PROTO_ROOTS]}")


def generate() -> None:
    import grpc_tools
    from grpc_tools import protoc

    root = find_proto_root()
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{root}",
        f"-I{include}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        str(root / PROTO_FILE),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {root / PROTO_FILE}")


class ProtoBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        generate()
        if self.target_name == "sdist":
            shutil.copytree(find_proto_root(), HERE / "protos", dirs_exist_ok=True)
        # The stubs are git-ignored, so hatch would leave them out unless named here.
        build_data["artifacts"].append("src/reviewsum/v1/*_pb2*.py*")
