"""plan-oidc and retire-credential as an operator runs them (CLI subprocesses) against the emulators: plan-oidc
refuses a trusted branch or tag the project does not protect in GitLab and plans once it is protected; --apply
creates the OIDC provider and the role in moto with the user's permissions; a pipeline's
AssumeRoleWithWebIdentity proves the role; retire-credential then deletes the variables and deactivates
the keys."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import gitlab

from rotator.sandbox.runner import Sandbox
from rotator.sandbox.seed import aws_client, client_env, config_toml
from tests.sandbox_support import ROTATOR, seed_one, target_pair, user_keys

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject",
                                                              "Resource": "arn:aws:s3:::artifacts/*"}]})


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROTATOR, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def gitlab_project(sandbox: Sandbox, path: str) -> Any:
    """The project through python-gitlab with the sandbox's admin token, as a Maintainer would protect refs."""
    urls = sandbox.urls()
    return gitlab.Gitlab(urls["gitlab_url"], private_token=urls["gitlab_token"]).projects.get(path)


def protect_branch(sandbox: Sandbox, project: str, name: str) -> None:
    gitlab_project(sandbox, project).protectedbranches.create({"name": name, "push_access_level": 40,
                                                                "merge_access_level": 40})


def protect_tag(sandbox: Sandbox, project: str, name: str, create_access_level: int = 40) -> None:
    gitlab_project(sandbox, project).protectedtags.create({"name": name,
                                                            "create_access_level": create_access_level})


def iam_and_sts_calls(sandbox: Sandbox) -> list[str]:
    return [e.key for e in sandbox.aws.log.entries() if e.key.split(":", 1)[0] in ("iam", "sts")]


def test_a_trusted_branch_that_is_not_protected_is_refused_and_planned_once_protected(
        sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox, owners=())
    project = seed.targets[0].path
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), [seed], database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    env = client_env(sandbox.urls())
    sandbox.aws.log.clear()

    refused = run(["plan-oidc", seed.name, "--project", project, "--ref", "main", "--config", str(config)], env)
    assert refused.returncode == 1, refused.stderr
    assert f"no protected branch of {project} covers branch main" in refused.stderr
    assert "--allow-unprotected" in refused.stderr and refused.stdout == ""
    assert iam_and_sts_calls(sandbox) == []  # refused before any AWS call: nothing read, nothing created

    protect_branch(sandbox, project, "main")
    planned = run(["plan-oidc", seed.name, "--project", project, "--ref", "main", "--json", "--config", str(config)],
                  env)
    assert planned.returncode == 0, planned.stderr
    body = json.loads(planned.stdout)
    assert body["subjects"] == [f"project_path:{project}:ref_type:branch:ref:main"]
    assert body["protection"] == [{"project": project, "ref_type": "branch", "ref": "main", "protected_by": ["main"],
                                   "problem": None, "developers_may_write": False}]

    # A group target trusts projects that may not exist yet: refused, and named.
    group = run(["plan-oidc", seed.name, "--config", str(config)], env)
    assert group.returncode == 1 and f"every project under {seed.targets[1].path}/ is trusted" in group.stderr

    allowed = run(["plan-oidc", seed.name, "--project", project, "--ref", "feature-x", "--allow-unprotected",
                   "--json", "--config", str(config)], env)
    assert allowed.returncode == 0, allowed.stderr
    assert any(w.startswith("NOT PROTECTED") and "feature-x" in w for w in json.loads(allowed.stdout)["warnings"])


def test_a_tag_plan_trusts_protected_tag_patterns_and_runs_on_tag_pipelines(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox, owners=())
    project = seed.targets[0].path
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(sandbox.urls(), [seed], database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    env = client_env(sandbox.urls())
    protect_branch(sandbox, project, "main")
    args = ["plan-oidc", seed.name, "--project", project, "--ref", "main", "--tag", "v1.*"]

    refused = run([*args, "--config", str(config)], env)
    assert refused.returncode == 1 and f"no protected tag of {project} covers every tag matching v1.*" in refused.stderr

    protect_tag(sandbox, project, "v*", create_access_level=30)  # v* covers every v1.* tag
    out = tmp_path / "plan"
    planned = run([*args, "--output", str(out), "--config", str(config)], env)
    assert planned.returncode == 0, planned.stderr
    trust = json.loads((out / "trust-policy.json").read_text())
    assert f"project_path:{project}:ref_type:tag:ref:v1.*" in trust["Statement"][0]["Condition"]["StringLike"][
        f"{sandbox.urls()['gitlab_url'].split('://', 1)[1]}:sub"]
    snippet = (out / "gitlab-ci.yml").read_text()
    assert ("- if: '$CI_COMMIT_REF_PROTECTED == \"true\" && ($CI_COMMIT_BRANCH == \"main\" || "
            "$CI_COMMIT_TAG =~ /^v1\\..*$/)'") in snippet
    # Developers may create v* tags in this project: the plan says what that means.
    assert "the Developer role may create it: every Developer of the project can assume the role" in planned.stdout


def test_plan_apply_prove_and_retire(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = seed_one(sandbox, owners=())
    urls = sandbox.urls()
    iam = aws_client(urls, "iam")
    managed = iam.create_policy(PolicyName=f"{seed.name}-deploy", PolicyDocument=POLICY)["Policy"]["Arn"]
    iam.attach_user_policy(UserName=seed.iam_user, PolicyArn=managed)
    iam.put_user_policy(UserName=seed.iam_user, PolicyName="inline-logs", PolicyDocument=POLICY)
    iam.create_group(GroupName=f"{seed.name}-ci")
    iam.add_user_to_group(GroupName=f"{seed.name}-ci", UserName=seed.iam_user)
    iam.put_group_policy(GroupName=f"{seed.name}-ci", PolicyName="group-inline", PolicyDocument=POLICY)
    config = tmp_path / "rotator.toml"
    config.write_text(config_toml(urls, [seed], database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    env = client_env(urls)
    out = tmp_path / "plan"

    project = seed.targets[0].path
    protect_branch(sandbox, project, "main")
    planned = run(["plan-oidc", seed.name, "--project", project, "--output", str(out), "--ref", "main",
                   "--environment", "production", "--apply", "--config", str(config)], env)
    assert planned.returncode == 0, planned.stderr
    assert {p.name for p in out.iterdir()} == {"provider.json", "trust-policy.json", "role.json",
                                               "permissions.json", "gitlab-ci.yml", "README.md"}
    trust = json.loads((out / "trust-policy.json").read_text())
    host = urls["gitlab_url"].split("://", 1)[1]
    role_name = f"gitlab-oidc-{seed.name}"
    # --apply created the provider and the role, with the user's permissions.
    provider_arn = f"arn:aws:iam::123456789012:oidc-provider/{host}"
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)
    assert provider["ClientIDList"] == [urls["gitlab_url"]]
    role = iam.get_role(RoleName=role_name)["Role"]
    assert role["AssumeRolePolicyDocument"] == trust
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]]
    assert attached == [managed]
    inline = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    assert sorted(inline) == sorted(["inline-logs", f"{seed.name}-ci-group-inline"])
    assert trust["Statement"][0]["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert "id_tokens:" in (out / "gitlab-ci.yml").read_text() and "not https" in planned.stdout
    assert "**AWS cannot enforce the environment**" in (out / "README.md").read_text()
    again = run(["plan-oidc", seed.name, "--project", project, "--apply", "--json", "--config", str(config)], env)
    assert again.returncode == 0, again.stderr
    assert any("already exists" in line for line in json.loads(again.stdout)["applied"])

    # Retiring before any pipeline used the role is refused: nothing proves the pipeline works yet.
    refused = run(["retire-credential", seed.name, "--yes", "--config", str(config)], env)
    assert refused.returncode == 1 and "never been assumed" in refused.stderr
    no_tty = run(["retire-credential", seed.name, "--config", str(config)], env)
    assert no_tty.returncode == 2 and "--yes" in no_tty.stderr

    pipeline_job(sandbox, role["Arn"])
    dry = run(["retire-credential", seed.name, "--dry-run", "--config", str(config)], env)
    assert dry.returncode == 0, dry.stderr
    assert "would delete" in dry.stderr and user_keys(sandbox, seed.iam_user) == {seed.key_id: "Active"}
    retired = run(["retire-credential", seed.name, "--yes", "--json", "--config", str(config)], env)
    assert retired.returncode == 0, retired.stderr
    body = json.loads(retired.stdout)
    assert body["deactivated"] == [seed.key_id] and len(body["deleted"]) == 4  # 2 targets, 2 variables each
    assert user_keys(sandbox, seed.iam_user) == {seed.key_id: "Inactive"}
    for target in seed.targets:
        assert target_pair(sandbox, target) == (None, None)


def pipeline_job(sandbox: Sandbox, role_arn: str) -> None:
    """What the generated snippet makes a job do: AssumeRoleWithWebIdentity (moto does not check the token),
    then a call with the role's credentials, which marks the role as used."""
    sts: Any = boto3.client("sts", endpoint_url=sandbox.aws.url, region_name="us-east-1",
                            aws_access_key_id="unused", aws_secret_access_key="unused")
    answer = sts.assume_role_with_web_identity(RoleArn=role_arn, RoleSessionName="gitlab-1-2",
                                               WebIdentityToken="header.payload.signature")["Credentials"]
    boto3.client("sts", endpoint_url=sandbox.aws.url, region_name="us-east-1",
                 aws_access_key_id=answer["AccessKeyId"], aws_secret_access_key=answer["SecretAccessKey"],
                 aws_session_token=answer["SessionToken"]).get_caller_identity()
