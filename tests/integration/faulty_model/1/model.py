"""Raises on every batch: Triton turns the exception into an error for each request."""

import triton_python_backend_utils as pb_utils  # noqa: F401 - present for Triton's loader


class TritonPythonModel:
    def execute(self, requests):  # type: ignore[no-untyped-def]
        raise RuntimeError("faulty model: secret internal detail")
