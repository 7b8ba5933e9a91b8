"""Seed the emulators the way one seeds real AWS and GitLab: through boto3 and python-gitlab over HTTP.

Used by the demo, the end-to-end tests and the benchmarks. Works against any emulator (or real service)
that speaks the APIs, not only ours.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import gitlab
from botocore.config import Config
from cryptography.fernet import Fernet

if TYPE_CHECKING:
    from rotator.sandbox.runner import Sandbox

DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class TargetSeed:
    kind: str  # project | group | instance
    path: str | None
    environment_scope: str = "*"
    hidden_secret: bool = True


@dataclass(frozen=True)
class CredentialSeed:
    name: str
    iam_user: str
    targets: tuple[TargetSeed, ...]
    owners: tuple[str, ...] = ()
    key_id: str = ""
    secret: str = field(default="", repr=False)


def aws_client(urls: Mapping[str, str], service: str, region: str = "us-east-1") -> Any:
    return boto3.client(service, endpoint_url=urls["aws_endpoint_url"], region_name=region,  # type: ignore[call-overload]
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"mode": "standard", "max_attempts": 5}))


def gitlab_admin(urls: Mapping[str, str]) -> gitlab.Gitlab:
    return gitlab.Gitlab(urls["gitlab_url"], private_token=urls["gitlab_token"], retry_transient_errors=True)


def create_iam_user(iam: Any, name: str, *, path: str = "/ci/") -> tuple[str, str]:
    """A user with one access key; returns (key id, secret)."""
    iam.create_user(UserName=name, Path=path)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def ensure_group(gl: gitlab.Gitlab, full_path: str) -> Any:
    parent_id = None
    group = None
    walked: list[str] = []
    for part in full_path.split("/"):
        walked.append(part)
        try:
            group = gl.groups.get("/".join(walked))
        except gitlab.exceptions.GitlabGetError:
            data: dict[str, Any] = {"name": part, "path": part}
            if parent_id is not None:
                data["parent_id"] = parent_id
            group = gl.groups.create(data)
        parent_id = group.id
    return group


def ensure_project(gl: gitlab.Gitlab, full_path: str) -> Any:
    namespace, _, name = full_path.rpartition("/")
    try:
        return gl.projects.get(full_path)
    except gitlab.exceptions.GitlabGetError:
        group = ensure_group(gl, namespace)
        return gl.projects.create({"name": name, "path": name, "namespace_id": group.id})


def put_pair(gl: gitlab.Gitlab, target: TargetSeed, key_id: str, secret: str, *,
             key_var: str = "AWS_ACCESS_KEY_ID", secret_var: str = "AWS_SECRET_ACCESS_KEY") -> None:
    """Store a key pair the way teams do: key id masked + protected, secret masked, hidden, protected."""
    if target.kind == "instance":
        manager: Any = gl.variables
        extra: dict[str, Any] = {}
    else:
        owner = ensure_project(gl, target.path or "") if target.kind == "project" else ensure_group(
            gl, target.path or "")
        manager = owner.variables
        extra = {"environment_scope": target.environment_scope}
    secret_flags = {"masked_and_hidden": True} if target.hidden_secret and target.kind != "instance" else {
        "masked": True}
    manager.create({"key": secret_var, "value": secret, "protected": True, **secret_flags, **extra})
    manager.create({"key": key_var, "value": key_id, "protected": True, "masked": True, **extra})


def seed_credentials(urls: Mapping[str, str], seeds: Sequence[CredentialSeed]) -> list[CredentialSeed]:
    """Create each IAM user with a key and put the pair into each of its GitLab targets."""
    iam = aws_client(urls, "iam")
    gl = gitlab_admin(urls)
    seeded = []
    for seed in seeds:
        key_id, secret = create_iam_user(iam, seed.iam_user)
        for target in seed.targets:
            put_pair(gl, target, key_id, secret)
        seeded.append(CredentialSeed(seed.name, seed.iam_user, seed.targets, seed.owners, key_id, secret))
    return seeded


NO_BOUNDARY_CHECK = 'boundary_arn_pattern = ""'


def config_toml(urls: Mapping[str, str], credentials: Sequence[CredentialSeed], *, database_url: str,
                policy: Mapping[str, str] | None = None, security_channel: str = "#security-incidents",
                extra_service: Mapping[str, str] | None = None) -> str:
    """A rotator config for the seeded credentials. Secrets are named by *_env only."""
    lines = ["[service]", f'database_url = "{database_url}"', 'state_key_env = "ROTATOR_STATE_KEY"']
    lines += [f'{k} = "{v}"' for k, v in (extra_service or {}).items()]
    lines += ["", "[aws]", 'region = "us-east-1"', 'audit_regions = ["us-east-1", "eu-west-1", "ap-southeast-2"]',
              # moto keeps no permissions boundary on a user (PutUserPermissionsBoundary is not implemented,
              # GetUser never returns one), so no seeded user can carry the CI boundary `rotator check` wants.
              NO_BOUNDARY_CHECK,
              "", "[gitlab]", f'url = "{urls["gitlab_url"]}"', 'token_env = "ROTATOR_GITLAB_TOKEN"',
              "", "[slack]", 'token_env = "ROTATOR_SLACK_TOKEN"', f'api_url = "{urls["slack_api_url"]}"',
              f'security_channel = "{security_channel}"', "", "[policy]"]
    lines += [f'{k} = "{v}"' for k, v in (policy or {"rotate_every": "30d", "grace": "0s",
                                                       "delete_after": "0s"}).items()]
    for cred in credentials:
        owners = ", ".join(f'"{o}"' for o in cred.owners)
        lines += ["", "[[credentials]]", f'name = "{cred.name}"', f'iam_user = "{cred.iam_user}"',
                  f"owners = [{owners}]"]
        for target in cred.targets:
            lines.append("[[credentials.targets]]")
            if target.kind == "instance":
                lines.append("instance = true")
            else:
                lines.append(f'{target.kind} = "{target.path}"')
                lines.append(f'environment_scope = "{target.environment_scope}"')
    return "\n".join(lines) + "\n"


def client_env(urls: Mapping[str, str], *, state_key: str | None = None,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a rotator process pointed at the sandbox (secrets travel in env, never argv)."""
    env = dict(base if base is not None else os.environ)
    env.update(DUMMY_AWS)
    env["AWS_ENDPOINT_URL"] = urls["aws_endpoint_url"]
    env["ROTATOR_GITLAB_TOKEN"] = urls["gitlab_token"]
    env["ROTATOR_SLACK_TOKEN"] = urls["slack_token"]
    env["ROTATOR_STATE_KEY"] = state_key or Fernet.generate_key().decode()
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(proxy, None)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def pair_works(urls: Mapping[str, str], key_id: str, secret: str) -> bool:
    """Does the AWS front accept this pair? (It rejects Inactive, deleted and wrongly-signed keys.)"""
    sts = boto3.client("sts", endpoint_url=urls["aws_endpoint_url"], region_name="us-east-1",
                       aws_access_key_id=key_id, aws_secret_access_key=secret,
                       config=Config(retries={"mode": "standard", "max_attempts": 2}))
    try:
        sts.get_caller_identity()
    except sts.exceptions.ClientError:
        return False
    return True


def stage_attack(sandbox: Sandbox, seed: CredentialSeed, *, backdoor_user: str = "backdoor-admin") -> str:
    """The leaked key at work: persistence, a minted session used in two more regions, spend in a region
    nobody uses (staged: moto cannot run instances). Returns the minted session key id."""
    aws = sandbox.aws
    creds: dict[str, Any] = {"aws_access_key_id": seed.key_id, "aws_secret_access_key": seed.secret,
                             "endpoint_url": aws.url}
    boto3.client("iam", region_name="us-east-1", **creds).create_user(UserName=backdoor_user)
    session = boto3.client("sts", region_name="us-east-1", **creds).get_session_token()["Credentials"]
    minted: dict[str, Any] = {"aws_access_key_id": session["AccessKeyId"], "endpoint_url": aws.url,
                              "aws_secret_access_key": session["SecretAccessKey"],
                              "aws_session_token": session["SessionToken"]}
    boto3.client("ec2", region_name="eu-west-1", **minted).describe_instances()
    boto3.client("sts", region_name="ap-southeast-2", **minted).get_caller_identity()
    aws.stage_events([{"eventName": "RunInstances", "eventSource": "ec2.amazonaws.com",
                       "awsRegion": "ap-southeast-2", "sourceIPAddress": "198.51.100.23",
                       "userIdentity": {"type": "IAMUser", "userName": seed.iam_user,
                                        "accessKeyId": session["AccessKeyId"]}}])
    return str(session["AccessKeyId"])
