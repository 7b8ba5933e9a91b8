"""Logging for the service and the CLI: structlog, JSON when stdout is not a terminal (a journal, a
container runtime, a log shipper), readable lines when a person is watching, secrets masked either way.

Everything goes through one handler on the root logger, so lines from libraries (botocore, urllib3,
python-gitlab, APScheduler) are rendered and redacted exactly like ours.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# Kept at INFO or above whatever the configured level: botocore at DEBUG dumps whole responses,
# CreateAccessKey's SecretAccessKey included, and urllib3/requests log request URLs and headers.
CHATTY_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "requests")
# Kept at WARNING: they narrate routine work (Alembic's plugin setup on every schema check, APScheduler
# on every tick) and would bury rotator's own lines.
NARRATING_LIBRARIES = ("alembic", "apscheduler")

REDACTED = "[redacted]"

_SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # An AWS secret access key: 40 characters of base64 without '=', with both letter cases (a lowercase
    # 40-character hex digest such as a git commit id is left alone).
    ("aws-secret", re.compile(
        r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")),
    # GitLab tokens: glpat- (personal, group and project access tokens), gldt-, glrt-, glptt-, gloas-...
    ("gitlab-token", re.compile(r"\bgl[a-z]{0,6}-[0-9A-Za-z_\-.]{20,}")),
    # Slack tokens: xoxb-, xoxp-, xoxa-, xoxs-, xoxe-..., and app-level xapp- tokens.
    ("slack-token", re.compile(r"\b(?:xox[a-z]|xapp)-[0-9A-Za-z\-]{10,}")),
    # A Fernet key (the state key): 32 bytes in url-safe base64, 43 characters and one '='.
    ("fernet-key", re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{43}=(?![A-Za-z0-9_\-=])")),
)

# Field names whose value is a secret whatever it looks like (compared lower-case, '-' read as '_').
SECRET_FIELDS = frozenset({
    "secret", "secret_access_key", "secretaccesskey", "aws_secret_access_key", "password", "passwd",
    "token", "private_token", "access_token", "refresh_token", "session_token", "sessiontoken",
    "x_amz_security_token", "authorization", "cookie", "set_cookie", "api_key", "apikey", "client_secret",
    "private_key", "state_key", "sealed_secret", "gitlab_token", "slack_token",
})
_SECRET_SUFFIXES = ("_secret", "_password", "_token", "_secret_access_key")


# The password of a URL's userinfo: everything from the ':' after the user name to the last '@' before the path.
_PASSWORD_IN_URL = re.compile(r"(?P<head>://[^:/@]*:)[^/]*@")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to print or log (a database URL may carry one)."""
    return _PASSWORD_IN_URL.sub(r"\g<head>***@", url)


def is_secret_field(name: str) -> bool:
    normalized = name.lower().replace("-", "_")
    return normalized in SECRET_FIELDS or normalized.endswith(_SECRET_SUFFIXES)


def redact_text(text: str) -> str:
    """``text`` with every substring that looks like a secret replaced by a marker naming its kind."""
    for kind, pattern in _SECRET_PATTERNS:
        text = pattern.sub(f"{REDACTED[:-1]} {kind}]", text)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 8:  # deeper structures than any log line of ours: render them masked wholesale
        return REDACTED
    if isinstance(value, Mapping):
        return {key: (REDACTED if isinstance(key, str) and is_secret_field(key) and _is_text(item)
                      else _redact_value(item, depth + 1))
                for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item, depth + 1) for item in value]
    if isinstance(value, bytes | bytearray):
        return REDACTED
    return value


def _is_text(value: Any) -> bool:
    # A field named like a secret that holds a number or a flag (a lease's fencing token) is no secret.
    return not isinstance(value, bool | int | float) and value is not None


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-looking substrings anywhere, and whole values of secret fields."""
    for key, value in list(event_dict.items()):
        if is_secret_field(key) and _is_text(value):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(value)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Tracebacks become text here, before redaction, so a secret inside an exception message is masked.
        structlog.processors.format_exc_info,
        _drop_positional_args,
        redact_secrets,
    ]


def _drop_positional_args(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # Library records arrive already formatted; their raw %-args would only duplicate (unredacted) data.
    event_dict.pop("positional_args", None)
    return event_dict


class _RotatorHandler(logging.StreamHandler[TextIO]):
    """Marks the handler configure_logging installed, so configuring again replaces it."""


def configure_logging(level: str = "info", *, stream: TextIO | None = None, json_output: bool | None = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout by default) at ``level``.

    ``json_output`` None: JSON lines unless ``stream`` is a terminal. Safe to call again (SIGHUP may
    change the level): the previous handler is replaced.
    """
    stream = stream if stream is not None else sys.stdout
    use_json = not _is_tty(stream) if json_output is None else json_output
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    shared = _shared_processors()
    renderer: Processor = (structlog.processors.JSONRenderer(sort_keys=True) if use_json
                           else structlog.dev.ConsoleRenderer(colors=_is_tty(stream)))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _RotatorHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RotatorHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.INFO, numeric))
    for name in NARRATING_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Not cached: module-level loggers (``log = structlog.get_logger(...)``) must follow a reconfiguration.
        cache_logger_on_first_use=False,
    )


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())

