"""`rotator plan-oidc` and `rotator retire-credential`: the way off static keys."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option, print_json
from rotator.errors import ExitCode, UsageError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.option("--output", "output_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Write provider.json, trust-policy.json, role.json, permissions.json, gitlab-ci.yml, README.md.")
@click.option("--apply", "apply_", is_flag=True, help="Create the provider and the role in AWS (idempotent).")
@click.option("--ref", "refs", multiple=True, metavar="BRANCH",
              help="Protected branch (or pattern, e.g. release/*) allowed to assume the role (repeatable; default: "
                   "main).")
@click.option("--tag", "tags", multiple=True, metavar="PATTERN",
              help="Protected tag or tag pattern allowed too (repeatable, e.g. v*); the CI rule then also runs on "
                   "tag pipelines ($CI_COMMIT_TAG).")
@click.option("--allow-unprotected", is_flag=True,
              help="Plan even if a trusted branch or tag is not protected in GitLab (the plan says which).")
@click.option("--environment", metavar="NAME",
              help="Only sets `environment: NAME` on the CI job. AWS cannot enforce it (the role trusts the token's "
                   "sub and aud, and GitLab's sub names no environment): make NAME a protected environment with "
                   "deployment approvals in GitLab.")
@click.option("--project", "projects", multiple=True, metavar="PATH",
              help="Projects allowed (repeatable; default: the credential's project targets; a group target "
                   "trusts group/*, whose future projects' refs cannot be checked: name the projects instead).")
@click.option("--audience", metavar="AUD", help="The ID token's aud (default: the GitLab URL).")
@click.option("--role-name", metavar="NAME", help="Default: gitlab-oidc-<credential>.")
@click.option("--thumbprint", "thumbprints", multiple=True, metavar="HEX",
              help="Pin a CA thumbprint (40 hex digits); by default none is sent and IAM finds it.")
@config_option
@json_option
@handle_errors
def plan_oidc(name: str, output_dir: Path | None, apply_: bool, refs: tuple[str, ...], tags: tuple[str, ...],
              allow_unprotected: bool, environment: str | None, projects: tuple[str, ...], audience: str | None,
              role_name: str | None, thumbprints: tuple[str, ...], config_path: str | None, as_json: bool) -> None:
    """Plan the move of one credential from a static key to GitLab OIDC (and --apply it).

    Generates the IAM OIDC provider for the GitLab URL; a role whose trust policy allows
    sts:AssumeRoleWithWebIdentity only for ID tokens of the credential's project(s), on the
    given refs (the `sub` claim) and with our audience (`aud`); the same permissions as
    the IAM user (its attached and inline policies, its groups', its boundary); and the
    .gitlab-ci.yml snippet using id_tokens, whose rule runs on those branches and tags.

    First reads each project's protected branches and tags in GitLab (the token needs
    Maintainer): a trusted branch or tag that is not protected is refused, since anyone
    who can push it could assume the role. AWS checks only `sub` and `aud`, so the GitLab
    environment is never enforced by AWS: protect it in GitLab. Reads GitLab and IAM;
    writes nothing to AWS without --apply.

    \b
    Then run a pipeline with the snippet, and `rotator retire-credential NAME`.

    \b
    Exit codes: 0 planned (and applied); 1 a trusted ref is not protected, or
    an AWS or GitLab call failed; 2 usage/config error.

    \b
    Examples:
      rotator plan-oidc payments-deploy --output oidc/payments --ref main --environment production
      rotator plan-oidc payments-deploy --ref main --tag 'v*' --apply
    """
    from rotator.config.settings import load_settings
    from rotator.oidc.plan import plan_files, plan_readme
    from rotator.wiring.oidc import OidcChoices
    from rotator.wiring.root import Root

    settings = load_settings(config_path)
    cli_logging()
    spec = settings.credential(name)
    root = Root(settings)
    root.resolve_secrets(slack=False, state_key=False)  # the GitLab token, before any call
    plan, request = root.oidc.plan(spec, OidcChoices(
        audience=audience, refs=refs or ("main",), tags=tags, environment=environment, projects=projects,
        role_name=role_name, thumbprints=thumbprints, allow_unprotected=allow_unprotected))
    files = plan_files(plan, request)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for file_name, content in files.items():
            (output_dir / file_name).write_text(content, encoding="utf-8")
    applied = root.oidc.apply(spec, plan) if apply_ else []
    if as_json:
        print_json({"credential": spec.name, "provider": plan.provider_request, "role_arn": plan.role_arn,
                    "trust_policy": plan.trust_policy, "subjects": list(plan.subjects),
                    "managed_policy_arns": list(plan.permissions.managed_policy_arns),
                    "inline_policies": [n for n, _ in plan.permissions.inline_policies],
                    "ci_snippet": plan.ci_snippet, "warnings": list(plan.warnings),
                    "protection": [{"project": v.project, "ref_type": v.ref_type, "ref": v.ref,
                                    "protected_by": list(v.protected_by), "problem": v.problem,
                                    "developers_may_write": v.developers_may_write} for v in plan.protection],
                    "written": sorted(files) if output_dir else [], "applied": applied})
        return
    if output_dir is not None:
        click.echo(f"wrote {', '.join(sorted(files))} to {output_dir}")
        click.echo(plan_readme(plan, request), nl=False)
    else:
        click.echo(plan_readme(plan, request))
        click.echo("trust-policy.json:\n" + files["trust-policy.json"])
        click.echo("gitlab-ci.yml:\n" + plan.ci_snippet, nl=False)
    for line in applied:
        click.echo(f"applied: {line}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted and deactivated; change nothing.")
@click.option("--role-name", metavar="NAME", help="The OIDC role to check (default: gitlab-oidc-<credential>).")
@click.option("--skip-role-check", is_flag=True,
              help="Do not require the OIDC role to exist and have been assumed (you verified the pipeline otherwise).")
@config_option
@json_option
@handle_errors
def retire_credential(name: str, yes: bool, dry_run: bool, role_name: str | None, skip_role_check: bool,
                      config_path: str | None, as_json: bool) -> None:
    """Remove a credential's static key for good, after a pipeline succeeded with its OIDC role.

    Checks that the OIDC role exists and has been assumed (a pipeline proved it works),
    then deletes the credential's GitLab variables (key id and secret, every target) and
    deactivates every Active key of the IAM user (kept Inactive: a human can turn one back
    on if a forgotten job still needs it). Refuses while a rotation is unfinished; holds
    the credential's lease meanwhile. Then remove the credential from the config.

    \b
    Exit codes: 0 retired (or dry run); 1 refused or failed; 2 usage/config error
    (including no --yes without a terminal to confirm on).

    \b
    Examples:
      rotator retire-credential payments-deploy --dry-run
      rotator retire-credential payments-deploy --yes
    """
    from rotator.config.settings import load_settings
    from rotator.wiring.root import Root

    settings = load_settings(config_path)
    cli_logging()
    spec = settings.credential(name)
    root = Root(settings)
    root.resolve_secrets(slack=False, state_key=False)
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise UsageError("retire-credential deletes GitLab variables and deactivates keys: confirm with --yes",
                             hint="run it from a terminal to be asked, or pass --yes (try --dry-run first)")
        click.confirm(f"Delete the GitLab variables of {spec.name} and deactivate every key of {spec.iam_user}?",
                      abort=True)
    echo = None if as_json else (lambda line: click.echo(line, err=True))
    result = root.oidc.retire_credential(spec, role_name=role_name, dry_run=dry_run,
                                         skip_role_check=skip_role_check, on_step=echo)
    if as_json:
        print_json({"credential": result.credential, "dry_run": result.dry_run, "deleted": result.deleted,
                    "deactivated": result.deactivated, "still_active": result.still_active,
                    "role_last_used": result.role_last_used, "steps": result.steps})
    elif not dry_run and result.still_active:
        click.echo(f"{spec.name}: deleted {len(result.deleted)} variable(s), deactivated {len(result.deactivated)} "
                   f"key(s); IAM still lists {', '.join(result.still_active)} Active: deactivate by hand "
                   f"(aws iam update-access-key --user-name {spec.iam_user} --status Inactive --access-key-id ...)")
    elif not dry_run:
        click.echo(f"{spec.name}: deleted {len(result.deleted)} variable(s), deactivated "
                   f"{len(result.deactivated)} key(s) (Inactive, verified); now remove [[credentials]] "
                   f"{spec.name!r} from {settings.source}")
    if result.still_active:
        sys.exit(ExitCode.FAILED)
