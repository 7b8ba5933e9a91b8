"""The rules behind rotator.config.settings: one check per kind of value, reading secrets, and turning pydantic's
errors into one ConfigError line with a TOML key path.

Kept apart from the models so each rule is a plain function of a value, testable and reusable. Messages
never repeat the value of a field that may hold a secret (an *_env field, a database URL).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel

from rotator.config.patterns import ENV_NAME, REGION, ROLE_ARN
from rotator.domain import Secret, parse_duration
from rotator.errors import ConfigError


class ConfigProblem(ValueError):
    """Raised inside validators: ``where`` is a key path relative to the table being validated."""

    def __init__(self, where: tuple[str | int, ...], problem: str) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem


# --- values ---------------------------------------------------------------------------------------------


def duration(value: object) -> timedelta:
    if isinstance(value, timedelta):  # built in Python (tests, defaults), not read from TOML
        return value
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; write a whole number and a unit in quotes: "
                         "'90s', '15m', '1h', '30d'")
    return parse_duration(value)


def positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def _pattern_rule(pattern: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


check_name = _pattern_rule(r"[a-z0-9][a-z0-9._-]{0,63}",
                           "a valid name: lowercase letters, digits, '.', '_' and '-', starting with a letter or digit")
check_account_name = check_name
check_iam_user = _pattern_rule(r"[\w+=,.@-]{1,64}", "a valid IAM user name")
check_session_name = _pattern_rule(r"[\w+=,.@-]{2,64}", "a valid role session name (2-64 of letters, digits, +=,.@_-)")
check_role_arn = _pattern_rule(ROLE_ARN.pattern, "a role ARN like 'arn:aws:iam::111122223333:role/rotator'")
# IAM's path pattern (IAM API reference, Role data type: "(\u002F)|(\u002F[\u0021-\u007F]+\u002F)").
check_role_path = _pattern_rule(r"/|/[\x21-\x7e]+/", "an IAM path like '/ci/' (starts and ends with /)")
# A customer managed policy ARN pattern in IAM's ArnLike syntax (account id or *), or "" to turn the check off.
check_boundary_pattern = _pattern_rule(r"|arn:(?:aws[\w*?-]*|\*):iam::(?:\d{12}|\*):policy/[\w+=,.@/*?-]+",
                                       "an IAM policy ARN pattern like 'arn:aws:iam::*:policy/ci-boundary/*' (or \"\")")
check_region = _pattern_rule(REGION.pattern, "an AWS region like 'us-east-1'")
check_variable_name = _pattern_rule(r"[A-Za-z0-9_]{1,255}", "a GitLab variable key (letters, digits and _)")
check_gitlab_path = _pattern_rule(r"[\w.][\w.-]*(/[\w.][\w.-]*)*",
                                  "a GitLab full path like 'group/subgroup/project' (no leading or trailing /)")
check_environment_scope = _pattern_rule(r"[\w\-/${}.* ]{1,255}", "a GitLab environment scope "
                                        "(letters, digits, spaces and - _ / $ { } . *), e.g. '*' or 'review/*'")
check_slack_destination = _pattern_rule(r"#[a-z0-9][a-z0-9._-]{0,79}|[CGUW][A-Z0-9]{6,}",
                                        "a Slack channel ('#team-payments') or member or channel id ('U012AB3CD')")


def check_nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def check_env_name(value: str) -> str:
    # Never echo the value: the usual mistake here is pasting the secret itself.
    if not ENV_NAME.fullmatch(value):
        raise ValueError("must be the NAME of an environment variable (A-Z, 0-9 and _, e.g. ROTATOR_GITLAB_TOKEN), "
                         "not the secret itself")
    return value


def check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed; name the token with token_env or token_file")
    return value


def check_database_url(value: str) -> str:
    if not re.match(r"[a-z][a-z0-9+]*://", value):
        raise ValueError("is not a database URL; write e.g. 'sqlite:///rotator.db' or "
                         "'postgresql+psycopg://rotator@db.internal/rotator'")
    if urlsplit(value).password:
        raise ValueError("a password in the URL is not allowed (secrets never sit in the config file); "
                         "leave it out and give psycopg PGPASSWORD or PGPASSFILE")
    return value


def check_listen(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT, e.g. '127.0.0.1:9466' or '0.0.0.0:9466'")
    return value


def check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block like '203.0.113.0/24' ({exc})") from None
    return value


_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))
_CRON_NAMES = {
    3: {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"},
    4: {"mon", "tue", "wed", "thu", "fri", "sat", "sun"},
}


def check_cron_window(value: str) -> str:
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"{value!r} is not a 5-field cron expression (minute hour day-of-month month "
                         f"day-of-week), e.g. '* 9-16 * * mon-fri'; found {len(fields)} fields")
    for index, (text, (label, low, high)) in enumerate(zip(fields, _CRON_FIELDS, strict=True)):
        for token in re.split(r"[,/-]", text):
            if token == "*" or token.lower() in _CRON_NAMES.get(index, ()):
                continue
            if not token.isdigit():
                raise ValueError(f"{value!r}: the {label} field {text!r} may only hold numbers, *, ',', '-' and '/'"
                                 + (" or names" if index in _CRON_NAMES else ""))
            if not low <= int(token) <= high:
                raise ValueError(f"{value!r}: {token} is out of range for the {label} field ({low}-{high})")
    return value


# --- secrets ----------------------------------------------------------------------------------------------


def one_secret_source(section: BaseModel, prefix: str) -> None:
    """*_env and *_file both written is an error; a default *_env does not count as written."""
    env_written = f"{prefix}_env" in section.model_fields_set and getattr(section, f"{prefix}_env") is not None
    if env_written and getattr(section, f"{prefix}_file") is not None:
        raise ConfigProblem((f"{prefix}_file",), f"set either {prefix}_env or {prefix}_file, not both")


def read_secret(source: str, key_prefix: str, env_name: str | None, file_path: str | None,
                environ: Mapping[str, str]) -> Secret:
    """The secret from its file (one trailing newline stripped) or else its environment variable."""
    if file_path is not None:
        try:
            text = Path(file_path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise ConfigError(source, f"{key_prefix}_file", f"cannot read {file_path}: {why}",
                              hint="check the path and that rotator's user may read it") from None
        text = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
        if not text:
            raise ConfigError(source, f"{key_prefix}_file", f"{file_path} is empty")
        return Secret(text)
    if env_name is None:
        raise ConfigError(source, key_prefix, f"no {key_prefix.rpartition('.')[2]}_env or _file configured")
    value = environ.get(env_name)
    if value is None:
        problem = f"environment variable {env_name} is not set"
    elif not value:
        problem = f"environment variable {env_name} is empty"
    else:
        return Secret(value)
    raise ConfigError(source, f"{key_prefix}_env", problem,
                      hint=f"export {env_name} in rotator's environment, or set {key_prefix}_file to a file holding it")


_TOML_POSITION = re.compile(
    r"\A(?P<problem>.*?) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)\Z")


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """tomllib, with its "(at line 7, column 3)" moved to where the key path usually stands."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_POSITION.match(str(exc))
        if match is None:
            raise ConfigError(source, "", f"TOML syntax error: {exc}") from None
        where = f"line {match['line']}, column {match['column']}" if match["line"] else "end of file"
        raise ConfigError(source, where, f"TOML syntax error: {match['problem']}") from None


# --- pydantic errors → one line ---------------------------------------------------------------------------


def toml_path(loc: tuple[str | int, ...]) -> str:
    """('credentials', 1, 'targets', 0, 'project') → 'credentials[1].targets[0].project'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _table_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue  # an element of an array of tables: same model as the array
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return model


def _kind(value: Any) -> str:
    names = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
             (dict, "a table"), (list, "an array"))
    return next((name for kind, name in names if isinstance(value, kind)), "a date or time")


def _describe(root: type[BaseModel], error: Mapping[str, Any]) -> tuple[tuple[str | int, ...], str]:
    """(absolute loc, problem) for one pydantic error."""
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "value_error" and isinstance(ctx.get("error"), ConfigProblem):
        return loc + ctx["error"].where, ctx["error"].problem
    if kind == "value_error":
        return loc, str(ctx.get("error", error.get("msg", "invalid value")))
    if kind == "extra_forbidden":
        table = _table_at(root, loc[:-1])
        known = sorted(name for name in (table.model_fields if table else {}) if loc[:-1] or name != "source")
        return loc, f"unknown key (known keys: {', '.join(known)})"
    if kind == "missing":
        if loc and loc[-1] == "targets":
            return loc, "required: add at least one [[credentials.targets]] table under this credential"
        return loc, "required key is missing"
    if kind == "too_short" and loc and loc[-1] == "targets":
        return loc, "at least one [[credentials.targets]] table is required"
    expected = {"string_type": "a string", "bool_type": "true or false", "float_type": "a number",
                "int_type": "an integer", "model_type": "a table", "dict_type": "a table"}
    if kind in expected:
        return loc, f"expected {expected[kind]}, found {_kind(value)}"
    if kind in ("tuple_type", "list_type"):
        hint = f" (write [[{toml_path(loc)}]], not [{toml_path(loc)}])" if isinstance(value, dict) else ""
        return loc, f"expected an array, found {_kind(value)}{hint}"
    if kind == "literal_error":
        return loc, f"{value!r} is not one of {ctx.get('expected', '')}"
    if kind == "greater_than":
        return loc, f"must be greater than {ctx.get('gt')}"
    if kind == "finite_number":
        return loc, "must be a finite number"
    if kind == "too_short":
        return loc, f"must hold at least {ctx.get('min_length')} item(s)"
    message = str(error.get("msg", "invalid value"))
    return loc, message[:1].lower() + message[1:]


def settings_error(source: str, root: type[BaseModel], *errors: Mapping[str, Any]) -> ConfigError:
    """One ConfigError for the most useful error: an unknown key first (a misspelt key also makes a
    required one look missing), then whatever comes first in the file's order."""
    first = min(errors, key=lambda error: (error["type"] != "extra_forbidden", error["type"] == "missing"))
    loc, problem = _describe(root, first)
    return ConfigError(source, toml_path(loc), problem)
