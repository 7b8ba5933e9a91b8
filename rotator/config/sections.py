"""The sections of the config file as frozen pydantic models; rotator.config.settings assembles and loads them.

Every model forbids unknown keys; values are checked by the small rules in rotator.config.rules, so each
problem comes back as one line naming the key.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    model_validator,
)

from rotator.config.rules import (
    ConfigProblem,
    check_account_name,
    check_boundary_pattern,
    check_cidr,
    check_cron_window,
    check_database_url,
    check_env_name,
    check_environment_scope,
    check_gitlab_path,
    check_http_url,
    check_iam_user,
    check_listen,
    check_name,
    check_nonblank,
    check_region,
    check_role_arn,
    check_role_path,
    check_session_name,
    check_slack_destination,
    check_variable_name,
    duration,
    one_secret_source,
    positive,
)
from rotator.domain import Policy, ScopeKind, TargetSpec


def _relative_to_config(value: str, info: ValidationInfo) -> str:
    """A relative *_file path means "next to the config file", as in Prometheus: the config and the
    secrets it names usually ship together, whatever directory the service is started from."""
    path = Path(check_nonblank(value)).expanduser()
    base = (info.context or {}).get("base_dir")
    return str(path if path.is_absolute() or base is None else Path(base) / path)


Duration = Annotated[timedelta, BeforeValidator(duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(duration), AfterValidator(positive)]
Rate = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
EnvName = Annotated[str, AfterValidator(check_env_name)]
FilePath = Annotated[str, AfterValidator(_relative_to_config)]
NonBlank = Annotated[str, AfterValidator(check_nonblank)]
Region = Annotated[str, AfterValidator(check_region)]
HttpUrl = Annotated[str, AfterValidator(check_http_url)]
SlackDestination = Annotated[str, AfterValidator(check_slack_destination)]
CronWindow = Annotated[str, AfterValidator(check_cron_window)]
VariableName = Annotated[str, AfterValidator(check_variable_name)]
GitLabPath = Annotated[str, AfterValidator(check_gitlab_path)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServiceSettings(_Section):
    database_url: Annotated[str, AfterValidator(check_database_url)] = "sqlite:///rotator.db"
    state_key_env: EnvName = "ROTATOR_STATE_KEY"
    state_key_file: FilePath | None = None
    state_kms_key_id: NonBlank | None = None
    listen: Annotated[str, AfterValidator(check_listen)] = "127.0.0.1:9466"
    tick: PositiveDuration = timedelta(seconds=30)
    lease_ttl: PositiveDuration = timedelta(minutes=2)
    stop_timeout: Duration = timedelta(seconds=30)
    retry_unreachable_after: PositiveDuration = timedelta(minutes=1)
    retry_unreachable_max: PositiveDuration = timedelta(minutes=15)
    actor: NonBlank | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The service's pauses before trying a credential again, and its drift-check cadence.
    retry_held_after: PositiveDuration = timedelta(hours=1)
    retry_failed_after: PositiveDuration = timedelta(minutes=15)
    retry_broken_after: PositiveDuration = timedelta(minutes=1)
    drift_check_every: PositiveDuration = timedelta(hours=6)
    drift_checks_per_tick: Annotated[int, Field(ge=0, strict=True)] = 25

    @model_validator(mode="after")
    def _one_state_key_source(self) -> ServiceSettings:
        one_secret_source(self, "state_key")
        return self


class AccountSettings(_Section):
    name: Annotated[str, AfterValidator(check_account_name)]
    role_arn: Annotated[str, AfterValidator(check_role_arn)]
    external_id_env: EnvName | None = None
    external_id_file: FilePath | None = None
    session_name: Annotated[str, AfterValidator(check_session_name)] = "rotator"
    region: Region | None = None

    @model_validator(mode="after")
    def _one_external_id_source(self) -> AccountSettings:
        if self.name == "default":
            raise ConfigProblem(("name",), "'default' is reserved for the ambient credentials; choose another name")
        one_secret_source(self, "external_id")
        return self


class AwsSettings(_Section):
    region: Region = "us-east-1"
    audit_regions: Annotated[tuple[Region, ...], Field(min_length=1)] | None = None
    known_cidrs: tuple[Annotated[str, AfterValidator(check_cidr)], ...] = ()
    accounts: tuple[AccountSettings, ...] = ()
    iam_requests_per_second: Rate = 10.0
    cloudtrail_requests_per_second: Rate = 2.0
    # The CI permissions boundary every tracked user must carry (rotator check), as the shipped policies'
    # iam:PermissionsBoundary condition matches it; "" turns that check off.
    boundary_arn_pattern: Annotated[str, AfterValidator(check_boundary_pattern)] = (
        "arn:aws:iam::*:policy/ci-boundary/*")

    @model_validator(mode="after")
    def _unique_account_names(self) -> AwsSettings:
        seen: dict[str, int] = {}
        for index, account in enumerate(self.accounts):
            if account.name in seen:
                raise ConfigProblem(("accounts",), f"duplicate account name {account.name!r} "
                                    f"(aws.accounts[{seen[account.name]}] and aws.accounts[{index}])")
            seen[account.name] = index
        return self


class GitLabSettings(_Section):
    url: HttpUrl
    token_env: EnvName = "ROTATOR_GITLAB_TOKEN"
    token_file: FilePath | None = None
    requests_per_second: Rate = 10.0
    timeout: PositiveDuration = timedelta(seconds=30)
    ca_file: FilePath | None = None

    @model_validator(mode="after")
    def _one_token_source(self) -> GitLabSettings:
        one_secret_source(self, "token")
        return self


def _with_trailing_slash(url: str) -> str:
    # slack_sdk appends the method name to base_url as is: ".../api" + "chat.postMessage" would be wrong.
    return url if url.endswith("/") else url + "/"


class SlackSettings(_Section):
    token_env: EnvName = "ROTATOR_SLACK_TOKEN"
    token_file: FilePath | None = None
    api_url: Annotated[HttpUrl, AfterValidator(_with_trailing_slash)] = "https://slack.com/api/"
    security_channel: SlackDestination | None = None
    messages_per_second: Rate = 1.0
    timeout: PositiveDuration = timedelta(seconds=15)

    @model_validator(mode="after")
    def _one_token_source(self) -> SlackSettings:
        one_secret_source(self, "token")
        return self


class PolicySettings(_Section):
    rotate_every: PositiveDuration = timedelta(days=30)
    grace: Duration = timedelta(hours=1)
    delete_after: Duration = timedelta(days=7)
    verify_timeout: PositiveDuration = timedelta(seconds=60)
    last_used_skew: Duration = timedelta(minutes=5)
    window: CronWindow | None = None
    jitter: Duration = timedelta(0)

    def to_policy(self) -> Policy:
        return Policy(**{name: getattr(self, name) for name in PolicySettings.model_fields})


RolePath = Annotated[str, AfterValidator(check_role_path)]


class RevokeSettings(_Section):
    """How `revoke` and its follow-ups cut the sessions a compromised key minted (rotator.incident)."""

    # False: no inline deny policy is ever written (deploy/iam-policy-no-session-deny.json); reports then say
    # that sessions were not cut.
    deny_sessions: StrictBool = True
    role_session_revocation: Literal["all", "paths", "off"] = "all"
    role_paths: tuple[RolePath, ...] = ()
    # T0 of the deny sits this long after the key was verified Inactive: IAM is eventually consistent, so a
    # session minted in the moments after UpdateAccessKey must still be issued before T0.
    consistency_margin: Duration = timedelta(minutes=3)
    # How late CloudTrail may deliver an event (about 15 minutes, not guaranteed).
    delivery_delay: PositiveDuration = timedelta(minutes=15)
    # When the service re-audits an open incident, counted from its T0; it closes after the last.
    follow_up: Annotated[tuple[PositiveDuration, ...], Field(min_length=1)] = (timedelta(minutes=20),
                                                                               timedelta(minutes=60))

    @model_validator(mode="after")
    def _consistent(self) -> RevokeSettings:
        if self.role_session_revocation == "paths" and not self.role_paths:
            raise ConfigProblem(("role_paths",), 'role_session_revocation = "paths" needs at least one path, '
                                'e.g. role_paths = ["/ci/"]')
        if list(self.follow_up) != sorted(set(self.follow_up)):
            raise ConfigProblem(("follow_up",), "must be increasing, e.g. [\"20m\", \"60m\"]")
        if self.follow_up[-1] < self.delivery_delay:
            raise ConfigProblem(("follow_up",), "the last follow-up must come at least delivery_delay after T0, "
                                "or the incident would close before CloudTrail delivered its last events")
        return self


class TargetSettings(_Section):
    project: GitLabPath | None = None
    group: GitLabPath | None = None
    instance: StrictBool = False
    environment_scope: Annotated[str, AfterValidator(check_environment_scope)] = "*"
    access_key_id_var: VariableName = "AWS_ACCESS_KEY_ID"
    secret_access_key_var: VariableName = "AWS_SECRET_ACCESS_KEY"
    create_missing: StrictBool = False
    # On a GitLab before 17.4, which cannot create hidden variables, create_missing may create the secret
    # masked but visible to the project's maintainers only when this is set.
    accept_masked_only: StrictBool = False

    @model_validator(mode="after")
    def _exactly_one_scope(self) -> TargetSettings:
        found = [name for name, present in (("project", self.project is not None),
                                            ("group", self.group is not None), ("instance", self.instance))
                 if present]
        if len(found) != 1:
            listed = ", ".join(found[:-1]) + " and " + found[-1] if len(found) > 1 else "none"
            raise ConfigProblem((), f"exactly one of project, group or instance = true is required (found {listed})")
        if self.instance and self.environment_scope != "*":
            raise ConfigProblem(("environment_scope",), "instance variables have no environment scope; remove it")
        if self.access_key_id_var == self.secret_access_key_var:
            raise ConfigProblem(("secret_access_key_var",), "must differ from access_key_id_var")
        return self

    def spec(self) -> TargetSpec:
        kind = ScopeKind.PROJECT if self.project else ScopeKind.GROUP if self.group else ScopeKind.INSTANCE
        return TargetSpec(kind=kind, path=self.project or self.group, environment_scope=self.environment_scope,
                          access_key_id_var=self.access_key_id_var,
                          secret_access_key_var=self.secret_access_key_var, create_missing=self.create_missing,
                          accept_masked_only=self.accept_masked_only)


# What the service does when AWS reports a key exposed (an AWS Health event, or a quarantine policy on a user).
OnExposed = Literal["contain", "contain_and_replace", "notify"]


def _sqs_wait(value: int) -> int:
    # SQS long polling waits 1 to 20 seconds ("Setting-up long polling in Amazon SQS", SQS Developer Guide).
    if not 1 <= value <= 20:
        raise ValueError("must be between 1 and 20 (seconds): SQS long polling waits at most 20 seconds")
    return value


def _sqs_visibility(value: timedelta) -> timedelta:
    # ReceiveMessage's VisibilityTimeout is 0 to 43,200 seconds (12 hours) (SQS API Reference, ReceiveMessage).
    if not timedelta(seconds=30) <= value <= timedelta(hours=12):
        raise ValueError("must be between 30s and 12h: long enough for the playbook, at most what SQS allows")
    return value


class EventsSettings(_Section):
    """AWS says a key is exposed: an AWS Health AWS_RISK_CREDENTIALS_EXPOSED event that an EventBridge rule
    puts in an SQS queue, and the AWS quarantine policy AWS attaches to the user."""

    enabled: StrictBool = True
    queue_url: HttpUrl | None = None
    on_exposed: OnExposed = "contain_and_replace"
    quarantine_check: StrictBool = True
    wait_seconds: Annotated[int, Field(strict=True), AfterValidator(_sqs_wait)] = 20
    visibility_timeout: Annotated[timedelta, BeforeValidator(duration), AfterValidator(_sqs_visibility)] = \
        timedelta(minutes=10)


class CredentialSettings(_Section):
    name: Annotated[str, AfterValidator(check_name)]
    iam_user: Annotated[str, AfterValidator(check_iam_user)]
    account: Annotated[str, AfterValidator(check_account_name)] = "default"
    owners: tuple[SlackDestination, ...] = ()
    # Per-credential overrides of [policy]; None means "as in [policy]".
    rotate_every: PositiveDuration | None = None
    grace: Duration | None = None
    delete_after: Duration | None = None
    verify_timeout: PositiveDuration | None = None
    last_used_skew: Duration | None = None
    window: CronWindow | None = None
    jitter: Duration | None = None
    # What an exposure report about this credential's key does; None means "as in [events]".
    on_exposed: OnExposed | None = None
    targets: Annotated[tuple[TargetSettings, ...], Field(min_length=1)]

    def policy(self, base: Policy) -> Policy:
        overrides = {name: getattr(self, name) for name in PolicySettings.model_fields}
        return replace(base, **{name: value for name, value in overrides.items() if value is not None})
