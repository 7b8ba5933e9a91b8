"""TOML → validated, frozen settings. Every problem becomes one ConfigError line: file, key path, what is wrong.

Secrets never sit in the file: each one is named by ``*_env`` (an environment variable) or ``*_file`` (a file,
e.g. written by a Vault agent or a Kubernetes secret), and is read only when a command asks for it, so a
command that does not need the Slack token does not fail for lack of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import (
    PrivateAttr,
    ValidationError,
    model_validator,
)

from rotator.config.patterns import DEFAULT_CONFIG_PATH, account_id_of_role, config_path
from rotator.config.rules import (
    ConfigProblem,
    parse_toml,
    read_secret,
    settings_error,
)
from rotator.config.sections import (
    AccountSettings,
    AwsSettings,
    CredentialSettings,
    EventsSettings,
    GitLabSettings,
    PolicySettings,
    RevokeSettings,
    ServiceSettings,
    SlackSettings,
    TargetSettings,
    _Section,
)
from rotator.domain import CredentialSpec, Secret, format_duration
from rotator.errors import ConfigError, UsageError
from rotator.logs import redact_url

__all__ = [
    "AccountSettings", "AwsSettings", "CredentialSettings", "EventsSettings", "GitLabSettings", "PolicySettings",
    "RevokeSettings",
    "ServiceSettings", "Settings", "SlackSettings", "TargetSettings", "describe_settings", "load_settings",
    "parse_settings",
]


class Settings(_Section):
    source: str = DEFAULT_CONFIG_PATH
    service: ServiceSettings = ServiceSettings()
    aws: AwsSettings = AwsSettings()
    gitlab: GitLabSettings | None = None
    slack: SlackSettings | None = None
    policy: PolicySettings = PolicySettings()
    revoke: RevokeSettings = RevokeSettings()
    credentials: tuple[CredentialSettings, ...] = ()
    events: EventsSettings | None = None
    # Where secrets named by *_env are looked up; os.environ unless load_settings was given another mapping.
    _environ: Mapping[str, str] = PrivateAttr(default_factory=lambda: os.environ)

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        first_index: dict[str, int] = {}
        accounts = {"default", *(account.name for account in self.aws.accounts)}
        writers: dict[tuple[str, str | None, str, str], tuple[int, int]] = {}
        for index, credential in enumerate(self.credentials):
            if credential.name in first_index:
                raise ConfigProblem(("credentials",), f"duplicate credential name {credential.name!r} "
                                    f"(credentials[{first_index[credential.name]}] and credentials[{index}])")
            first_index[credential.name] = index
            if credential.account not in accounts:
                raise ConfigProblem(("credentials", index, "account"), (
                    f"unknown account {credential.account!r} (configured: {', '.join(sorted(accounts))}); "
                    f"add an [[aws.accounts]] entry named {credential.account!r}"))
            for target_index, target in enumerate(credential.targets):
                spec = target.spec()
                for var in (spec.access_key_id_var, spec.secret_access_key_var):
                    slot = (spec.kind.value, spec.path, spec.environment_scope, var)
                    if slot in writers:
                        other, other_target = writers[slot]
                        raise ConfigProblem(("credentials", index, "targets", target_index), (
                            f"{spec.var(var).label} is also written by credentials[{other}].targets[{other_target}] "
                            f"({self.credentials[other].name!r}); two credentials would overwrite each other"))
                    writers[slot] = (index, target_index)
        return self

    # --- lookups ------------------------------------------------------------------------------------

    def credential_specs(self) -> tuple[CredentialSpec, ...]:
        base = self.policy.to_policy()
        return tuple(
            CredentialSpec(name=c.name, iam_user=c.iam_user, account=c.account, owners=c.owners,
                           policy=c.policy(base), targets=tuple(t.spec() for t in c.targets))
            for c in self.credentials
        )

    def credential(self, name: str) -> CredentialSpec:
        for spec in self.credential_specs():
            if spec.name == name:
                return spec
        known = ", ".join(c.name for c in self.credentials) or "none"
        raise UsageError(f"unknown credential {name!r} (configured in {self.source}: {known})",
                         hint="pass a name from the list, or add a [[credentials]] entry")

    def on_exposed(self, credential: str | None) -> str:
        """What an exposure report does to a key of ``credential`` (None: a key no credential tracks)."""
        default = self.events.on_exposed if self.events else "contain_and_replace"
        chosen = next((c.on_exposed for c in self.credentials if c.name == credential), None)
        return chosen or default

    def account_names(self) -> tuple[str, ...]:
        """Every account rotator acts in: the configured ones, plus "default" (the ambient credentials) when
        there are none or when a credential lives there."""
        configured = tuple(account.name for account in self.aws.accounts)
        ambient_used = not configured or any(c.account == "default" for c in self.credentials)
        return ("default", *configured) if ambient_used else configured

    def account_ids(self) -> dict[str, str | None]:
        """Configured account name → AWS account id (from its role ARN); "default" (ambient) → None."""
        return {"default": None, **{a.name: account_id_of_role(a.role_arn) for a in self.aws.accounts}}

    def account(self, name: str) -> AccountSettings | None:
        if name == "default":
            return None
        for account in self.aws.accounts:
            if account.name == name:
                return account
        known = ", ".join(("default", *(a.name for a in self.aws.accounts)))
        raise UsageError(f"unknown AWS account {name!r} (configured in {self.source}: {known})",
                         hint="pass a configured account name, or add an [[aws.accounts]] entry")

    def external_id(self, account: str) -> str | None:
        settings = self.account(account)
        if settings is None or (settings.external_id_env is None and settings.external_id_file is None):
            return None
        index = self.aws.accounts.index(settings)
        return read_secret(self.source, f"aws.accounts[{index}].external_id", settings.external_id_env,
                           settings.external_id_file, self._environ).reveal()

    # --- secrets: read only when a command needs them -------------------------------------------------

    def require_gitlab(self) -> GitLabSettings:
        if self.gitlab is None:
            raise ConfigError(self.source, "gitlab", "this command needs a [gitlab] section",
                              hint="add [gitlab] with url = \"https://gitlab.example.com\" (see config.example.toml)")
        return self.gitlab

    def require_slack(self) -> SlackSettings | None:
        return self.slack

    def gitlab_token(self) -> Secret:
        gitlab = self.require_gitlab()
        return read_secret(self.source, "gitlab.token", gitlab.token_env, gitlab.token_file, self._environ)

    def slack_token(self) -> Secret:
        if self.slack is None:
            raise ConfigError(self.source, "slack", "this command needs a [slack] section",
                              hint="add [slack] with token_env (see config.example.toml)")
        return read_secret(self.source, "slack.token", self.slack.token_env, self.slack.token_file, self._environ)

    def state_key(self) -> Secret | None:
        """The local Fernet key. With state_kms_key_id set, KMS seals the journal and the local key is
        optional (still returned when present, so journals sealed before the switch can be opened)."""
        service = self.service
        if service.state_kms_key_id is not None and service.state_key_file is None \
                and not self._environ.get(service.state_key_env):
            return None
        return read_secret(self.source, "service.state_key", service.state_key_env, service.state_key_file,
                           self._environ)


# --- loading ----------------------------------------------------------------------------------------------


def load_settings(cli_path: str | None = None, *, environ: Mapping[str, str] = os.environ,
                  partial: bool = False) -> Settings:
    """Read and validate the config file; raise ConfigError (exit 2) naming the file and key on any problem.

    ``partial`` is for commands that need only [aws] and [service] (``revoke``, ``audit``): a missing file
    then means "all defaults", but a file that exists must still be entirely valid.
    """
    path = config_path(cli_path, environ)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if partial:
            return _with_environ(Settings(source=source), environ)
        raise ConfigError(source, "", "file not found (pass --config PATH or set ROTATOR_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, "", "not UTF-8 text; TOML files must be UTF-8") from None
    return parse_settings(text, source=source, base_dir=path.parent, environ=environ, partial=partial)


def parse_settings(text: str, *, source: str = DEFAULT_CONFIG_PATH, base_dir: Path | None = None,
                   environ: Mapping[str, str] = os.environ, partial: bool = False) -> Settings:
    """Validate TOML text as if it were the file ``source`` (also handy in tests)."""
    data = parse_toml(text, source)
    if "source" in data:  # a field of Settings, but not a key of the file
        raise settings_error(source, Settings, {"type": "extra_forbidden", "loc": ("source",)})
    context = {"base_dir": base_dir}
    try:
        settings = Settings.model_validate({**data, "source": source}, context=context)
    except ValidationError as exc:
        raise settings_error(source, Settings, *exc.errors()) from None
    if not partial:
        if settings.gitlab is None:
            raise ConfigError(source, "gitlab", "missing section; add [gitlab] with url = \"https://…\" "
                              "(only revoke and audit run without it)")
        if not settings.credentials:
            raise ConfigError(source, "credentials", "no [[credentials]] configured; add at least one "
                              "(see config.example.toml)")
    return _with_environ(settings, environ)


def _with_environ(settings: Settings, environ: Mapping[str, str]) -> Settings:
    settings._environ = environ
    return settings


def describe_settings(settings: Settings) -> dict[str, Any]:
    """A JSON-safe summary for `check --json`: names of secret sources, never their values."""

    def plain(value: Any) -> Any:
        if isinstance(value, timedelta):
            return format_duration(value)
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        return value

    summary: dict[str, Any] = plain(settings.model_dump())
    summary["service"]["database_url"] = redact_url(settings.service.database_url)
    base = settings.policy.to_policy()
    for described, credential in zip(summary["credentials"], settings.credentials, strict=True):
        effective = credential.policy(base)
        described["effective_policy"] = plain({name: getattr(effective, name) for name in PolicySettings.model_fields})
        described["targets"] = [dict(entry, target_id=target.spec().target_id)
                                for entry, target in zip(described["targets"], credential.targets, strict=True)]
    summary["accounts"] = list(settings.account_names())
    return summary
