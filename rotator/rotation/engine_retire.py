"""The last phases of the protocol: after the grace period retire the old key, after delete_after delete it.

The old key is deactivated only if no target still holds it and its LastUsedDate has not moved since the
new key was published (allowing for AWS's reporting skew); otherwise the credential is held and the
owners are told who still uses it.
"""

from __future__ import annotations

from dataclasses import replace

from rotator.domain import CredentialState, Journal, Phase
from rotator.rotation.engine_base import RotationBase, Stop
from rotator.rotation.results import Outcome


class RetireSteps(RotationBase):
    def _retire(self, journal: Journal) -> Journal:
        assert journal.published_at is not None
        if journal.old_key_id is None:
            return self._finish(journal)
        now = self.p.clock.now()
        retire_at = journal.published_at + self.spec.policy.grace
        if now < retire_at:
            raise Stop(self._result(Outcome.WAITING, f"grace period: {journal.old_key_id} retires at "
                                                      f"{retire_at.isoformat()}", key_id=journal.new_key_id))
        self._guard()
        still = [r.target.label for r in self._read_targets() if r.held_key_id == journal.old_key_id]
        if still:
            raise Stop(self._hold(f"not deactivating {journal.old_key_id}: still held by {', '.join(still)}"))
        used = self.p.iam.get_access_key_last_used(journal.old_key_id)
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
                raise Stop(self._hold(reason, key_id=journal.new_key_id))
        self._guard()
        self.p.iam.set_access_key_status(journal.user_name, journal.old_key_id, active=False)
        self.report.event("deactivate_key", "ok", key_ids=(journal.old_key_id,))
        self.report.step("retire", f"deactivated {journal.old_key_id}")
        return self._save(replace(journal, phase=Phase.RETIRED, deactivated_at=now, hold_reason=None))

    def _delete(self, journal: Journal) -> Journal:
        assert journal.deactivated_at is not None and journal.old_key_id is not None
        if self.p.store.incidents_for_key(journal.old_key_id):
            # A compromised key stays Inactive as evidence (DESIGN §3.6): `revoke --replace` rotates through
            # this protocol, and a later run resuming its journal must not delete the key either.
            self.report.event("keep_key", "ok", key_ids=(journal.old_key_id,), reason="evidence of an incident")
            self.report.step("keep", f"{journal.old_key_id} stays Inactive as evidence of an incident")
            return self._finish(journal)
        now = self.p.clock.now()
        delete_at = journal.deactivated_at + self.spec.policy.delete_after
        if now < delete_at:
            raise Stop(self._result(Outcome.WAITING, f"{journal.old_key_id} is Inactive; deleted at "
                                                      f"{delete_at.isoformat()}", key_id=journal.new_key_id))
        self._guard()
        self.p.iam.delete_access_key(journal.user_name, journal.old_key_id)
        self.report.event("delete_key", "ok", key_ids=(journal.old_key_id,))
        self.report.step("delete", f"deleted {journal.old_key_id}")
        return self._finish(journal)

    def _finish(self, journal: Journal) -> Journal:
        journal = self._save(replace(journal, phase=Phase.DONE, sealed_secret=None))
        self._mark_rotated(journal)
        return journal

    def _mark_rotated(self, journal: Journal) -> None:
        rotated_at = journal.published_at or self.p.clock.now()
        self.p.store.set_status(self.spec.name, CredentialState.OK, self.p.clock.now(),
                                current_key_id=journal.new_key_id, last_rotated_at=rotated_at,
                                next_due_at=rotated_at + self.spec.policy.rotate_every)

