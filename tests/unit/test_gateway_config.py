from __future__ import annotations

import dataclasses

import pytest
from reviewsum.v1 import reviewsum_pb2 as pb
from reviewsum_server import config
from reviewsum_server.config import GatewayConfig
from reviewsum_server.domain import InvalidRequest
from reviewsum_server.validation import validate_summarize_request


def test_flags_override_environment_which_overrides_defaults() -> None:
    environ = {"REVIEWSUM_PORT": "6000", "REVIEWSUM_TRITON_URL": "triton:9001", "REVIEWSUM_DEFAULT_TIMEOUT_S": "2.5"}
    cfg = config.parse(["--port", "7000"], environ)
    assert cfg.port == 7000
    assert cfg.triton_url == "triton:9001"
    assert cfg.default_timeout_s == 2.5
    assert cfg.model_name == GatewayConfig().model_name


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GatewayConfig().port = 1  # type: ignore[misc]


def test_every_field_has_help_for_the_readme_table() -> None:
    assert {f.name for f in dataclasses.fields(GatewayConfig)} == set(config.HELP)


def test_unknown_language_enum_value_is_rejected() -> None:
    request = pb.SummarizeReviewsRequest(reviews=[pb.Review(text="好")])
    request.options.language_hint = 42  # an enum number this server does not know
    with pytest.raises(InvalidRequest) as info:
        validate_summarize_request(request, GatewayConfig())
    assert [v.field for v in info.value.violations] == ["options.language_hint"]


def test_readme_documents_every_setting_with_its_default() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert config.update_readme_table(readme) == readme, "run: python -m reviewsum_server.config README.md"
    for f in dataclasses.fields(GatewayConfig):
        row = f"| `--{f.name.replace('_', '-')}` | `{config.env_name(f.name)}` | `{f.default}` |"
        assert row in readme, f"README lacks the row for {f.name}"
