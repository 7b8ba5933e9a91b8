"""The rotation protocol of one credential, written against the ports:

intent → make room → create → verify → publish → grace → retire → delete.

The journal is saved before every outside step, so every run (``rotate`` or a service tick) first resumes
whatever an earlier, possibly killed, run left: roll forward when the journal holds what is needed, roll back
only what this rotation provably created. Each step is idempotent. One engine, as Vault's database backend
keeps its rotation with its write-ahead log: the phases read top to bottom, sharing one run's state.

An emergency run ("GitLab may be compromised": the old key is the danger, not the pipeline) starts a rotation
whether due or not, and retires the old key as soon as every target holds the new pair: no grace, no
LastUsedDate gate. It never deletes: the old key stays Inactive as evidence until the normal delete_after.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from rotator.domain import (
    AccessKey,
    CredentialSpec,
    CredentialState,
    IamUser,
    Journal,
    KeyOwner,
    KeyStatus,
    NewAccessKey,
    Phase,
    is_due,
    next_rotation_due,
)
from rotator.errors import (
    AwsLimitExceeded,
    AwsNotFound,
    AwsThrottled,
    ExternalError,
    GitLabError,
    GitLabPairSplit,
    LeaseLost,
    RotatorError,
)
from rotator.rotation.deactivation import READ_BACK_ATTEMPTS, read_back_inactive
from rotator.rotation.reporting import Reporter
from rotator.rotation.results import Outcome, RotationPorts, RotationResult
from rotator.rotation.targets import (
    PreflightRefused,
    TargetAssessment,
    TargetReading,
    assess_targets,
    check_drift,
    describe_split,
    missing_variable_error,
    preflight,
    put_back_secret,
    read_target,
    shown_key_id,
    write_pair,
)
from rotator.rotation.verify import verify_new_key

# Key CreateDate comes from AWS's clock, the journal's started_at from ours.
CLOCK_SKEW = timedelta(minutes=2)


class _Stop(Exception):
    """Ends a run early with its result (a hold, a failure, a wait)."""

    def __init__(self, result: RotationResult) -> None:
        super().__init__(result.message)
        self.result = result


class Rotator:
    """Runs every step of one credential's rotation that is due now."""

    def __init__(self, ports: RotationPorts, spec: CredentialSpec, *, force: bool = False,
                 guard: Callable[[], None] | None = None,
                 on_step: Callable[[str, str], None] | None = None, resume_only: bool = False,
                 emergency: bool = False) -> None:
        """``guard`` runs before every outside step (lease renewal, interruption); ``resume_only`` finishes
        or undoes an interrupted rotation but never starts a new one; ``emergency`` (implies ``force``)
        retires the old key as soon as every target holds the new pair, and deletes nothing."""
        self.ports = ports
        self.spec = spec
        self.force = force or emergency
        self.emergency = emergency
        self.resume_only = resume_only
        self._guard = guard or (lambda: None)
        self.report = Reporter(ports, spec, on_step)
        # What IAM listed for the old key in this run, once it listed it Inactive or gone: "Inactive" or
        # "already deleted". Every "is Inactive" this run says rests on it, never on UpdateAccessKey alone.
        self._old_key_seen: str | None = None

    # --- entry point -------------------------------------------------------------------------------
    def run(self) -> RotationResult:
        try:
            result = self._run()
        except _Stop as stop:
            result = stop.result
        except LeaseLost as exc:
            return self._result(Outcome.BUSY, str(exc))
        except RotatorError as exc:
            result = self._result(Outcome.FAILED, str(exc), unreachable=unreachable_party(exc))
            self.report.event("rotation", "failed", error=str(exc), error_type=type(exc).__name__)
        self.report.finish(result)
        untold = self.report.untold_text()
        return replace(result, message=f"{result.message}; {untold}") if untold else result

    def _run(self) -> RotationResult:
        journal = self.ports.store.open_journal(self.spec.name)
        if journal is not None:
            journal = self._resume(journal)
            if journal is not None:
                return self._continue(journal)
            if self.resume_only:
                return self._result(Outcome.NOT_DUE, "recovered an interrupted rotation; nothing else to do")
            return self._start()  # the unfinished rotation was cleared; start afresh if due
        if self.resume_only:
            return self._result(Outcome.NOT_DUE, "no interrupted rotation to recover")
        return self._start()

    # --- intent --------------------------------------------------------------------------------------
    def _start(self) -> RotationResult:
        user = self.ports.iam.get_user(self.spec.iam_user)
        self._check_user_identity(user)
        keys = self.ports.iam.list_access_keys(user.name)
        assessment = assess_targets(self.ports.variables, self.spec.targets, {k.key_id for k in keys})
        if assessment.missing:
            raise assessment.missing[0]
        reasons = assessment.hold_reasons()
        if reasons:
            reason = "; ".join(reasons)
            self.report.notify("drift", f"rotator: {self.spec.name} drift, credential held", [reason], "warning")
            return self._hold(reason)
        old_key_id = assessment.key_in_use(keys)
        old = next((k for k in keys if k.key_id == old_key_id), None)
        status = self.ports.store.get_status(self.spec.name)
        last_rotated = status.last_rotated_at if status else None
        created = old.created_at if old else None
        due_at = next_rotation_due(created, last_rotated, self.spec.policy)
        now = self.ports.clock.now()
        if not self.force and not is_due(created, last_rotated, self.spec.policy, now):
            assert due_at is not None  # not due means a due date is known
            self.ports.store.set_status(self.spec.name, CredentialState.OK, now, current_key_id=old_key_id,
                                        key_created_at=old.created_at if old else None, next_due_at=due_at)
            return self._result(Outcome.NOT_DUE, f"not due until {due_at.isoformat()}", key_id=old_key_id)

        journal = Journal(
            rotation_id=str(uuid.uuid4()), credential=self.spec.name, account=self.spec.account,
            user_name=user.name, user_id=user.user_id, prior_key_ids=tuple(sorted(k.key_id for k in keys)),
            old_key_id=old_key_id, phase=Phase.INTENT, started_at=now, updated_at=now,
        )
        self._save(journal)
        self.report.step("intent", f"user {user.name} ({user.user_id}) has {len(keys)} key(s); replacing "
                                   f"{old_key_id or 'nothing'}")
        new_key = self._create(journal, assessment)
        journal = self._save(replace(journal, phase=Phase.CREATED, new_key_id=new_key.key_id,
                                     sealed_secret=self.ports.sealer.seal(new_key.secret)))
        self.ports.store.remember_key(KeyOwner(new_key.key_id, self.spec.name, self.spec.account, user.name,
                                               user.user_id), now, status="Active", created_at=new_key.created_at)
        self.report.event("create_key", "ok", key_ids=(new_key.key_id,))
        self.report.step("create", f"created {new_key.key_id}")
        return self._continue(journal, new_key=new_key, user=user)

    def _check_user_identity(self, user: IamUser) -> None:
        earlier = [j for j in self.ports.store.journals(self.spec.name) if j.user_id]
        if earlier and earlier[-1].user_id != user.user_id:
            reason = (f"IAM user {user.name} was recreated (UserId {earlier[-1].user_id} → {user.user_id}) since "
                      "the last rotation")
            self.report.notify("held", f"rotator: {self.spec.name} held", [reason], "warning")
            raise _Stop(self._hold(reason))

    # --- make room and create --------------------------------------------------------------------------
    def _create(self, journal: Journal, assessment: TargetAssessment) -> NewAccessKey:
        """CreateAccessKey; on LimitExceeded make room once (never a hard-coded key count)."""
        self._guard()
        try:
            return self.ports.iam.create_access_key(journal.user_name)
        except AwsLimitExceeded:
            pass
        keys = self.ports.iam.list_access_keys(journal.user_name)
        store = self.ports.store
        decision = assessment.room(keys, replacing=journal.old_key_id, journals=store.journals(self.spec.name),
                                   user_id=journal.user_id,
                                   is_evidence=lambda key_id: bool(store.incidents_for_key(key_id)))
        if decision.delete_key_id is None:
            self._save(replace(journal, phase=Phase.ROLLED_BACK, error="no free key slot"))
            reason = decision.hold_reason or "no free key slot"
            self.report.notify("held", f"rotator: {self.spec.name} held", [reason], "warning")
            raise _Stop(self._hold(reason))
        self._guard()
        self.ports.iam.delete_access_key(journal.user_name, decision.delete_key_id)
        self.report.event("make_room", "ok", key_ids=(decision.delete_key_id,),
                          reason="Inactive, unreferenced and replaced")
        self.report.step("make room", f"deleted {decision.delete_key_id} (Inactive, unreferenced, replaced)")
        remaining = tuple(sorted(k.key_id for k in keys if k.key_id != decision.delete_key_id))
        self._save(replace(journal, prior_key_ids=remaining))
        return self.ports.iam.create_access_key(journal.user_name)

    # --- resume what an earlier run left ----------------------------------------------------------------
    def _resume(self, journal: Journal) -> Journal | None:
        """Bring an unfinished journal to a state we can continue from; None when it was cleared."""
        self.report.step("recover", f"found rotation {journal.rotation_id[:8]} at phase {journal.phase.value}")
        try:
            user = self.ports.iam.get_user(journal.user_name)
        except AwsNotFound:
            raise _Stop(self._hold(f"IAM user {journal.user_name} no longer exists; the unfinished rotation "
                                   f"{journal.rotation_id} cannot continue")) from None
        if user.user_id != journal.user_id:
            reason = (f"IAM user {user.name} was recreated (UserId {journal.user_id} → {user.user_id}); "
                      "keys of the old user are not touched")
            self.report.notify("held", f"rotator: {self.spec.name} held", [reason], "warning")
            raise _Stop(self._hold(reason))
        keys = {k.key_id: k for k in self.ports.iam.list_access_keys(journal.user_name)}
        old = keys.get(journal.old_key_id or "")
        if old is not None and old.status is KeyStatus.INACTIVE:
            self._old_key_seen = "Inactive"
        if journal.phase is Phase.INTENT:
            self._roll_back_unjournaled(journal, keys.values())
            return None
        if journal.phase in (Phase.CREATED, Phase.VERIFIED) and journal.new_key_id not in keys:
            if not any(t for t in journal.targets_done):
                self._save(replace(journal, phase=Phase.DISCARDED, error="the new key no longer exists"))
                self.report.event("discard_journal", "ok", key_ids=(journal.new_key_id or "",))
                self.report.step("discard", "stale journal: its new key no longer exists")
                return None
            raise _Stop(self._fail(f"targets hold {journal.new_key_id}, which IAM no longer has",
                                   hint="run `rotator rotate --force` to publish a fresh key"))
        if journal.phase in (Phase.PUBLISHED, Phase.RETIRED) and journal.old_key_id not in keys:
            self._save(replace(journal, phase=Phase.DONE))
            self.report.step("discard", f"old key {journal.old_key_id} is already gone")
            self._mark_rotated(journal)
            return None
        return journal

    def _roll_back_unjournaled(self, journal: Journal, keys: Iterable[AccessKey]) -> None:
        """CreateAccessKey may have happened without its result being journaled. Ours, provably: a key that was
        not there at intent time, was created after it, and that no target holds."""
        created_after = [k.key_id for k in keys
                         if k.key_id not in journal.prior_key_ids and k.created_at >= journal.started_at - CLOCK_SKEW]
        held = {r.held_key_id for r in self._read_targets() if r.held_key_id} if created_after else set()
        if held & set(created_after):
            raise _Stop(self._hold(f"keys {', '.join(sorted(held & set(created_after)))} appeared during an "
                                   "interrupted rotation and a target holds them; a human must check them"))
        for key_id in created_after:
            self._guard()
            self.ports.iam.delete_access_key(journal.user_name, key_id)
            self.report.event("delete_orphan", "ok", key_ids=(key_id,))
            self.report.step("roll back", f"deleted {key_id}: created but never journaled")
        self._save(replace(journal, phase=Phase.ROLLED_BACK, error="interrupted before the new key was journaled"))

    def _continue(self, journal: Journal, *, new_key: NewAccessKey | None = None,
                  user: IamUser | None = None) -> RotationResult:
        if journal.phase in (Phase.CREATED, Phase.VERIFIED):
            new_key = new_key or self._unseal(journal)
            if journal.phase is Phase.CREATED:
                user = user or self.ports.iam.get_user(journal.user_name)
                journal = self._verify(journal, new_key, user)
            journal = self._publish(journal, new_key)
        if journal.phase is Phase.PUBLISHED:
            journal = self._retire(journal)
        if journal.phase is Phase.RETIRED and self._old_key_seen is None:
            journal = self._active_again(journal)
        if journal.phase is Phase.RETIRED and self.emergency:
            return self._emergency_end(journal)
        if journal.phase is Phase.RETIRED:
            journal = self._delete(journal)
        return self._result(Outcome.ROTATED, f"rotated to {journal.new_key_id}", key_id=journal.new_key_id,
                            new_key_id=journal.new_key_id)

    def _unseal(self, journal: Journal) -> NewAccessKey:
        if journal.sealed_secret is None or journal.new_key_id is None:
            raise RotatorError(f"rotation {journal.rotation_id} has no journaled secret for {journal.new_key_id}",
                               hint="run `rotator rotate --force` to start a fresh rotation")
        return NewAccessKey(journal.new_key_id, self.ports.sealer.open(journal.sealed_secret), journal.updated_at)

    # --- verify -------------------------------------------------------------------------------------
    def _verify(self, journal: Journal, new_key: NewAccessKey, user: IamUser) -> Journal:
        self._guard()
        accepted, detail = verify_new_key(self.ports, new_key, user, self.spec.policy.verify_timeout, self._guard)
        if not accepted:
            self._guard()
            self.ports.iam.delete_access_key(journal.user_name, new_key.key_id)
            self._save(replace(journal, phase=Phase.ROLLED_BACK, sealed_secret=None, error=detail))
            self.report.event("verify", "failed", key_ids=(new_key.key_id,), reason=detail)
            self.report.event("delete_key", "ok", key_ids=(new_key.key_id,), reason="never verified")
            message = f"{detail}; new key {new_key.key_id} deleted, old key {journal.old_key_id} untouched"
            self.report.notify("failed", f"rotator: {self.spec.name} rotation failed", [message], "warning")
            raise _Stop(self._fail(message))
        self.report.event("verify", "ok", key_ids=(new_key.key_id,), detail=detail)
        self.report.step("verify", detail)
        return self._save(replace(journal, phase=Phase.VERIFIED))

    # --- publish ------------------------------------------------------------------------------------
    def _publish(self, journal: Journal, new_key: NewAccessKey) -> Journal:
        expected = {k for k in (journal.old_key_id, new_key.key_id) if k}
        refused: list[str] = []  # nothing new is in these targets: a human must let rotator write there
        failed: list[str] = []  # could not be read or written (drift, missing variable, GitLab unreachable)
        broken: dict[str, str] = {}  # target id -> which variable holds what
        parties: set[str | None] = set()  # the party each failure was for, when it did not answer
        drift = False
        for target in self.spec.targets:
            if target.target_id in journal.targets_done:
                continue
            marker = f"{target.target_id}#secret"
            before: Mapping[tuple[str, str], str | None] | None = None  # this target's scopes, once read
            self._guard()
            try:
                reading = read_target(self.ports.variables, target)
                problem = check_drift(reading, expected) or missing_variable_error(reading)
                if problem is not None:
                    drift = drift or reading.held_key_id is not None
                    raise problem
                try:
                    before = preflight(self.ports.variables, reading)
                except PreflightRefused as exc:
                    if marker in journal.targets_done and not _holds_old_secret(reading, new_key):
                        raise GitLabPairSplit(str(exc), written=target.secret_access_key_var, failure=exc) from None
                    raise
                # Journaled before the secret PUT: from here the target may hold something new.
                journal = self._save(replace(journal, targets_done=journal.targets_done | {marker}))
                write_pair(self.ports.variables, reading, new_key, before=before)
            except PreflightRefused as exc:
                refused.append(str(exc))
                self.report.event("publish", "refused", key_ids=(new_key.key_id,), target=target.label,
                                  error=str(exc), status=exc.status)
                continue
            except GitLabPairSplit as split:
                self._guard()
                restorable = _holds_old_secret(reading, new_key)
                unrestored = put_back_secret(self.ports.variables, reading, before=before) if restorable else None
                if restorable and unrestored is None:
                    journal = self._save(replace(journal, targets_done=journal.targets_done - {marker}))
                    text = (f"{target.label}: GitLab refused {target.access_key_id_var} (HTTP {split.status}) after "
                            f"{target.secret_access_key_var} was written; the old secret was put back (GitLab's "
                            f"answer checked), so the target holds {shown_key_id(reading.held_key_id)} again")
                    refused.append(text)
                    self.report.event("publish", "restored", key_ids=(new_key.key_id,), target=target.label,
                                      error=split.failure.message, status=split.status)
                else:
                    broken[target.target_id] = describe_split(reading, split, new_key.key_id,
                                                              restore_problem=unrestored)
                    self.report.event("publish", "broken", key_ids=(new_key.key_id,), target=target.label,
                                      error=split.failure.message, status=split.status)
                continue
            except GitLabError as exc:
                failed.append(str(exc))
                parties.add(unreachable_party(exc))
                self.report.event("publish", "failed", key_ids=(new_key.key_id,), target=target.label,
                                  error=str(exc))
                continue
            journal = self._save(replace(journal, targets_done=journal.targets_done | {target.target_id},
                                         broken_targets=journal.broken_targets - {target.target_id}))
            self.report.event("publish", "ok", key_ids=(new_key.key_id,), target=target.label)
            self.report.step("publish", f"{target.label}: {target.secret_access_key_var} then "
                                        f"{target.access_key_id_var}")
        if {t.target_id for t in self.spec.targets} <= journal.targets_done:
            return self._published(journal, new_key)
        if broken:
            raise _Stop(self._broken(journal, new_key, broken, [*refused, *failed]))
        touched = {t.split("#")[0] for t in journal.targets_done}
        if journal.broken_targets:  # a target broken earlier that could not even be read this time
            journal = self._save(replace(journal, broken_targets=frozenset()))
        if not touched:
            # No target holds anything new: the new key is ours alone, so undo it.
            self._guard()
            self.ports.iam.delete_access_key(journal.user_name, new_key.key_id)
            reasons = [*refused, *failed]
            self._save(replace(journal, phase=Phase.ROLLED_BACK, sealed_secret=None, error="; ".join(reasons)))
            self.report.event("delete_key", "ok", key_ids=(new_key.key_id,), reason="no target could be written")
            message = (f"no target could be written, new key {new_key.key_id} deleted, {journal.old_key_id} "
                       f"untouched: " + "; ".join(reasons))
            held = drift or bool(refused)
            self.report.notify("held" if held else "failed",
                               f"rotator: {self.spec.name} rotation {'held' if held else 'failed'}", [message],
                               "warning")
            unreachable = parties.pop() if len(parties) == 1 and not refused else None  # all failed the same way
            raise _Stop(self._hold(message, key_id=journal.old_key_id) if held
                        else self._fail(message, unreachable=unreachable))
        reason = (f"both keys stay Active: not every target holds {new_key.key_id} yet: " + "; ".join(
            [*refused, *failed]))
        self._save(replace(journal, hold_reason=reason))
        self.report.notify("held", f"rotator: {self.spec.name} partially rotated, held",
                           [reason, "fix the targets, then run `rotator rotate` to finish"], "warning")
        raise _Stop(self._hold(reason, key_id=journal.old_key_id, new_key_id=new_key.key_id))

    def _broken(self, journal: Journal, new_key: NewAccessKey, broken: dict[str, str],
                others: list[str]) -> RotationResult:
        """Some target holds half a pair: AWS rejects its pipelines. Said at once to the owners and the
        security channel; the service retries the target every [service] retry_broken_after."""
        self._save(replace(journal, broken_targets=frozenset(broken), hold_reason=None))
        lines = [*broken.values(),
                 f"both {journal.old_key_id or '(no old key)'} and {new_key.key_id} stay Active; pipelines of "
                 f"{'this target' if len(broken) == 1 else 'these targets'} fail until the key-id variable holds "
                 f"{new_key.key_id}",
                 f"rotator tries again every [service] retry_broken_after; once GitLab accepts the write, "
                 f"`rotator rotate {self.spec.name}` completes it at once", *others]
        message = f"BROKEN: {len(broken)} target(s) hold half a pair: " + "; ".join(broken.values())
        self.report.alarm("broken", f"rotator: {self.spec.name}: {len(broken)} GitLab target(s) BROKEN", lines)
        self.report.event("publish", "broken", key_ids=(new_key.key_id,), targets=sorted(broken))
        return self._result(Outcome.BROKEN, message, key_id=journal.old_key_id, new_key_id=new_key.key_id)

    def _published(self, journal: Journal, new_key: NewAccessKey) -> Journal:
        now = self.ports.clock.now()
        journal = self._save(replace(journal, phase=Phase.PUBLISHED, sealed_secret=None, published_at=now,
                                     hold_reason=None, broken_targets=frozenset()))
        self.ports.store.set_status(self.spec.name, CredentialState.ROTATING, now, current_key_id=new_key.key_id,
                                    key_created_at=new_key.created_at)
        if self.emergency:
            return journal  # the owners are told once the old key is seen Inactive (_emergency_end)
        retire_at = now + self.spec.policy.grace
        self.report.notify("rotated", f"rotator: {self.spec.name} rotated", [
            f"new key {new_key.key_id} is in {len(self.spec.targets)} GitLab target(s)",
            f"old key {journal.old_key_id or '(none)'} stays Active until {retire_at.isoformat()} (grace)",
        ], "ok")
        return journal

    # --- retire: after the grace period, deactivate the old key -------------------------------------------
    def _retire(self, journal: Journal) -> Journal:
        """The old key is deactivated only if no target still holds it and its LastUsedDate has not moved
        since the new key was published (allowing for AWS's reporting skew); otherwise the credential is
        held and the owners are told who still uses it."""
        assert journal.published_at is not None
        if journal.old_key_id is None:
            return self._finish(journal)
        now = self.ports.clock.now()
        retire_at = journal.published_at + self.spec.policy.grace
        if now < retire_at and not self.emergency:
            raise _Stop(self._result(Outcome.WAITING, f"grace period: {journal.old_key_id} retires at "
                                                       f"{retire_at.isoformat()}", key_id=journal.new_key_id))
        self._guard()
        still = [r.target.label for r in self._read_targets() if r.held_key_id == journal.old_key_id]
        if still:
            raise _Stop(self._hold(f"not deactivating {journal.old_key_id}: still held by {', '.join(still)}",
                                   key_id=journal.old_key_id, new_key_id=journal.new_key_id))
        if self.emergency:
            return self._deactivate(journal, now)
        used = self.ports.iam.get_access_key_last_used(journal.old_key_id)
        last = used.last_used_at
        if last is not None and last > journal.published_at + self.spec.policy.last_used_skew:
            # Used after publish. Once held, the key may go only after its LastUsedDate has stood still
            # for a whole grace period (whoever used it has moved to the new pair, or was stopped).
            quiet = (journal.old_last_used_at is not None and journal.held_at is not None
                     and last <= journal.old_last_used_at and now >= journal.held_at + self.spec.policy.grace)
            if not quiet:
                reason = (f"old key {journal.old_key_id} still in use: {used.describe()} (after the new key was "
                          f"published at {journal.published_at.isoformat()})")
                fresh = journal.held_at is None or journal.old_last_used_at != last
                self._save(replace(journal, hold_reason=reason, old_last_used_at=last,
                                   held_at=now if fresh else journal.held_at))
                if fresh:
                    self.report.notify("held", f"rotator: {self.spec.name} held before retiring the old key", [
                        reason, "find the job or host still using it and switch it to the GitLab variables; "
                                "rotator retires the key once it has not been used for a grace period"],
                        "warning")
                raise _Stop(self._hold(reason, key_id=journal.new_key_id))
        return self._deactivate(journal, now)

    def _deactivate(self, journal: Journal, now: datetime) -> Journal:
        """UpdateAccessKey Inactive, then read back with ListAccessKeys: the journal says RETIRED only once IAM
        lists the key Inactive (or gone); otherwise the run fails at PUBLISHED and the next run deactivates again."""
        old = journal.old_key_id
        assert old is not None
        self._guard()
        self.ports.iam.set_access_key_status(journal.user_name, old, active=False)
        listed = read_back_inactive(self.ports.iam, journal.user_name, old, self.ports.clock)
        if listed is not None and listed.status is not KeyStatus.INACTIVE:
            self.report.event("deactivate_key", "failed", key_ids=(old,), listed=listed.status.value)
            raise RotatorError(f"UpdateAccessKey {old} Inactive was accepted, but IAM still lists {old} as "
                               f"{listed.status.value} after {READ_BACK_ATTEMPTS} ListAccessKeys read(s)",
                               hint=f"check {old} in the IAM console; run `rotator rotate {self.spec.name}` again to "
                                    "deactivate it again")
        self._old_key_seen = "Inactive" if listed is not None else "already deleted"
        self.report.event("deactivate_key", "ok", key_ids=(old,), verified="ListAccessKeys")
        self.report.step("retire", f"deactivated {old}: {self._old_key_seen} (verified with ListAccessKeys)")
        return self._save(replace(journal, phase=Phase.RETIRED, deactivated_at=now, hold_reason=None))

    def _active_again(self, journal: Journal) -> Journal:
        """The journal says the old key was retired, but IAM (listed when this run resumed) does not list it
        Inactive: someone made it Active again, or an earlier version of rotator journaled an UpdateAccessKey it
        never read back. An emergency run deactivates it again (the key is the danger); a normal run neither
        deactivates nor deletes an Active key without a human."""
        assert journal.old_key_id is not None
        if self.emergency:
            self.report.step("retire", f"IAM lists {journal.old_key_id} as Active although it was retired")
            return self._deactivate(journal, self.ports.clock.now())
        reason = (f"{journal.old_key_id} was retired at "
                  f"{journal.deactivated_at.isoformat() if journal.deactivated_at else 'an unknown time'}, but IAM "
                  "lists it as Active: someone made it Active again; rotator neither deletes nor deactivates it "
                  "without a human")
        if journal.hold_reason != reason:  # told once, not on every retry
            self._save(replace(journal, hold_reason=reason))
            self.report.notify("held", f"rotator: {self.spec.name} held before deleting the old key",
                               [reason, f"deactivate {journal.old_key_id} yourself (or find who needs it), then run "
                                        f"`rotator rotate {self.spec.name}`"], "warning")
        raise _Stop(self._hold(reason, key_id=journal.new_key_id))

    def _emergency_end(self, journal: Journal) -> RotationResult:
        """An emergency run stops once the old key is Inactive, as IAM itself reports it: kept as evidence,
        deleted by a later run after delete_after."""
        old = journal.old_key_id
        retired = None
        if old is None:
            message = f"rotated to {journal.new_key_id}; there was no old key"
            told = "there was no old key"
        else:
            state = self._old_key_seen  # read back by _deactivate, or listed when this run resumed
            assert state is not None
            retired = old
            delete_at = (journal.deactivated_at or self.ports.clock.now()) + self.spec.policy.delete_after
            kept = f", kept as evidence until {delete_at.isoformat()} (delete_after)" if state == "Inactive" else ""
            message = f"rotated to {journal.new_key_id}; {old} is {state} (verified with ListAccessKeys){kept}"
            told = f"old key {old} is {state} (verified with ListAccessKeys){kept}"
        self.report.step("emergency", message)
        self.report.notify("rotated", f"rotator: {self.spec.name} rotated (emergency)", [
            f"new key {journal.new_key_id} is in {len(self.spec.targets)} GitLab target(s)", told], "ok")
        return self._result(Outcome.WAITING, message, key_id=journal.new_key_id, new_key_id=journal.new_key_id,
                            retired_key_id=retired)

    # --- delete: after delete_after, delete the old key ---------------------------------------------------
    def _delete(self, journal: Journal) -> Journal:
        assert journal.deactivated_at is not None and journal.old_key_id is not None
        if self.ports.store.incidents_for_key(journal.old_key_id):
            # A compromised key stays Inactive as evidence: `revoke --replace` rotates through this protocol,
            # and a later run resuming its journal must not delete the key either.
            self.report.event("keep_key", "ok", key_ids=(journal.old_key_id,), reason="evidence of an incident")
            self.report.step("keep", f"{journal.old_key_id} stays Inactive as evidence of an incident")
            return self._finish(journal)
        if self._old_key_seen == "already deleted":
            return self._finish(journal)
        now = self.ports.clock.now()
        delete_at = journal.deactivated_at + self.spec.policy.delete_after
        if now < delete_at:
            raise _Stop(self._result(Outcome.WAITING, f"{journal.old_key_id} is Inactive (verified with "
                                                       f"ListAccessKeys); deleted at {delete_at.isoformat()}",
                                     key_id=journal.new_key_id))
        self._guard()
        self.ports.iam.delete_access_key(journal.user_name, journal.old_key_id)
        self.report.event("delete_key", "ok", key_ids=(journal.old_key_id,))
        self.report.step("delete", f"deleted {journal.old_key_id}")
        return self._finish(journal)

    def _finish(self, journal: Journal) -> Journal:
        journal = self._save(replace(journal, phase=Phase.DONE, sealed_secret=None))
        self._mark_rotated(journal)
        return journal

    def _mark_rotated(self, journal: Journal) -> None:
        rotated_at = journal.published_at or self.ports.clock.now()
        self.ports.store.set_status(self.spec.name, CredentialState.OK, self.ports.clock.now(),
                                    current_key_id=journal.new_key_id, last_rotated_at=rotated_at,
                                    next_due_at=rotated_at + self.spec.policy.rotate_every)

    # --- the run's shared helpers ------------------------------------------------------------------------
    def _read_targets(self) -> list[TargetReading]:
        readings = []
        for target in self.spec.targets:
            reading = read_target(self.ports.variables, target)
            error = missing_variable_error(reading)
            if error is not None:
                raise error
            readings.append(reading)
        return readings

    def _save(self, journal: Journal) -> Journal:
        journal = replace(journal, updated_at=self.ports.clock.now())
        self.ports.store.save_journal(journal)
        return journal

    def _result(self, outcome: Outcome, message: str, *, key_id: str | None = None,
                new_key_id: str | None = None, unreachable: str | None = None,
                retired_key_id: str | None = None) -> RotationResult:
        return RotationResult(self.spec.name, outcome, message, key_id, new_key_id, tuple(self.report.steps),
                              unreachable, retired_key_id=retired_key_id)

    def _hold(self, reason: str, *, key_id: str | None = None, new_key_id: str | None = None) -> RotationResult:
        self.report.event("hold", "held", reason=reason)
        return self._result(Outcome.HELD, reason, key_id=key_id, new_key_id=new_key_id)

    def _fail(self, message: str, *, hint: str = "", unreachable: str | None = None) -> RotationResult:
        text = f"{message} (next step: {hint})" if hint else message
        self.report.event("rotation", "failed", error=text)
        return self._result(Outcome.FAILED, text, unreachable=unreachable)


def unreachable_party(exc: RotatorError) -> str | None:
    """The party of an error that means "it did not answer, try later" (not throttling: that is an answer)."""
    if isinstance(exc, ExternalError) and exc.transient and not isinstance(exc, AwsThrottled):
        return exc.party
    return None


def _holds_old_secret(reading: TargetReading, new_key: NewAccessKey) -> bool:
    """Does the secret variable, as read before this write, provably hold something other than the new secret?
    (A hidden value cannot be read: it proves nothing.)"""
    secret = reading.secret_var
    return secret is not None and secret.value is not None and secret.value != new_key.secret.reveal()
