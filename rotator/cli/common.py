"""Pieces every command shares: the --config, -v/-q and --json options, the log level, and turning errors
(and signals) into exit codes.

--config, -v/--verbose and -q/--quiet are accepted before the subcommand (`rotator --config x.toml status`)
and after it (`rotator status --config x.toml`); the value after the subcommand wins.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TextIO, TypeVar

import click

from rotator.errors import ConfigError, ExitCode, RotatorError, UsageError

P = ParamSpec("P")
R = TypeVar("R")

LOG_LEVEL_ENV = "ROTATOR_LOG_LEVEL"
VERBOSITY_KEY = "rotator.verbosity"  # in ctx.meta (one dict for the group and its subcommand): -v +1, -q -10


def _inherited_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A subcommand without --config takes the one given before it (`rotator --config PATH status`)."""
    if value is not None:
        return value
    parent = ctx.parent
    while parent is not None:
        given = parent.params.get("config_path")
        if isinstance(given, str):
            return given
        parent = parent.parent
    return None


def _count_verbosity(step: int) -> Callable[[click.Context, click.Parameter, int], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: int) -> None:
        if value:
            ctx.meta[VERBOSITY_KEY] = ctx.meta.get(VERBOSITY_KEY, 0) + step * value
    return callback


def verbosity_options(func: Callable[P, R]) -> Callable[P, R]:
    """-v/--verbose (repeatable) and -q/--quiet; they set the log level of this run (see ``cli_logging``)."""
    func = click.option("-q", "--quiet", count=True, expose_value=False, callback=_count_verbosity(-10),
                        help="Log errors only.")(func)
    return click.option("-v", "--verbose", count=True, expose_value=False, callback=_count_verbosity(1),
                        help=f"Log more: -v info, -vv debug (default: warning, or ${LOG_LEVEL_ENV}).")(func)


def config_option(func: Callable[P, R]) -> Callable[P, R]:
    func = verbosity_options(func)
    return click.option(
        "--config", "config_path", metavar="PATH", default=None, callback=_inherited_config,
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
    """Turn RotatorError into one line on stderr and the contract's exit code; SIGINT/SIGTERM into 130/143
    (rotator.cli.interrupt)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from rotator.cli.interrupt import Interrupted, signals_handled

        try:
            with signals_handled():
                return func(*args, **kwargs)
        except Interrupted as exc:
            click.echo(f"rotator: interrupted by {exc}: stopped before finishing; run the command again "
                       "(every completed step is recorded)", err=True)
            sys.exit(exc.exit_code)
        except ConfigError as exc:
            click.echo(f"rotator: config error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except RotatorError as exc:
            click.echo(f"rotator: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def log_level(default_level: str = "warning") -> str:
    """The log level of this run: -q → error; -v → info; -vv → debug; else $ROTATOR_LOG_LEVEL; else
    ``default_level``."""
    import os

    ctx = click.get_current_context(silent=True)
    verbosity = int(ctx.meta.get(VERBOSITY_KEY, 0)) if ctx is not None else 0  # meta is shared by nested contexts
    if verbosity < 0:
        return "error"
    if verbosity > 0:
        return "debug" if verbosity > 1 else "info"
    return os.environ.get(LOG_LEVEL_ENV, default_level).strip().lower() or default_level


def cli_logging(default_level: str = "warning", *, stream: TextIO | None = None) -> None:
    """Logs at ``log_level`` to ``stream``: stderr by default, since the stdout of one-shot commands is their
    result, often JSON (progress is shown by the commands themselves); the service passes stdout. A bad
    $ROTATOR_LOG_LEVEL is a usage error."""
    from rotator.logs import configure_logging

    try:
        configure_logging(log_level(default_level), stream=sys.stderr if stream is None else stream)
    except ValueError as exc:
        raise UsageError(f"{LOG_LEVEL_ENV}: {exc}", hint="use debug, info, warning or error") from None


def print_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=None, sort_keys=True, default=str))
