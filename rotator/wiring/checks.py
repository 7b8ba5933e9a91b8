"""`rotator check`: one harmless call to each outside party the config names, each failure typed and reported,
none stopping the others. Nothing is written anywhere."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rotator.domain import ScopeKind
from rotator.errors import RotatorError

if TYPE_CHECKING:
    from rotator.wiring.root import Root


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ok: bool
    detail: str


def _probe(name: str, call: Callable[[], str]) -> ProbeResult:
    try:
        return ProbeResult(name, True, call())
    except RotatorError as exc:  # every adapter failure is typed; report it and go on to the next probe
        return ProbeResult(name, False, str(exc))


class Checks:
    def __init__(self, root: Root) -> None:
        self._root = root

    def probes(self) -> Iterator[ProbeResult]:
        """Each probe's result as soon as it is known: the database, STS in every account, GitLab's user and
        each target scope's variable list, Slack's auth.test."""
        root = self._root
        settings = root.settings
        yield _probe("database", self._database)
        for account in settings.account_names():
            yield _probe(f"aws[{account}] sts:GetCallerIdentity", functools.partial(self._sts, account))
        yield _probe("gitlab GET /user", self._gitlab_user)
        yield _probe("gitlab capabilities", self._gitlab_capabilities)
        seen: set[tuple[str, str | None]] = set()
        for spec in settings.credential_specs():
            for target in spec.targets:
                if (target.kind.value, target.path) in seen:
                    continue
                seen.add((target.kind.value, target.path))
                where = "instance" if target.path is None else f"{target.kind.value} {target.path}"

                yield _probe(f"gitlab variables of {where}", functools.partial(self._variables, target.kind,
                                                                               target.path))
        if settings.slack is not None:
            yield _probe("slack auth.test", self._slack)

    def _database(self) -> str:
        from rotator.logs import redact_url

        self._root.store.list_statuses()
        return f"{redact_url(self._root.settings.service.database_url)} reachable, schema at head"

    def _sts(self, account: str) -> str:
        from rotator.adapters.aws import caller_identity

        who = caller_identity(self._root.aws.client("sts", account))
        return f"account {who['account']} as {who['arn']}"

    def _gitlab_user(self) -> str:
        from rotator.adapters.gitlab import current_user

        user = current_user(self._root.gitlab.client)
        admin = " (administrator)" if user.get("is_admin") else ""
        return f"token of {user.get('username')}{admin} at {self._root.settings.require_gitlab().url}"

    def _gitlab_capabilities(self) -> str:
        """The probe rotation and discovery decide from: version, token scopes, admin mode, and what the version
        supports (filter[environment_scope] on group variable updates from 16.9, masked_and_hidden from 17.4)."""
        found = self._root.gitlab.variables.capabilities()
        scopes = ", ".join(found.token_scopes) if found.token_scopes is not None else (
            "unknown (not a personal access token)")
        group_filter = ("yes" if found.group_filter else
                        "NO (before 16.9: a group target whose key exists in several scopes is refused)")
        hidden = ("yes" if found.masked_and_hidden else
                  "NO (before 17.4: creating a hidden secret is refused unless accept_masked_only = true)")
        from rotator.inventory.reach import ADMIN_MODE_FIX

        admin = found.admin_state() + (f" (next step: {ADMIN_MODE_FIX})" if found.admin_mode_missing else "")
        return (f"GitLab {found.version}; token scopes: {scopes}; {admin}; "
                f"filter[environment_scope] on group updates: {group_filter}; masked_and_hidden: {hidden}")

    def _variables(self, kind: ScopeKind, path: str | None) -> str:
        return f"{len(self._root.gitlab.variables.list(kind, path))} variable(s) readable"

    def _slack(self) -> str:
        return self._root.slack.whoami()
