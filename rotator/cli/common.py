"""Pieces every command shares: the --config/--json options and turning errors into exit codes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click

from rotator.errors import ConfigError, ExitCode, RotatorError, UsageError

P = ParamSpec("P")
R = TypeVar("R")

def config_option(func: Callable[P, R]) -> Callable[P, R]:
    return click.option(
        "--config", "config_path", metavar="PATH", default=None,
        help="Config file (default: $ROTATOR_CONFIG, else ./rotator.toml).",
    )(func)


def json_option(func: Callable[P, R]) -> Callable[P, R]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")(
        func
    )


def fail(message: str, code: int = ExitCode.FAILED) -> None:
    click.echo(f"rotator: {message}", err=True)
    sys.exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn RotatorError into one line on stderr and the contract's exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"rotator: config error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except RotatorError as exc:
            click.echo(f"rotator: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def cli_logging(default_level: str = "warning") -> None:
    """Logs of one-shot commands go to stderr (stdout is the result, often JSON), at WARNING unless
    $ROTATOR_LOG_LEVEL says otherwise; progress is shown by the commands themselves."""
    import os

    from rotator.logs import configure_logging

    try:
        configure_logging(os.environ.get("ROTATOR_LOG_LEVEL", default_level), stream=sys.stderr)
    except ValueError as exc:
        raise UsageError(f"ROTATOR_LOG_LEVEL: {exc}") from None


def print_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=None, sort_keys=True, default=str))
