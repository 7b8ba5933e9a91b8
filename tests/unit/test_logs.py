"""Logging: JSON or console lines, secrets masked wherever they hide, chatty SDK loggers kept quiet."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from cryptography.fernet import Fernet

from rotator.domain import Secret
from rotator.logs import configure_logging, redact_text

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITLAB_TOKEN = "glpat-Abc123def456Ghi789jk"
SLACK_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUv"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_when_stdout_is_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    structlog.get_logger("rotator.test").info("rotated", credential="payments", key_id="AKIAIOSFODNN7EXAMPLE")
    [line] = json_lines(stream)
    assert line["event"] == "rotated"
    assert line["credential"] == "payments"
    assert line["key_id"] == "AKIAIOSFODNN7EXAMPLE"  # key ids are not secrets
    assert line["level"] == "info"
    assert str(line["timestamp"]).endswith("Z")


def test_readable_lines_on_a_terminal() -> None:
    stream = _Tty()
    configure_logging("info", stream=stream)
    structlog.get_logger("rotator.test").info("rotated", credential="payments")
    text = stream.getvalue()
    assert "rotated" in text and "payments" in text
    with pytest.raises(ValueError):
        json.loads(text.splitlines()[0])


@pytest.mark.parametrize("secret", [AWS_SECRET, GITLAB_TOKEN, SLACK_TOKEN, Fernet.generate_key().decode()])
def test_secret_shaped_text_is_masked_in_messages_fields_nested_values_and_tracebacks(secret: str) -> None:
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    log = structlog.get_logger("rotator.test")
    log.info(f"publishing {secret} now", detail=f"value={secret}", nested={"list": [f"x {secret} y"]})
    try:
        raise RuntimeError(f"GitLab said: {secret}")
    except RuntimeError:
        log.exception("publish failed")
    text = stream.getvalue()
    assert secret not in text
    assert "[redacted" in text
    assert "publish failed" in text and "RuntimeError" in text  # the rest of the line survives


def test_fields_named_like_secrets_are_masked_whatever_they_hold() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    structlog.get_logger("rotator.test").info(
        "call", password="hunter2", secret_access_key="short", headers={"PRIVATE-TOKEN": "abc", "Accept": "json"},
        token_env="ROTATOR_GITLAB_TOKEN", lease_token=7)
    [line] = json_lines(stream)
    assert line["password"] == "[redacted]"
    assert line["secret_access_key"] == "[redacted]"
    assert line["headers"] == {"PRIVATE-TOKEN": "[redacted]", "Accept": "json"}
    assert line["token_env"] == "ROTATOR_GITLAB_TOKEN"  # names where a secret lives are not secrets
    assert line["lease_token"] == 7  # a number is never a secret


def test_library_records_are_rendered_and_redacted_like_ours() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    logging.getLogger("gitlab.client").warning("retrying with token %s", GITLAB_TOKEN)
    [line] = json_lines(stream)
    assert line["logger"] == "gitlab.client"
    assert GITLAB_TOKEN not in json.dumps(line)


def test_botocore_stays_at_info_even_when_rotator_logs_debug() -> None:
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    # botocore at DEBUG would dump the whole CreateAccessKey response, SecretAccessKey included.
    logging.getLogger("botocore.parsers").debug("Response body: b'<SecretAccessKey>...'")
    logging.getLogger("urllib3.connectionpool").debug("https://iam.amazonaws.com:443 POST /")
    structlog.get_logger("rotator.test").debug("our own debug line")
    lines = json_lines(stream)
    assert [line["event"] for line in lines] == ["our own debug line"]
    for name in ("botocore", "boto3", "urllib3", "requests"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.INFO


def test_the_configured_level_filters_our_lines_and_configuring_again_replaces_the_handler() -> None:
    first = io.StringIO()
    configure_logging("warning", stream=first)
    structlog.get_logger("rotator.test").info("hidden")
    second = io.StringIO()
    configure_logging("info", stream=second)
    structlog.get_logger("rotator.test").info("shown")
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["shown"]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("verbose", stream=io.StringIO())


def test_redact_text_leaves_ordinary_text_alone() -> None:
    ordinary = ("rotated AKIAIOSFODNN7EXAMPLE for ci-payments-deploy in project payments/api; "
                "commit 3f786850e387550fdab836ed7e6dc881de23001b; rotation 123e4567-e89b-12d3-a456-426614174000")
    assert redact_text(ordinary) == ordinary
    assert str(Secret(AWS_SECRET)) == "Secret('********')"
