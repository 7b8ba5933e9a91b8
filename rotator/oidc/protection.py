"""Which refs `plan-oidc` may trust: every branch and tag the role's trust policy admits must be protected in
GitLab, in every project it names. Otherwise anyone who may push such a branch, or create such a tag (a
Developer, by default), runs a pipeline whose ID token assumes the role.

GitLab matches a protected ref's name against a branch or tag name with ``RefMatcher#matches?``
(app/models/ref_matcher.rb): equal names, or, when the protected name contains ``*``, the anchored
regular expression of its parts joined by ``.*?`` (so ``*`` stands for any run of characters, ``/``
included, and ``v*`` protects ``v1.2``), case-sensitively.

A trusted name or pattern T (the trust policy's StringLike, where ``*`` also stands for any run) is covered
by a protected name P when GitLab's matcher accepts T's own text, its ``*`` read as an ordinary character.
That is sound: P has no literal ``*``, so each ``*`` of T falls inside a run one of P's wildcards consumes,
and whatever T's ``*`` stands for, that wildcard takes it too. It is not complete, so a refusal can only err
on the side of caution; ``--allow-unprotected`` overrides it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rotator.errors import RotatorError
from rotator.oidc.ports import ProtectedRef, ProtectedRefs

RefType = Literal["branch", "tag"]
DEVELOPER = 30  # ProtectedRefAccess access level of the Developer role (GitLab protected branches API)


class UnprotectedRefs(RotatorError):
    """plan-oidc refuses to trust a ref GitLab does not protect."""


def gitlab_ref_matches(protected: str, ref: str) -> bool:
    """GitLab's RefMatcher#matches?: an exact name, or a wildcard pattern matching the whole name."""
    if not protected:
        return False
    if protected == ref:
        return True
    if "*" not in protected:
        return False
    return re.fullmatch(".*?".join(re.escape(part) for part in protected.split("*")), ref) is not None


@dataclass(frozen=True)
class RefProtection:
    """Whether one trusted ref of one project is protected, and by which protected name."""

    project: str
    ref_type: RefType
    ref: str
    protected_by: tuple[str, ...] = ()  # every protected name that covers it
    developers_may_write: bool = False  # one of those lets the Developer role push, merge or create
    problem: str | None = None  # why it is not (known to be) protected

    @property
    def protected(self) -> bool:
        return bool(self.protected_by)

    @property
    def label(self) -> str:
        return f"{self.project}: {self.ref_type} {self.ref}"


def _judge(project: str, ref_type: RefType, ref: str, protected: Sequence[ProtectedRef]) -> RefProtection:
    covering = [p for p in protected if gitlab_ref_matches(p.name, ref)]
    if not covering:
        what = f"every {ref_type} matching {ref}" if "*" in ref else f"{ref_type} {ref}"
        return RefProtection(project, ref_type, ref, problem=f"no protected {ref_type} of {project} covers {what}")
    return RefProtection(project, ref_type, ref, tuple(p.name for p in covering),
                         developers_may_write=any(DEVELOPER in p.write_levels for p in covering))


def _by_type(refs: Sequence[str], tags: Sequence[str]) -> tuple[tuple[RefType, Sequence[str]], ...]:
    return (("branch", refs), ("tag", tags))


def ref_protection(projects: Sequence[str], refs: Sequence[str], tags: Sequence[str],
                   gitlab: ProtectedRefs) -> list[RefProtection]:
    """Each (project, trusted branch or tag), judged against the project's protected branches and tags.

    A project pattern (``group/*``, from a group target) admits projects created later, whose protection
    nobody can check today: each of its refs is reported as not known to be protected.
    """
    verdicts: list[RefProtection] = []
    for project in projects:
        if "*" in project:
            verdicts += [RefProtection(project, kind, ref, problem=(
                f"every project under {project.removesuffix('/*')}/ is trusted, including projects created later, "
                "whose protected refs cannot be checked; name the projects with --project"))
                for kind, names in _by_type(refs, tags) for ref in names]
            continue
        branches = gitlab.protected_branches(project) if refs else []
        verdicts += [_judge(project, "branch", ref, branches) for ref in refs]
        protected_tags = gitlab.protected_tags(project) if tags else []
        verdicts += [_judge(project, "tag", tag, protected_tags) for tag in tags]
    return verdicts


def require_protected(verdicts: Sequence[RefProtection], *, allow_unprotected: bool) -> None:
    """Refuse (exit 1, naming them) to trust refs that are not protected, unless the operator allowed it."""
    unprotected = [v for v in verdicts if not v.protected]
    if unprotected and not allow_unprotected:
        raise UnprotectedRefs(
            "refusing to trust refs GitLab does not protect (anyone who can push them could assume the role): "
            + "; ".join(v.problem or v.label for v in unprotected),
            hint="protect them in GitLab (Settings > Repository > Protected branches / Protected tags), "
                 "or plan anyway with --allow-unprotected")


def protection_warnings(verdicts: Sequence[RefProtection]) -> list[str]:
    """What the plan must say about the refs it trusts: unprotected ones (allowed by the operator), and
    protected ones that Developers may still write."""
    warnings = [f"NOT PROTECTED, trusted because of --allow-unprotected: {v.problem or v.label}"
                for v in verdicts if not v.protected]
    for v in verdicts:
        if v.developers_may_write:
            verb = "create" if v.ref_type == "tag" else "push or merge to"
            warnings.append(f"{v.label} is protected ({', '.join(v.protected_by)}), but the Developer role may {verb} "
                            "it: every Developer of the project can assume the role; allow only Maintainers")
    return warnings
