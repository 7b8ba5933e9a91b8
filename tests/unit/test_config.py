"""rotator.config.settings: every validation rule, its exact one-line message, and the secret look-ups."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel, ValidationError

from rotator.config.patterns import config_path
from rotator.config.settings import Settings, describe_settings, load_settings, parse_settings
from rotator.domain import Policy, ScopeKind, Secret
from rotator.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
[gitlab]
url = "https://gitlab.example.com"

[[credentials]]
name = "payments-deploy"
iam_user = "ci-payments"

[[credentials.targets]]
project = "payments/api"
"""


def problem_of(text: str, *, partial: bool = False) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, source="rotator.toml", environ={}, partial=partial)
    message = str(caught.value)
    assert "\n" not in message
    return message


def credential(body: str, target: str = 'project = "payments/api"') -> str:
    """MINIMAL's [gitlab] plus one credential with extra lines and one target."""
    return (f'[gitlab]\nurl = "https://gitlab.example.com"\n[[credentials]]\nname = "c"\niam_user = "u"\n{body}\n'
            f"[[credentials.targets]]\n{target}\n")


# --- the messages of the operator contract --------------------------------------------------------------


def test_unknown_key_lists_the_known_keys() -> None:
    text = MINIMAL.replace('url = "https://gitlab.example.com"', 'url = "https://g.example"\ntokn_env = "X"')
    assert problem_of(text) == ("rotator.toml: gitlab.tokn_env: unknown key (known keys: ca_file, "
                                "requests_per_second, timeout, token_env, token_file, url)")


def test_an_inline_secret_is_an_unknown_key_and_is_not_echoed() -> None:
    text = MINIMAL.replace('url = "https://gitlab.example.com"', 'url = "https://g.example"\ntoken = "glpat-CANARY"')
    message = problem_of(text)
    assert message.startswith("rotator.toml: gitlab.token: unknown key (known keys: ")
    assert "CANARY" not in message


def test_a_secret_pasted_as_an_env_name_is_not_echoed() -> None:
    message = problem_of(MINIMAL + '[slack]\ntoken_env = "xoxbCANARY123"\n')
    assert message.startswith("rotator.toml: slack.token_env: must be the NAME of an environment variable")
    assert "CANARY" not in message


def test_bad_duration_names_the_key_and_the_accepted_forms() -> None:
    assert problem_of(MINIMAL + '[policy]\ngrace = "1 hour"\n') == (
        "rotator.toml: policy.grace: '1 hour' is not a duration; write a whole number and a unit: "
        "'90s', '15m', '1h', '30d'")


def test_a_target_with_two_scopes() -> None:
    text = MINIMAL + credential("", 'project = "a/b"\ngroup = "a"').split("\n", 2)[2]
    assert problem_of(text) == ("rotator.toml: credentials[1].targets[0]: exactly one of project, group or "
                                "instance = true is required (found project and group)")


@pytest.mark.parametrize(("target", "found"), [
    ('environment_scope = "production"', "none"),
    ("instance = false", "none"),
    ('project = "a/b"\ngroup = "a"\ninstance = true', "project, group and instance"),
])
def test_a_target_needs_exactly_one_scope(target: str, found: str) -> None:
    assert problem_of(credential("", target)) == ("rotator.toml: credentials[0].targets[0]: exactly one of project, "
                                                  f"group or instance = true is required (found {found})")


def test_duplicate_credential_names_name_both_entries() -> None:
    extra = '[[credentials]]\nname = "other"\niam_user = "u2"\n[[credentials.targets]]\ngroup = "g"\n'
    again = '[[credentials]]\nname = "payments-deploy"\niam_user = "u3"\n[[credentials.targets]]\ngroup = "h"\n'
    assert problem_of(MINIMAL + extra + again) == ("rotator.toml: credentials: duplicate credential name "
                                                   "'payments-deploy' (credentials[0] and credentials[2])")


def test_syntax_error_names_line_and_column() -> None:
    message = problem_of('[service]\ntick = "30s"\nlisten 127.0.0.1\n')
    assert re.fullmatch(r"rotator\.toml: line 3, column \d+: TOML syntax error: .+", message), message
    assert problem_of('[service]\ntick = "30s') == "rotator.toml: end of file: TOML syntax error: Unterminated string"


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={})
    assert str(caught.value) == "rotator.toml: file not found (pass --config PATH or set ROTATOR_CONFIG)"
    assert caught.value.exit_code == 2


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'[service]\nactor = "\xff"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: not UTF-8 text"):
        load_settings(str(path), environ={})


# --- one rule at a time ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    # durations: only a quoted whole number and one of s, m, h, d
    ('[service]\ntick = 30', "service.tick: 30 is not a duration; write a whole number and a unit in quotes"),
    ('[service]\ntick = "1.5h"', "service.tick: '1.5h' is not a duration"),
    ('[policy]\nrotate_every = "1w"', "policy.rotate_every: '1w' is not a duration"),
    ('[policy]\nrotate_every = "0s"', "policy.rotate_every: must be longer than 0s"),
    ('[service]\nlease_ttl = "0m"', "service.lease_ttl: must be longer than 0s"),
    # [service]
    ('[service]\nlog_level = "verbose"', "service.log_level: 'verbose' is not one of 'debug', 'info'"),
    ('[service]\nlisten = "9466"', "service.listen: '9466' is not HOST:PORT"),
    ('[service]\nlisten = "localhost:99999"', "service.listen: 'localhost:99999' is not HOST:PORT"),
    ('[service]\ndatabase_url = "rotator.db"', "service.database_url: is not a database URL"),
    ('[service]\ndatabase_url = "postgresql+psycopg://rotator:hunter2@db/rotator"',
     "service.database_url: a password in the URL is not allowed"),
    ('[service]\nstate_key_env = "ROTATOR_STATE_KEY"\nstate_key_file = "/run/key"',
     "service.state_key_file: set either state_key_env or state_key_file, not both"),
    ('[service]\nactor = "  "', "service.actor: must not be empty"),
    # [aws]
    ('[aws]\nregion = "US-EAST-1"', "aws.region: 'US-EAST-1' is not an AWS region like 'us-east-1'"),
    ('[aws]\naudit_regions = []', "aws.audit_regions: must hold at least 1 item(s)"),
    ('[aws]\naudit_regions = ["us-east-1", "mars"]', "aws.audit_regions[1]: 'mars' is not an AWS region"),
    ('[aws]\nknown_cidrs = ["10.0.0.1/8"]', "aws.known_cidrs[0]: '10.0.0.1/8' is not a CIDR block"),
    ('[aws]\nknown_cidrs = "10.0.0.0/8"', "aws.known_cidrs: expected an array, found a string"),
    ('[aws]\niam_requests_per_second = 0', "aws.iam_requests_per_second: must be greater than 0"),
    ('[aws]\niam_requests_per_second = "10"', "aws.iam_requests_per_second: expected a number, found a string"),
    ('[aws]\ncloudtrail_requests_per_second = inf', "aws.cloudtrail_requests_per_second: must be a finite number"),
    ('[[aws.accounts]]\nname = "prod"\nrole_arn = "arn:aws:iam::1111:role/r"',
     "aws.accounts[0].role_arn: 'arn:aws:iam::1111:role/r' is not a role ARN"),
    ('[[aws.accounts]]\nname = "default"\nrole_arn = "arn:aws:iam::111122223333:role/r"',
     "aws.accounts[0].name: 'default' is reserved for the ambient credentials"),
    ('[[aws.accounts]]\nname = "prod"\nrole_arn = "arn:aws:iam::111122223333:role/r"\n'
     '[[aws.accounts]]\nname = "prod"\nrole_arn = "arn:aws:iam::444455556666:role/r"',
     "aws.accounts: duplicate account name 'prod' (aws.accounts[0] and aws.accounts[1])"),
    ('[[aws.accounts]]\nname = "prod"\nrole_arn = "arn:aws:iam::111122223333:role/r"\n'
     'external_id_env = "X"\nexternal_id_file = "x"',
     "aws.accounts[0].external_id_file: set either external_id_env or external_id_file, not both"),
    ('[[aws.accounts]]\nname = "prod"', "aws.accounts[0].role_arn: required key is missing"),
    # [gitlab] and [slack]
    ('[gitlab]\nurl = "ftp://gitlab.example.com"', "gitlab.url: 'ftp://gitlab.example.com' is not an http://"),
    ('[gitlab]\nurl = "https://root:pw@gitlab.example.com"', "gitlab.url: credentials in the URL are not allowed"),
    ('[gitlab]\ntoken_env = "X"', "gitlab.url: required key is missing"),
    ('[gitlab]\nurl = "https://g.example"\ntoken_env = "T"\ntoken_file = "t"',
     "gitlab.token_file: set either token_env or token_file, not both"),
    ('[gitlab]\nurl = "https://g.example"\ntimeout = "0s"', "gitlab.timeout: must be longer than 0s"),
    ("gitlab = 3", "gitlab: expected a table, found an integer"),
    ('[slack]\nsecurity_channel = "security"', "slack.security_channel: 'security' is not a Slack channel"),
    ('[slack]\ntoken_env = "xoxb-1234"', "slack.token_env: must be the NAME of an environment variable"),
    ('[slack]\ntoken_env = "aB3dE5fG7h"', "slack.token_env: must be the NAME of an environment variable (A-Z, 0-9"),
    # [policy] window: five cron fields of sane characters and ranges
    ('[policy]\nwindow = "* 9-17 * *"', "policy.window: '* 9-17 * *' is not a 5-field cron expression"),
    ('[policy]\nwindow = "* 9-17 * * mon-fry"', "policy.window: '* 9-17 * * mon-fry': the day of week field"),
    ('[policy]\nwindow = "* 8-25 * * *"', "policy.window: '* 8-25 * * *': 25 is out of range for the hour field"),
    ('[policy]\nwindow = "* 9am * * *"', "policy.window: '* 9am * * *': the hour field '9am' may only hold"),
    # top level
    ('source = "elsewhere.toml"',
     "source: unknown key (known keys: aws, credentials, events, gitlab, policy, revoke, service, slack)"),
    ('[credentials]\nname = "c"', "credentials: expected an array, found a table (write [[credentials]], not"),
])
def test_rule(text: str, expected: str) -> None:
    message = problem_of(text, partial=True)
    assert message.startswith(f"rotator.toml: {expected}"), message


@pytest.mark.parametrize(("body", "target", "expected"), [
    ('account = "prod"', None, "credentials[0].account: unknown account 'prod' (configured: default); add an "
                               "[[aws.accounts]] entry named 'prod'"),
    ('owners = ["team-payments"]', None, "credentials[0].owners[0]: 'team-payments' is not a Slack channel"),
    ('grace = "forever"', None, "credentials[0].grace: 'forever' is not a duration"),
    ('rotate_every = "0d"', None, "credentials[0].rotate_every: must be longer than 0s"),
    ('window = "0 9 * *"', None, "credentials[0].window: '0 9 * *' is not a 5-field cron expression"),
    ("", 'project = "/payments/api"', "credentials[0].targets[0].project: '/payments/api' is not a GitLab full path"),
    ("", 'instance = "yes"', "credentials[0].targets[0].instance: expected true or false, found a string"),
    ("", 'instance = true\nenvironment_scope = "production"',
     "credentials[0].targets[0].environment_scope: instance variables have no environment scope"),
    ("", 'group = "g"\nenvironment_scope = ""', "credentials[0].targets[0].environment_scope: '' is not a GitLab"),
    ("", 'group = "g"\naccess_key_id_var = "AWS-KEY"', "credentials[0].targets[0].access_key_id_var: 'AWS-KEY' is not"),
    ("", 'group = "g"\naccess_key_id_var = "K"\nsecret_access_key_var = "K"',
     "credentials[0].targets[0].secret_access_key_var: must differ from access_key_id_var"),
    ("", 'group = "g"\nproject_id = 3', "credentials[0].targets[0].project_id: unknown key (known keys: "
                                        "accept_masked_only, access_key_id_var, create_missing, environment_scope, "),
])
def test_credential_rule(body: str, target: str | None, expected: str) -> None:
    text = credential(body, target) if target is not None else credential(body)
    message = problem_of(text)
    assert message.startswith(f"rotator.toml: {expected}"), message


def test_credential_names_are_lowercase() -> None:
    assert problem_of(credential("").replace('name = "c"', 'name = "Payments"')) == (
        "rotator.toml: credentials[0].name: 'Payments' is not a valid name: lowercase letters, digits, '.', '_' "
        "and '-', starting with a letter or digit")


def test_a_credential_without_targets() -> None:
    text = '[gitlab]\nurl = "https://g.example"\n[[credentials]]\nname = "c"\niam_user = "u"\n'
    assert problem_of(text) == ("rotator.toml: credentials[0].targets: required: add at least one "
                                "[[credentials.targets]] table under this credential")
    assert problem_of(text + "targets = []\n") == ("rotator.toml: credentials[0].targets: at least one "
                                                   "[[credentials.targets]] table is required")


def test_a_misspelt_required_key_is_reported_as_unknown_not_as_missing() -> None:
    text = MINIMAL.replace('iam_user = "ci-payments"', 'iam_usr = "ci-payments"')
    assert problem_of(text).startswith("rotator.toml: credentials[0].iam_usr: unknown key (known keys: account, ")


def test_two_credentials_may_not_write_the_same_variable() -> None:
    text = MINIMAL + credential("").split("\n", 2)[2].replace('name = "c"', 'name = "copy"')
    assert problem_of(text) == (
        "rotator.toml: credentials[1].targets[0]: project payments/api variable AWS_ACCESS_KEY_ID "
        "[environment_scope=*] is also written by credentials[0].targets[0] ('payments-deploy'); "
        "two credentials would overwrite each other")
    # the same variable key under another environment scope is another variable
    other_scope = text.replace('project = "payments/api"\n', 'project = "payments/api"\nenvironment_scope = "x"\n', 1)
    assert len(parse_settings(other_scope, environ={}).credentials) == 2


# --- full and partial mode ------------------------------------------------------------------------------


def test_full_mode_needs_gitlab_and_credentials() -> None:
    assert problem_of("[aws]\n") == ('rotator.toml: gitlab: missing section; add [gitlab] with url = "https://…" '
                                     "(only revoke and audit run without it)")
    assert problem_of('[gitlab]\nurl = "https://g.example"\n') == (
        "rotator.toml: credentials: no [[credentials]] configured; add at least one (see config.example.toml)")


def test_partial_mode_needs_only_aws(tmp_path: Path) -> None:
    settings = parse_settings('[aws]\nregion = "eu-west-1"\n', environ={}, partial=True)
    assert (settings.aws.region, settings.gitlab, settings.slack, settings.credentials) == ("eu-west-1", None, None, ())
    missing = load_settings(str(tmp_path / "absent.toml"), environ={}, partial=True)
    assert missing.source == str(tmp_path / "absent.toml")
    assert missing.aws.region == "us-east-1"
    assert missing.service.tick == timedelta(seconds=30)
    with pytest.raises(ConfigError) as caught:
        missing.require_gitlab()
    assert str(caught.value).startswith(f"{tmp_path / 'absent.toml'}: gitlab: this command needs a [gitlab] section")


def test_partial_mode_still_validates_what_is_present() -> None:
    assert problem_of(MINIMAL + '[policy]\ngrace = "soon"', partial=True).startswith("rotator.toml: policy.grace: ")


# --- values ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("1h", timedelta(hours=1)),
    ("30d", timedelta(days=30)), ("0s", timedelta(0)),
])
def test_durations(text: str, expected: timedelta) -> None:
    settings = parse_settings(MINIMAL + f'[policy]\ngrace = "{text}"\n', environ={})
    assert settings.policy.grace == expected


def test_defaults() -> None:
    settings = parse_settings(MINIMAL, environ={})
    assert settings.service.model_dump() == {
        "database_url": "sqlite:///rotator.db", "state_key_env": "ROTATOR_STATE_KEY", "state_key_file": None,
        "state_kms_key_id": None, "listen": "127.0.0.1:9466", "tick": timedelta(seconds=30),
        "lease_ttl": timedelta(minutes=2), "stop_timeout": timedelta(seconds=30), "actor": None, "log_level": "info",
        "retry_unreachable_after": timedelta(minutes=1), "retry_unreachable_max": timedelta(minutes=15),
        "retry_held_after": timedelta(hours=1), "retry_failed_after": timedelta(minutes=15),
        "retry_broken_after": timedelta(minutes=1), "drift_check_every": timedelta(hours=6),
        "drift_checks_per_tick": 25}
    assert settings.policy.to_policy() == Policy()
    assert settings.aws.iam_requests_per_second == 10.0
    assert settings.aws.cloudtrail_requests_per_second == 2.0
    assert settings.gitlab is not None
    assert (settings.gitlab.token_env, settings.gitlab.timeout) == ("ROTATOR_GITLAB_TOKEN", timedelta(seconds=30))
    target = settings.credentials[0].targets[0]
    assert (target.environment_scope, target.access_key_id_var, target.secret_access_key_var, target.create_missing) \
        == ("*", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", False)


def test_slack_defaults_and_api_url_gets_its_trailing_slash() -> None:
    slack = parse_settings(MINIMAL + '[slack]\napi_url = "http://127.0.0.1:9999/api"\n', environ={}).require_slack()
    assert slack is not None
    assert slack.api_url == "http://127.0.0.1:9999/api/"
    assert (slack.token_env, slack.security_channel, slack.messages_per_second) == ("ROTATOR_SLACK_TOKEN", None, 1.0)
    assert slack.timeout == timedelta(seconds=15)
    assert parse_settings(MINIMAL, environ={}).require_slack() is None


def test_per_credential_policy_overrides_any_policy_field() -> None:
    overrides = 'iam_user = "ci-payments"\nrotate_every = "14d"\ngrace = "0s"\nwindow = "* * * * *"'
    policy = '[policy]\ndelete_after = "2d"\nwindow = "0 9 * * mon"\n'
    text = MINIMAL.replace('iam_user = "ci-payments"', overrides) + policy
    spec = parse_settings(text, environ={}).credential("payments-deploy")
    assert spec.policy == Policy(rotate_every=timedelta(days=14), grace=timedelta(0), delete_after=timedelta(days=2),
                                 window="* * * * *")
    assert spec.targets[0].kind is ScopeKind.PROJECT
    assert spec.targets[0].path == "payments/api"


def test_target_specs() -> None:
    settings = parse_settings(credential("", 'group = "platform"\nenvironment_scope = "review/*"\n'
                                             'create_missing = true\n[[credentials.targets]]\ninstance = true'),
                              environ={})
    group, instance = settings.credential_specs()[0].targets
    assert (group.kind, group.path, group.environment_scope, group.create_missing) == (
        ScopeKind.GROUP, "platform", "review/*", True)
    assert (instance.kind, instance.path, instance.target_id) == (ScopeKind.INSTANCE, None, "instance::*")


def test_settings_are_frozen() -> None:
    settings = parse_settings(MINIMAL, environ={})
    with pytest.raises(ValidationError):
        settings.service.tick = timedelta(seconds=1)  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.credentials = ()  # type: ignore[misc]


def test_resolve_config_path_precedence() -> None:
    assert config_path("a.toml", {"ROTATOR_CONFIG": "b.toml"}) == Path("a.toml")
    assert config_path(None, {"ROTATOR_CONFIG": "b.toml"}) == Path("b.toml")
    assert config_path(None, {}) == Path("rotator.toml")


def test_load_settings_reads_rotator_config(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(MINIMAL)
    settings = load_settings(environ={"ROTATOR_CONFIG": str(path)})
    assert settings.source == str(path)
    assert settings.credential("payments-deploy").iam_user == "ci-payments"


# --- lookups ---------------------------------------------------------------------------------------------

ACCOUNTS = ('[[aws.accounts]]\nname = "prod"\nrole_arn = "arn:aws:iam::111122223333:role/rotator"\n'
            'external_id_env = "PROD_EXTERNAL_ID"\nsession_name = "rotator-prod"\nregion = "eu-west-1"\n')


def test_unknown_credential_is_a_usage_error_naming_the_known_ones() -> None:
    with pytest.raises(UsageError) as caught:
        parse_settings(MINIMAL, environ={}).credential("payments")
    assert caught.value.exit_code == 2
    assert "unknown credential 'payments' (configured in rotator.toml: payments-deploy)" in str(caught.value)


def test_accounts() -> None:
    assert parse_settings(MINIMAL, environ={}).account_names() == ("default",)
    in_prod = MINIMAL.replace('iam_user = "ci-payments"', 'iam_user = "ci-payments"\naccount = "prod"')
    settings = parse_settings(in_prod + ACCOUNTS, environ={"PROD_EXTERNAL_ID": "ext-123"})
    assert settings.account_names() == ("prod",)
    assert settings.account("default") is None
    prod = settings.account("prod")
    assert prod is not None
    assert (prod.role_arn, prod.session_name, prod.region) == (
        "arn:aws:iam::111122223333:role/rotator", "rotator-prod", "eu-west-1")
    assert settings.external_id("prod") == "ext-123"
    assert settings.external_id("default") is None
    with pytest.raises(UsageError, match="unknown AWS account 'dev'"):
        settings.account("dev")
    # a credential left in the ambient account keeps "default" in the list
    assert parse_settings(MINIMAL + ACCOUNTS, environ={}).account_names() == ("default", "prod")


# --- secrets ----------------------------------------------------------------------------------------------


def test_gitlab_token_from_the_environment() -> None:
    token = parse_settings(MINIMAL, environ={"ROTATOR_GITLAB_TOKEN": "glpat-abc"}).gitlab_token()
    assert isinstance(token, Secret)
    assert token.reveal() == "glpat-abc"


@pytest.mark.parametrize(("environ", "problem"), [
    ({}, "environment variable ROTATOR_GITLAB_TOKEN is not set"),
    ({"ROTATOR_GITLAB_TOKEN": ""}, "environment variable ROTATOR_GITLAB_TOKEN is empty"),
])
def test_gitlab_token_missing(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(MINIMAL, environ=environ).gitlab_token()
    assert caught.value.message == f"rotator.toml: gitlab.token_env: {problem}"
    assert caught.value.hint.startswith("export ROTATOR_GITLAB_TOKEN")


@pytest.mark.parametrize(("content", "expected"), [
    ("glpat-abc\n", "glpat-abc"), ("glpat-abc", "glpat-abc"), ("glpat-abc\r\n", "glpat-abc"),
    ("glpat-abc\n\n", "glpat-abc\n"),
])
def test_token_file_strips_one_trailing_newline(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "gitlab").write_text(content, newline="")
    path = tmp_path / "rotator.toml"
    path.write_text(MINIMAL.replace('url = "https', 'token_file = "secrets/gitlab"\nurl = "https'))
    settings = load_settings(str(path), environ={"ROTATOR_GITLAB_TOKEN": "from-env"})
    assert settings.gitlab is not None
    assert settings.gitlab.token_file == str(tmp_path / "secrets" / "gitlab")  # relative to the config file
    assert settings.gitlab_token().reveal() == expected


def test_unreadable_or_empty_token_file(tmp_path: Path) -> None:
    text = MINIMAL + f'[slack]\ntoken_file = "{tmp_path / "missing"}"\n'
    with pytest.raises(ConfigError, match=rf"rotator.toml: slack.token_file: cannot read {tmp_path / 'missing'}: "):
        parse_settings(text, environ={}).slack_token()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"slack.token_file: .*empty is empty"):
        parse_settings(text.replace("missing", "empty"), environ={}).slack_token()


def test_slack_token_needs_a_slack_section() -> None:
    with pytest.raises(ConfigError, match=r"^rotator.toml: slack: this command needs a \[slack\] section"):
        parse_settings(MINIMAL, environ={"ROTATOR_SLACK_TOKEN": "xoxb"}).slack_token()
    settings = parse_settings(MINIMAL + "[slack]\n", environ={"ROTATOR_SLACK_TOKEN": "xoxb-1"})
    assert settings.slack_token().reveal() == "xoxb-1"


def test_state_key() -> None:
    assert parse_settings(MINIMAL, environ={"ROTATOR_STATE_KEY": "k1"}).state_key() == Secret("k1")
    with pytest.raises(ConfigError, match=r"service\.state_key_env: environment variable ROTATOR_STATE_KEY is not set"):
        parse_settings(MINIMAL, environ={}).state_key()
    kms = MINIMAL + '[service]\nstate_kms_key_id = "alias/rotator"\n'
    assert parse_settings(kms, environ={}).state_key() is None
    assert parse_settings(kms, environ={"ROTATOR_STATE_KEY": "k1"}).state_key() == Secret("k1")


def test_a_file_secret_alone_is_not_both_sources(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k2\n")
    text = MINIMAL + f'[service]\nstate_key_file = "{tmp_path / "key"}"\n'
    assert parse_settings(text, environ={"ROTATOR_STATE_KEY": "k1"}).state_key() == Secret("k2")


def test_settings_and_their_summary_hold_no_secret(tmp_path: Path) -> None:
    canary = "CANARY-d1f0a9"
    settings = parse_settings(MINIMAL, environ={"ROTATOR_GITLAB_TOKEN": canary})
    assert settings.gitlab_token().reveal() == canary
    summary = describe_settings(settings)
    encoded = json.dumps(summary)
    assert canary not in encoded
    assert canary not in repr(settings)
    assert summary["gitlab"]["token_env"] == "ROTATOR_GITLAB_TOKEN"
    assert summary["policy"]["rotate_every"] == "30d"
    assert summary["credentials"][0]["effective_policy"]["grace"] == "1h"
    assert summary["credentials"][0]["targets"][0]["target_id"] == "project:payments/api:*"
    assert summary["accounts"] == ["default"]


# --- the example file -------------------------------------------------------------------------------------


def test_the_example_file_loads() -> None:
    settings = load_settings(str(REPO / "config.example.toml"), environ={})
    specs = settings.credential_specs()
    assert [spec.name for spec in specs] == ["payments-deploy", "shared-artifacts"]
    assert {target.kind for spec in specs for target in spec.targets} == {ScopeKind.PROJECT, ScopeKind.GROUP}
    assert specs[0].policy.rotate_every == timedelta(days=14)
    assert settings.account_names() == ("default", "prod")
    json.dumps(describe_settings(settings))


def _flatten(annotation: object) -> list[object]:
    return [annotation, *(inner for arg in get_args(annotation) for inner in _flatten(arg))]


def _tables(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for field in model.model_fields.values():
        inner = next((arg for arg in _flatten(field.annotation) if isinstance(arg, type)
                      and issubclass(arg, BaseModel)), None)
        if inner is not None and inner not in found:
            found += _tables(inner)
    return found


def test_the_example_file_documents_every_key() -> None:
    text = (REPO / "config.example.toml").read_text()
    written = set(re.findall(r"^#? ?([a-z_]+) = ", text, flags=re.MULTILINE))
    keys = {name for model in _tables(Settings) for name in model.model_fields} - {"source"}
    sections = {"service", "aws", "gitlab", "slack", "policy", "revoke", "credentials", "accounts", "targets", "events"}
    assert keys - sections - written == set()
    assert not re.search(r"^#? ?[a-z_]*(token|secret|password|key) = ", text, flags=re.MULTILINE)


def _verdicts_of_both_loaders(path: Path) -> list[bool]:
    """Whether `revoke`'s early stdlib loader, then the full one, accept the file."""
    from rotator.config.early import load_containment_settings

    verdicts = []
    for load in (lambda: load_containment_settings(str(path)), lambda: load_settings(str(path), partial=True)):
        try:
            load()
        except ConfigError:
            verdicts.append(False)
        else:
            verdicts.append(True)
    return verdicts


@pytest.mark.parametrize("field, value, accepted", [
    ("region", "us-gov-west-1", True), ("region", "cn-north-1", True), ("region", "us-east", False),
    ("role_arn", "arn:aws-cn:iam::111122223333:role/ci/rotator", True),
    ("role_arn", "arn:aws:iam::11112222333:role/rotator", False),
    ("role_arn", "arn:aws:iam::111122223333:user/rotator", False),
])
def test_both_loaders_accept_and_refuse_the_same_aws_values(tmp_path: Path, field: str, value: str,
                                                            accepted: bool) -> None:
    """`revoke` reads [aws] with the early stdlib loader before containment, everything else reads it with the
    full one: a file that one accepts, the other must accept too."""
    if field == "region":
        text = f'[aws]\nregion = "{value}"\n'
    else:
        text = f'[aws]\n[[aws.accounts]]\nname = "prod"\nrole_arn = "{value}"\n'
    path = tmp_path / "rotator.toml"
    path.write_text(text)
    assert _verdicts_of_both_loaders(path) == [accepted, accepted]


@pytest.mark.parametrize("text, accepted", [
    ('[revoke]\ndeny_sessions = false\nconsistency_margin = "90s"\n', True),
    ('[revoke]\ndeny_sessions = "no"\n', False),
    ('[revoke]\nconsistency_margin = "soon"\n', False),
    ('[revoke]\nconsistency_margin = 3\n', False),
])
def test_both_loaders_accept_and_refuse_the_same_revoke_values(tmp_path: Path, text: str, accepted: bool) -> None:
    path = tmp_path / "rotator.toml"
    path.write_text(text)
    assert _verdicts_of_both_loaders(path) == [accepted, accepted]


@pytest.mark.parametrize("body, problem", [
    ('role_session_revocation = "paths"', "revoke.role_paths: role_session_revocation = \"paths\" needs"),
    ('role_session_revocation = "some"', "revoke.role_session_revocation"),
    ('role_paths = ["ci"]', "revoke.role_paths"),
    ('follow_up = ["60m", "20m"]', "revoke.follow_up: must be increasing"),
    ('follow_up = ["5m"]', "revoke.follow_up: the last follow-up must come at least delivery_delay after T0"),
    ('follow_up = []', "revoke.follow_up"),
])
def test_revoke_settings_are_checked(body: str, problem: str) -> None:
    with pytest.raises(ConfigError) as failure:
        parse_settings(f"[revoke]\n{body}\n", source="rotator.toml", partial=True)
    assert problem in str(failure.value)


def test_revoke_settings_defaults() -> None:
    revoke = parse_settings("", source="rotator.toml", partial=True).revoke
    assert (revoke.deny_sessions, revoke.role_session_revocation, revoke.role_paths) == (True, "all", ())
    assert revoke.follow_up == (timedelta(minutes=20), timedelta(minutes=60))
    assert revoke.delivery_delay == timedelta(minutes=15) and revoke.consistency_margin == timedelta(minutes=3)
