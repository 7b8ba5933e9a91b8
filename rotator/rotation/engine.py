"""The rotation protocol of DESIGN §2, written against the ports.

intent → make room → create → verify → publish → grace → retire → delete.

The journal is saved before every outside step, so every run (``rotate`` or a service tick) first
resumes whatever an earlier, possibly killed, run left: roll forward when the journal holds what is
needed, roll back only what this rotation provably created. Each step is idempotent.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import replace
from datetime import timedelta

from rotator.domain import (
    AccessKey,
    CredentialState,
    IamUser,
    Journal,
    KeyOwner,
    KeyStatus,
    NewAccessKey,
    Phase,
    decide_room,
    newest_active,
    next_rotation_due,
)
from rotator.errors import (
    AwsLimitExceeded,
    AwsNotFound,
    GitLabError,
    LeaseLost,
    RotatorError,
)
from rotator.rotation.engine_base import Stop
from rotator.rotation.engine_retire import RetireSteps
from rotator.rotation.results import Outcome, RotationPorts, RotationResult, verify_new_key
from rotator.rotation.targets import (
    TargetReading,
    check_drift,
    missing_variable_error,
    read_target,
    write_pair,
)

__all__ = ["Outcome", "RotationPorts", "RotationResult", "Rotator"]

# Key CreateDate comes from AWS's clock, the journal's started_at from ours.
CLOCK_SKEW = timedelta(minutes=2)


class Rotator(RetireSteps):
    """Runs every step of one credential's rotation that is due now."""

    # --- entry point -------------------------------------------------------------------------------
    def run(self) -> RotationResult:
        try:
            result = self._run()
        except Stop as stop:
            result = stop.result
        except LeaseLost as exc:
            return self._result(Outcome.BUSY, str(exc))
        except RotatorError as exc:
            result = self._result(Outcome.FAILED, str(exc))
            self.report.event("rotation", "failed", error=str(exc), error_type=type(exc).__name__)
        self.report.finish(result)
        return result

    def _run(self) -> RotationResult:
        journal = self.p.store.open_journal(self.spec.name)
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

    # --- start a new rotation ------------------------------------------------------------------------
    def _start(self) -> RotationResult:
        user = self.p.iam.get_user(self.spec.iam_user)
        self._check_user_identity(user)
        keys = self.p.iam.list_access_keys(user.name)
        readings = self._read_targets()
        held = {r.held_key_id for r in readings if r.held_key_id}
        key_ids = {k.key_id for k in keys}
        drift = [e for r in readings if (e := check_drift(r, key_ids)) is not None]
        if drift or len(held) > 1:
            reason = "; ".join(str(e) for e in drift) or (
                f"targets hold different keys ({', '.join(sorted(held))}): fix them by hand, then rotate again")
            self.report.notify("drift", f"rotator: {self.spec.name} drift, credential held", [reason], "warning")
            return self._hold(reason)
        current = newest_active(keys)
        old_key_id = next(iter(held), None) or (current.key_id if current else None)
        old = next((k for k in keys if k.key_id == old_key_id), None)
        status = self.p.store.get_status(self.spec.name)
        last_rotated = status.last_rotated_at if status else None
        due_at = next_rotation_due(old.created_at if old else None, last_rotated, self.spec.policy)
        now = self.p.clock.now()
        if not self.force and due_at is not None and due_at > now:
            self.p.store.set_status(self.spec.name, CredentialState.OK, now, current_key_id=old_key_id,
                                    key_created_at=old.created_at if old else None, next_due_at=due_at)
            return self._result(Outcome.NOT_DUE, f"not due until {due_at.isoformat()}", key_id=old_key_id)

        journal = Journal(
            rotation_id=str(uuid.uuid4()), credential=self.spec.name, account=self.spec.account,
            user_name=user.name, user_id=user.user_id, prior_key_ids=tuple(sorted(key_ids)),
            old_key_id=old_key_id, phase=Phase.INTENT, started_at=now, updated_at=now,
        )
        self._save(journal)
        self.report.step("intent", f"user {user.name} ({user.user_id}) has {len(keys)} key(s); replacing "
                                   f"{old_key_id or 'nothing'}")
        new_key = self._create(journal, readings)
        journal = self._save(replace(journal, phase=Phase.CREATED, new_key_id=new_key.key_id,
                                     sealed_secret=self.p.sealer.seal(new_key.secret)))
        self.p.store.remember_key(KeyOwner(new_key.key_id, self.spec.name, self.spec.account, user.name,
                                           user.user_id), now, status="Active", created_at=new_key.created_at)
        self.report.event("create_key", "ok", key_ids=(new_key.key_id,))
        self.report.step("create", f"created {new_key.key_id}")
        return self._continue(journal, new_key=new_key, user=user)

    def _create(self, journal: Journal, readings: list[TargetReading]) -> NewAccessKey:
        """CreateAccessKey; on LimitExceeded make room once (never a hard-coded key count)."""
        self._guard()
        try:
            return self.p.iam.create_access_key(journal.user_name)
        except AwsLimitExceeded:
            pass
        keys = self.p.iam.list_access_keys(journal.user_name)
        referenced = {r.held_key_id for r in readings if r.held_key_id}
        if journal.old_key_id:
            referenced.add(journal.old_key_id)
        decision = decide_room(keys, referenced, self._replaced_keys(journal, readings, keys),
                               unknown_references=any(r.key_id_unreadable for r in readings))
        if decision.delete_key_id is None:
            self._save(replace(journal, phase=Phase.ROLLED_BACK, error="no free key slot"))
            reason = decision.hold_reason or "no free key slot"
            self.report.notify("held", f"rotator: {self.spec.name} held", [reason], "warning")
            raise Stop(self._hold(reason))
        self._guard()
        self.p.iam.delete_access_key(journal.user_name, decision.delete_key_id)
        self.report.event("make_room", "ok", key_ids=(decision.delete_key_id,),
                          reason="Inactive, unreferenced and replaced")
        self.report.step("make room", f"deleted {decision.delete_key_id} (Inactive, unreferenced, replaced)")
        remaining = tuple(sorted(k.key_id for k in keys if k.key_id != decision.delete_key_id))
        self._save(replace(journal, prior_key_ids=remaining))
        return self.p.iam.create_access_key(journal.user_name)

    def _replaced_keys(self, journal: Journal, readings: list[TargetReading], keys: list[AccessKey]) -> set[str]:
        """Keys proven replaced: the old key of a published rotation of this very user, or any other key
        when every target is readable and holds the same Active key (each target has moved past it)."""
        replaced = {
            j.old_key_id for j in self.p.store.journals(self.spec.name)
            if j.old_key_id and j.user_id == journal.user_id
            and j.phase in (Phase.PUBLISHED, Phase.RETIRED, Phase.DONE)
        }
        held = {r.held_key_id for r in readings}
        if len(held) == 1 and None not in held:
            current = next((k for k in keys if k.key_id in held and k.status is KeyStatus.ACTIVE), None)
            if current is not None:
                replaced |= {k.key_id for k in keys if k.key_id != current.key_id}
        # A key named in an incident is evidence: making room never deletes it; a human decides.
        return {key_id for key_id in replaced if not self.p.store.incidents_for_key(key_id)}

    # --- resume what an earlier run left ----------------------------------------------------------------
    def _resume(self, journal: Journal) -> Journal | None:
        """Bring an unfinished journal to a state we can continue from; None when it was cleared."""
        self.report.step("recover", f"found rotation {journal.rotation_id[:8]} at phase {journal.phase.value}")
        try:
            user = self.p.iam.get_user(journal.user_name)
        except AwsNotFound:
            raise Stop(self._hold(f"IAM user {journal.user_name} no longer exists; the unfinished rotation "
                                   f"{journal.rotation_id} cannot continue")) from None
        if user.user_id != journal.user_id:
            reason = (f"IAM user {user.name} was recreated (UserId {journal.user_id} → {user.user_id}); "
                      "keys of the old user are not touched")
            self.report.notify("held", f"rotator: {self.spec.name} held", [reason], "warning")
            raise Stop(self._hold(reason))
        keys = {k.key_id: k for k in self.p.iam.list_access_keys(journal.user_name)}
        if journal.phase is Phase.INTENT:
            # CreateAccessKey may have happened without its result being journaled. Ours, provably: a key
            # that was not there at intent time, was created after it, and that no target holds.
            created_after = [k.key_id for k in keys.values() if k.key_id not in journal.prior_key_ids
                             and k.created_at >= journal.started_at - CLOCK_SKEW]
            held = {r.held_key_id for r in self._read_targets() if r.held_key_id} if created_after else set()
            if held & set(created_after):
                raise Stop(self._hold(f"keys {', '.join(sorted(held & set(created_after)))} appeared during an "
                                      "interrupted rotation and a target holds them; a human must check them"))
            orphans = created_after
            for key_id in orphans:
                self._guard()
                self.p.iam.delete_access_key(journal.user_name, key_id)
                self.report.event("delete_orphan", "ok", key_ids=(key_id,))
                self.report.step("roll back", f"deleted {key_id}: created but never journaled")
            self._save(replace(journal, phase=Phase.ROLLED_BACK, error="interrupted before the new key was "
                                                                        "journaled"))
            return None
        if journal.phase in (Phase.CREATED, Phase.VERIFIED) and journal.new_key_id not in keys:
            if not any(t for t in journal.targets_done):
                self._save(replace(journal, phase=Phase.DISCARDED, error="the new key no longer exists"))
                self.report.event("discard_journal", "ok", key_ids=(journal.new_key_id or "",))
                self.report.step("discard", "stale journal: its new key no longer exists")
                return None
            raise Stop(self._fail(f"targets hold {journal.new_key_id}, which IAM no longer has",
                                   hint="run `rotator rotate --force` to publish a fresh key"))
        if journal.phase in (Phase.PUBLISHED, Phase.RETIRED) and journal.old_key_id not in keys:
            self._save(replace(journal, phase=Phase.DONE))
            self.report.step("discard", f"old key {journal.old_key_id} is already gone")
            self._mark_rotated(journal)
            return None
        return journal

    def _continue(self, journal: Journal, *, new_key: NewAccessKey | None = None,
                  user: IamUser | None = None) -> RotationResult:
        if journal.phase in (Phase.CREATED, Phase.VERIFIED):
            new_key = new_key or self._unseal(journal)
            if journal.phase is Phase.CREATED:
                user = user or self.p.iam.get_user(journal.user_name)
                journal = self._verify(journal, new_key, user)
            journal = self._publish(journal, new_key)
        if journal.phase is Phase.PUBLISHED:
            journal = self._retire(journal)
        if journal.phase is Phase.RETIRED:
            journal = self._delete(journal)
        return self._result(Outcome.ROTATED, f"rotated to {journal.new_key_id}", key_id=journal.new_key_id,
                            new_key_id=journal.new_key_id)

    def _unseal(self, journal: Journal) -> NewAccessKey:
        if journal.sealed_secret is None or journal.new_key_id is None:
            raise RotatorError(f"rotation {journal.rotation_id} has no journaled secret for {journal.new_key_id}",
                               hint="run `rotator rotate --force` to start a fresh rotation")
        return NewAccessKey(journal.new_key_id, self.p.sealer.open(journal.sealed_secret), journal.updated_at)

    # --- verify -------------------------------------------------------------------------------------
    def _verify(self, journal: Journal, new_key: NewAccessKey, user: IamUser) -> Journal:
        self._guard()
        accepted, detail = verify_new_key(self.p, new_key, user, self.spec.policy.verify_timeout, self._guard)
        if not accepted:
            self.p.iam.delete_access_key(journal.user_name, new_key.key_id)
            self._save(replace(journal, phase=Phase.ROLLED_BACK, sealed_secret=None, error=detail))
            self.report.event("verify", "failed", key_ids=(new_key.key_id,), reason=detail)
            self.report.event("delete_key", "ok", key_ids=(new_key.key_id,), reason="never verified")
            message = f"{detail}; new key {new_key.key_id} deleted, old key {journal.old_key_id} untouched"
            self.report.notify("failed", f"rotator: {self.spec.name} rotation failed", [message], "warning")
            raise Stop(self._fail(message))
        self.report.event("verify", "ok", key_ids=(new_key.key_id,), detail=detail)
        self.report.step("verify", detail)
        return self._save(replace(journal, phase=Phase.VERIFIED))

    # --- publish ------------------------------------------------------------------------------------
    def _publish(self, journal: Journal, new_key: NewAccessKey) -> Journal:
        expected = {k for k in (journal.old_key_id, new_key.key_id) if k}
        stale: list[str] = []
        drift = False
        for target in self.spec.targets:
            if target.target_id in journal.targets_done:
                continue
            self._guard()
            try:
                reading = read_target(self.p.variables, target)
                problem = check_drift(reading, expected) or missing_variable_error(reading)
                if problem is not None:
                    drift = drift or reading.held_key_id is not None
                    raise problem
                marker = f"{target.target_id}#secret"
                write_pair(self.p.variables, reading, new_key,
                           on_secret_written=functools.partial(self._mark_partial, journal, marker))
            except GitLabError as exc:
                stale.append(str(exc))
                self.report.event("publish", "failed", key_ids=(new_key.key_id,), target=target.label,
                                  error=str(exc))
                continue
            journal = self._save(replace(self._latest(journal),
                                         targets_done=self._latest(journal).targets_done | {target.target_id}))
            self.report.event("publish", "ok", key_ids=(new_key.key_id,), target=target.label)
            self.report.step("publish", f"{target.label}: {target.secret_access_key_var} then "
                                        f"{target.access_key_id_var}")
        journal = self._latest(journal)
        done = {t.target_id for t in self.spec.targets} <= journal.targets_done
        if done:
            now = self.p.clock.now()
            journal = self._save(replace(journal, phase=Phase.PUBLISHED, sealed_secret=None, published_at=now,
                                         hold_reason=None))
            self.p.store.set_status(self.spec.name, CredentialState.ROTATING, now, current_key_id=new_key.key_id,
                                    key_created_at=new_key.created_at)
            retire_at = now + self.spec.policy.grace
            self.report.notify("rotated", f"rotator: {self.spec.name} rotated", [
                f"new key {new_key.key_id} is in {len(self.spec.targets)} GitLab target(s)",
                f"old key {journal.old_key_id or '(none)'} stays Active until {retire_at.isoformat()} (grace)",
            ], "ok")
            return journal
        touched = {t.split("#")[0] for t in journal.targets_done}
        if not touched:
            # No target holds anything new: the new key is ours alone, so undo it.
            self.p.iam.delete_access_key(journal.user_name, new_key.key_id)
            self._save(replace(journal, phase=Phase.ROLLED_BACK, sealed_secret=None, error="; ".join(stale)))
            self.report.event("delete_key", "ok", key_ids=(new_key.key_id,), reason="no target could be written")
            message = "no target could be written: " + "; ".join(stale)
            self.report.notify("failed", f"rotator: {self.spec.name} rotation failed", [message], "warning")
            raise Stop(self._hold(message) if drift else self._fail(message))
        reason = (f"both keys stay Active: {len(stale)} target(s) still hold {journal.old_key_id}: "
                  + "; ".join(stale))
        self._save(replace(journal, hold_reason=reason))
        self.report.notify("held", f"rotator: {self.spec.name} partially rotated, held",
                           [reason, "fix the targets, then run `rotator rotate` to finish"], "warning")
        raise Stop(self._hold(reason, key_id=journal.old_key_id, new_key_id=new_key.key_id))

    def _mark_partial(self, journal: Journal, marker: str) -> None:
        latest = self._latest(journal)
        self._save(replace(latest, targets_done=latest.targets_done | {marker}))

    # --- retire and delete ---------------------------------------------------------------------------
