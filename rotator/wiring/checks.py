"""`rotator check`: one harmless call to each outside party the config names, each failure typed and reported,
none stopping the others. Nothing is written anywhere."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rotator.domain import ScopeKind, Secret
from rotator.errors import ExternalError, RotatorError, StateKeyError

if TYPE_CHECKING:
    from rotator.inventory.least_privilege import EntityKind, Need, PrivilegeReads
    from rotator.wiring.root import Root


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ok: bool
    detail: str
    unreachable: bool = False  # the party did not answer at all (its other probes are not tried)


def _probe(name: str, call: Callable[[], str]) -> ProbeResult:
    try:
        return ProbeResult(name, True, call())
    except RotatorError as exc:  # every adapter failure is typed; report it and go on to the next probe
        return ProbeResult(name, False, str(exc),
                           unreachable=isinstance(exc, ExternalError) and exc.transient)


class Checks:
    def __init__(self, root: Root) -> None:
        self._root = root

    def probes(self) -> Iterator[ProbeResult]:
        """Each probe's result as soon as it is known: the database, the state key, STS in every account,
        GitLab's user, what GitLab does for the token (version, scopes, admin mode) and each target scope's
        variable list, the exposure-event queue when [events] names one, Slack's auth.test. When GitLab does not
        answer GET /user, its variable lists are not tried (each would wait out the same retry budget)."""
        root = self._root
        settings = root.settings
        yield _probe("database", self._database)
        yield _probe("state key", self._state_key)
        for account in settings.account_names():
            yield _probe(f"aws[{account}] sts:GetCallerIdentity", functools.partial(self._sts, account))
        yield from self.least_privilege_probes()
        user = _probe("gitlab GET /user", self._gitlab_user)
        yield user
        if user.unreachable:
            yield ProbeResult("gitlab capabilities", False, "not tried: GitLab did not answer GET /user (above)",
                              unreachable=True)
        else:
            yield _probe("gitlab capabilities", self._gitlab_capabilities)
        seen: set[tuple[str, str | None]] = set()
        for spec in settings.credential_specs():
            for target in spec.targets:
                if (target.kind.value, target.path) in seen:
                    continue
                seen.add((target.kind.value, target.path))
                where = "instance" if target.path is None else f"{target.kind.value} {target.path}"
                if user.unreachable:
                    yield ProbeResult(f"gitlab variables of {where}", False,
                                      "not tried: GitLab did not answer GET /user (above)", unreachable=True)
                    continue
                yield _probe(f"gitlab variables of {where}", functools.partial(self._variables, target.kind,
                                                                               target.path))
        events = settings.events
        if events is not None and events.enabled and events.queue_url:
            yield _probe("aws sqs:GetQueueAttributes (exposure events)",
                         functools.partial(self._event_queue, events.queue_url))
        if settings.slack is not None:
            yield _probe("slack auth.test", self._slack)

    def _event_queue(self, queue_url: str) -> str:
        """The queue `rotator run` long-polls for AWS Health exposure events: readable, and with a dead-letter
        queue for the messages it rejects (without one, a rejected message is deleted, its log line the only
        record)."""
        info = self._root.aws.queue(queue_url).describe()
        if info.dead_letter_arn is None:
            return (f"{info.arn} readable; no dead-letter queue (RedrivePolicy): rejected messages are deleted "
                    "and only logged; see deploy/README.md")
        return (f"{info.arn} readable; dead-letter queue {info.dead_letter_arn} after {info.max_receive_count} "
                "receive(s)")

    def _database(self) -> str:
        from rotator.logs import redact_url

        self._root.store.list_statuses()
        return f"{redact_url(self._root.settings.service.database_url)} reachable, schema at head"

    def _state_key(self) -> str:
        """What `rotate` needs to journal a new secret: the Fernet key set and valid, or KMS reachable; proven
        by sealing a throwaway value and opening it again (nothing is stored)."""
        service = self._root.settings.service
        sealer = self._root.sealer  # ConfigError when unset, StateKeyError when not a Fernet key
        canary = Secret(f"rotator-check-{uuid.uuid4().hex}")
        if sealer.open(sealer.seal(canary)).reveal() != canary.reveal():
            raise StateKeyError("the state key does not open what it sealed", hint="check the state key")
        if service.state_kms_key_id:
            return f"KMS key {service.state_kms_key_id} seals and opens (GenerateDataKey, Decrypt)"
        where = f"file {service.state_key_file}" if service.state_key_file else f"${service.state_key_env}"
        return f"Fernet key from {where} seals and opens"

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

    # --- least privilege: the CI boundary on what rotator manages, and rotator's own permissions ----------

    def least_privilege_probes(self) -> Iterator[ProbeResult]:
        """Per account: every tracked user (and every role rotator may cut) carries the CI boundary, one failed
        probe with the fixing command per entity that does not; then IAM's policy simulator on rotator's own
        principal, one failed probe per action it denies. Reads only."""
        for account in self._root.settings.account_names():
            yield from self._least_privilege(account)

    def _least_privilege(self, account: str) -> Iterator[ProbeResult]:
        from rotator.inventory.least_privilege import boundary_gaps, needs

        settings = self._root.settings
        reads = self._root.aws.privilege_reads(account)
        try:
            caller = reads.caller_arn()
        except RotatorError as exc:
            yield ProbeResult(f"aws[{account}] least privilege", False, f"not checked: {exc}")
            return
        users = [spec.iam_user for spec in settings.credential_specs() if spec.account == account]
        entities = []
        for kind, name in [*(("user", u) for u in dict.fromkeys(users)), *self._roles_rotator_may_cut(account)]:
            try:
                entities.append(reads.describe(kind, name))
            except RotatorError as exc:
                yield ProbeResult(f"aws[{account}] {kind} {name}", False, str(exc))
        pattern = settings.aws.boundary_arn_pattern
        if pattern:
            gaps = boundary_gaps(entities, pattern, caller.split(":")[4])
            for gap in gaps:
                yield ProbeResult(f"aws[{account}] permissions boundary of {gap.entity.kind} {gap.entity.name}",
                                  False, f"{gap.problem}; fix: {gap.fix}")
            if entities and not gaps:
                yield ProbeResult(f"aws[{account}] permissions boundary", True,
                                  f"{len(entities)} tracked user(s)/role(s) carry the CI boundary ({pattern})")
        account_settings = settings.account(account)
        wanted = needs([e for e in entities if e.kind == "user"], [e for e in entities if e.kind == "role"],
                       pattern=pattern, session_denies=self._session_denies(),
                       assumed_roles=[a.role_arn for a in settings.aws.accounts] if account == "default" else (),
                       locates_keys=account == "default", quarantine_policies=self._quarantine_policies())
        yield from self._simulated(account, reads, caller, account_settings.role_arn if account_settings else None,
                                   wanted)

    def _simulated(self, account: str, reads: PrivilegeReads, caller: str, role_arn: str | None,
                   wanted: list[Need]) -> Iterator[ProbeResult]:
        from rotator.inventory.least_privilege import grant_command, permission_gaps, policy_source_arn

        name = f"aws[{account}] permissions of rotator's principal"
        source = policy_source_arn(caller, role_arn)
        if source is None:
            yield ProbeResult(name, True, f"not simulated: {caller} is not an IAM user or role; only the probes "
                                          "above vouch for these credentials")
            return
        try:
            decisions = reads.simulate(source, wanted)
        except RotatorError as exc:  # not permitted, or no simulator: the harmless probes above still stand
            yield ProbeResult(name, True, f"not simulated ({exc}); only the probes above vouch for these credentials")
            return
        policy = ("deploy/iam-policy" if account == "default" else "deploy/cross-account-role") + (
            ".json" if self._session_denies() else "-no-session-deny.json")
        gaps = permission_gaps(wanted, decisions)
        for gap in gaps:
            yield ProbeResult(f"aws[{account}] {source} may {gap.action}", False,
                              f"{gap.decision} on {', '.join(gap.resources)} (needed to {gap.why}); fix: "
                              f"{grant_command(source, policy)}")
        if not gaps:
            yield ProbeResult(name, True, f"IAM's policy simulator allows {source} all {len(wanted)} action(s) "
                                          "rotator needs here")

    def _roles_rotator_may_cut(self, account: str) -> list[tuple[EntityKind, str]]:
        """Roles whose sessions `revoke` may cut in ``account``, which must carry the CI boundary too. None is
        known before an incident: [revoke] role_paths names paths, not roles, and `revoke` tries every role a
        key's sessions assumed (IAM refuses those without the boundary: a named gap then)."""
        return []

    def _session_denies(self) -> bool:
        """[revoke] deny_sessions: false drops the inline-policy permissions (deploy/*-no-session-deny.json)."""
        return self._root.settings.revoke.deny_sessions

    def _quarantine_policies(self) -> tuple[str, ...]:
        """The service lists the users of AWS's quarantine policies on each tick when [events] asks for it."""
        from rotator.incident.events import QUARANTINE_POLICY_ARNS

        events = self._root.settings.events
        return QUARANTINE_POLICY_ARNS if events is not None and events.enabled and events.quarantine_check else ()
