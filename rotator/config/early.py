"""The few settings containment needs, read before anything slow.

`revoke` contains a key before it pays for pydantic, SQLAlchemy, python-gitlab or slack_sdk: together they
cost more than the whole containment budget (benchmarks/containment_latency.py). So the first pass reads
only [aws] region, accounts and audit_regions, [service] database_url, and [revoke] deny_sessions and
consistency_margin, with the standard library's TOML parser, and checks just those. The whole file is
validated by rotator.config.settings right after containment; a problem elsewhere in it then fails the
follow-up steps (exit 3) instead of blocking containment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rotator.config.patterns import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REGION,
    ENV_NAME,
    REGION,
    ROLE_ARN,
    account_id_of_role,
    config_path,
)
from rotator.domain import parse_duration
from rotator.errors import ConfigError

DEFAULT_CONSISTENCY_MARGIN = timedelta(minutes=3)  # as rotator.config.sections.RevokeSettings


@dataclass(frozen=True)
class AccountRole:
    name: str
    role_arn: str
    session_name: str = "rotator"
    external_id_env: str | None = None
    external_id_file: str | None = None

    @property
    def account_id(self) -> str:
        return account_id_of_role(self.role_arn) or ""


@dataclass(frozen=True)
class ContainmentSettings:
    source: str
    region: str = DEFAULT_REGION
    accounts: tuple[AccountRole, ...] = ()
    database_url: str = DEFAULT_DATABASE_URL
    base_dir: str = "."
    deny_sessions: bool = True
    consistency_margin: timedelta = DEFAULT_CONSISTENCY_MARGIN
    audit_regions: tuple[str, ...] = ()  # where a temporary key's minting record is searched

    def account_ids(self) -> dict[str, str | None]:
        """Configured account name → AWS account id; "default" (the ambient credentials) maps to None."""
        names: dict[str, str | None] = {"default": None}
        names.update({account.name: account.account_id for account in self.accounts})
        return names

    def external_id(self, account: AccountRole, environ: Mapping[str, str]) -> str | None:
        index = self.accounts.index(account)
        where = f"aws.accounts[{index}].external_id"
        if account.external_id_env:
            value = environ.get(account.external_id_env)
            if not value:
                raise ConfigError(self.source, f"{where}_env", f"environment variable {account.external_id_env} "
                                  "is not set", hint=f"export {account.external_id_env}, then run again")
            return value
        if account.external_id_file:
            path = Path(account.external_id_file).expanduser()
            path = path if path.is_absolute() else Path(self.base_dir) / path
            try:
                return path.read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                raise ConfigError(self.source, f"{where}_file", f"cannot read {path}: {exc.strerror or exc}",
                                  hint="check the path and its permissions") from None
        return None


def load_containment_settings(cli_path: str | None, environ: Mapping[str, str] = os.environ) -> ContainmentSettings:
    """[aws] region and accounts, [service] database_url, [revoke] deny_sessions and consistency_margin. A
    missing file means every default."""
    path = config_path(cli_path, environ)
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return ContainmentSettings(source=source)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    aws = _table(data, "aws", source)
    service = _table(data, "service", source)
    region = aws.get("region", DEFAULT_REGION)
    if not isinstance(region, str) or not REGION.fullmatch(region):
        raise ConfigError(source, "aws.region", f"{region!r} is not an AWS region name like 'us-east-1'")
    database_url = service.get("database_url", DEFAULT_DATABASE_URL)
    if not isinstance(database_url, str) or "://" not in database_url:
        raise ConfigError(source, "service.database_url", "is not a database URL",
                          hint="write sqlite:///path/to/rotator.db or postgresql+psycopg://user@host/dbname")
    deny, margin = _revoke(_table(data, "revoke", source), source)
    audit_regions = aws.get("audit_regions", [])
    if not isinstance(audit_regions, list) or not all(isinstance(r, str) and REGION.fullmatch(r)
                                                      for r in audit_regions):
        raise ConfigError(source, "aws.audit_regions", "must be a list of AWS region names like 'us-east-1'")
    return ContainmentSettings(source=source, region=region, accounts=_accounts(aws, source),
                               database_url=database_url, base_dir=str(path.parent), deny_sessions=deny,
                               consistency_margin=margin, audit_regions=tuple(audit_regions))


def _revoke(revoke: Mapping[str, Any], source: str) -> tuple[bool, timedelta]:
    deny = revoke.get("deny_sessions", True)
    if not isinstance(deny, bool):
        raise ConfigError(source, "revoke.deny_sessions", "must be true or false")
    margin = revoke.get("consistency_margin")
    if margin is None:
        return deny, DEFAULT_CONSISTENCY_MARGIN
    try:
        return deny, parse_duration(margin) if isinstance(margin, str) else parse_duration("")
    except ValueError:
        raise ConfigError(source, "revoke.consistency_margin", f"{margin!r} is not a duration; write a whole "
                          "number and a unit in quotes: '90s', '3m'") from None


def _table(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(source, name, "must be a table ([" + name + "])")
    return table


def _accounts(aws: Mapping[str, Any], source: str) -> tuple[AccountRole, ...]:
    raw = aws.get("accounts", [])
    if not isinstance(raw, list):
        raise ConfigError(source, "aws.accounts", "must be an array of tables ([[aws.accounts]])")
    accounts: list[AccountRole] = []
    for index, entry in enumerate(raw):
        where = f"aws.accounts[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(source, where, "must be a table")
        name, role_arn = entry.get("name"), entry.get("role_arn")
        if not isinstance(name, str) or not name or name == "default":
            raise ConfigError(source, f"{where}.name", "is required and may not be 'default'")
        if any(account.name == name for account in accounts):
            raise ConfigError(source, f"{where}.name", f"duplicate account name {name!r}")
        if not isinstance(role_arn, str) or not ROLE_ARN.fullmatch(role_arn):
            raise ConfigError(source, f"{where}.role_arn", "is not an IAM role ARN like "
                              "'arn:aws:iam::111122223333:role/rotator'")
        env, file, session = entry.get("external_id_env"), entry.get("external_id_file"), entry.get("session_name")
        if env is not None and (not isinstance(env, str) or not ENV_NAME.fullmatch(env)):
            raise ConfigError(source, f"{where}.external_id_env", "must be an upper-case environment variable name")
        if file is not None and not isinstance(file, str):
            raise ConfigError(source, f"{where}.external_id_file", "must be a path")
        if session is not None and not isinstance(session, str):
            raise ConfigError(source, f"{where}.session_name", "must be a string")
        accounts.append(AccountRole(name=name, role_arn=role_arn, session_name=session or "rotator",
                                    external_id_env=env, external_id_file=file))
    return tuple(accounts)
