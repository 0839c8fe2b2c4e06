"""Log lines carry ids for SREs and never a secret, even when a caller slips one in."""

from __future__ import annotations

import json

import pytest
import structlog

from shared.logging import configure_logging, get_logger


def test_log_lines_are_json_with_context_and_no_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("tests", "INFO", "json")
    with structlog.contextvars.bound_contextvars(tenancy_id="t-1", trace_id="abc"):
        get_logger("tests").info(
            "connecting",
            password="hunter2",
            dsn="postgresql://tenant_x:s3cret@127.0.0.1:5432/db",
            detail="retrying postgresql://tenant_x:s3cret@127.0.0.1:5432/db",
            api_token="tok",
        )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["tenancy_id"] == "t-1"
    assert line["trace_id"] == "abc"
    assert line["service"] == "tests"
    text = json.dumps(line)
    assert "hunter2" not in text
    assert "s3cret" not in text
    assert "tok" not in text.replace("api_token", "")
