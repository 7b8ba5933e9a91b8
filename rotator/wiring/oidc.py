"""OIDC migration use cases, ready to run: `plan-oidc` (and `--apply`) and `retire-credential`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotator.domain import CredentialSpec
    from rotator.oidc.plan import OidcPlan, OidcRequest
    from rotator.oidc.retire_credential import RetireResult
    from rotator.wiring.root import Root


@dataclass(frozen=True)
class OidcChoices:
    """What the operator chose on the `plan-oidc` command line."""

    audience: str | None = None  # default: the GitLab URL
    refs: tuple[str, ...] = ("main",)
    tags: tuple[str, ...] = ()
    environment: str | None = None  # the CI job's `environment:` keyword only
    projects: tuple[str, ...] = ()
    role_name: str | None = None
    thumbprints: tuple[str, ...] = ()
    allow_unprotected: bool = False  # trust refs GitLab does not protect (the plan then says so)


class OidcWiring:
    def __init__(self, root: Root) -> None:
        self._root = root

    def plan(self, spec: CredentialSpec, choices: OidcChoices) -> tuple[OidcPlan, OidcRequest]:
        """Checks in GitLab that every trusted ref is protected (refusing otherwise, before any AWS call), reads
        the user's permissions in IAM and builds the provider, role and CI snippet; changes nothing."""
        from rotator.oidc.plan import OidcRequest, build_plan, project_paths, subject_patterns
        from rotator.oidc.protection import ref_protection, require_protected

        root = self._root
        settings = root.settings
        refs = choices.refs or ("main",)
        projects = project_paths(spec, choices.projects)
        subject_patterns(projects, refs, choices.tags)  # a malformed ref is a usage error before any call
        protection = ref_protection(projects, refs, choices.tags, root.gitlab.protected_refs)
        require_protected(protection, allow_unprotected=choices.allow_unprotected)
        account = settings.account(spec.account)
        request = OidcRequest(
            credential=spec, gitlab_url=settings.require_gitlab().url, account_id=root.aws.account_id(spec.account),
            permissions=root.aws.oidc_iam(spec.account).user_permissions(spec.iam_user),
            region=account.region if account is not None and account.region else settings.aws.region,
            audience=choices.audience, refs=refs, tags=choices.tags,
            environment=choices.environment, projects=choices.projects, role_name=choices.role_name,
            thumbprints=choices.thumbprints, protection=tuple(protection))
        return build_plan(request), request

    def apply(self, spec: CredentialSpec, plan: OidcPlan) -> list[str]:
        """Create (or bring up to date) the provider and the role; idempotent."""
        return self._root.aws.oidc_iam(spec.account).apply(plan.resources)

    def retire_credential(self, spec: CredentialSpec, *, role_name: str | None, dry_run: bool, skip_role_check: bool,
                          on_step: Callable[[str], None] | None = None) -> RetireResult:
        from rotator.leases import new_holder
        from rotator.oidc.plan import role_name_for
        from rotator.oidc.retire_credential import RetirePorts, retire_credential

        root = self._root
        ports = RetirePorts(variables=root.gitlab.variables, iam=root.aws.iam(spec.account),
                            oidc=root.aws.oidc_iam(spec.account), store=root.store, clock=root.clock, actor=root.actor)
        return retire_credential(spec, ports, role_name=role_name or role_name_for(spec.name),
                                 holder=new_holder(root.actor), lease_ttl=root.settings.service.lease_ttl,
                                 dry_run=dry_run, skip_role_check=skip_role_check, on_step=on_step)
