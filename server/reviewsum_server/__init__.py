"""The reviewsum.v1 gRPC gateway in front of Triton."""
