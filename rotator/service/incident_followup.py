"""The service's incident follow-up: every open incident whose follow-up time has come is re-audited.

CloudTrail delivers events minutes late, so `revoke` leaves its incident open; this job (its own APScheduler
job, beside the tick, so a slow audit never delays a rotation) runs rotator.incident.reaudit for each one that
is due, under a per-incident lease so that one replica does it. Each incident fails on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from rotator.errors import RotatorError
from rotator.incident.reaudit import ReauditOutcome, due_incidents, reaudit

if TYPE_CHECKING:
    from rotator.wiring.root import Root

log = structlog.get_logger("rotator.service.incidents")


def follow_up_due_incidents(root: Root, holder: str, *,
                            stop_requested: Callable[[], bool] = lambda: False) -> list[ReauditOutcome]:
    """Re-audit the incidents that are due now; the outcomes of those done (busy ones included)."""
    try:
        due = due_incidents(root.store, root.clock.now())
    except RotatorError as exc:
        log.warning("open incidents not read", error=str(exc))
        return []
    outcomes: list[ReauditOutcome] = []
    for incident in due:
        if stop_requested():
            break
        try:
            outcome = reaudit(root.incident.reaudit_ports(holder=holder), incident.incident_id)
        except RotatorError as exc:
            log.warning("incident follow-up failed", incident=incident.incident_id, key=incident.key_id,
                        error=str(exc))
            continue
        after = outcome.incident
        log.info("incident followed up", incident=after.incident_id, key=after.key_id, busy=outcome.busy,
                 added=len(outcome.added), closed=outcome.closed,
                 next=after.follow_up_at.isoformat() if after.follow_up_at else None,
                 not_cut=len(outcome.not_cut), gaps_left=len(outcome.remaining_gaps))
        outcomes.append(outcome)
    return outcomes
