"""How far discovery can see, from the GitLab capability probe: pure rules, no I/O.

- A token with working admin access walks every group and project, and the instance's variables.
- Any other token walks exactly what it can read: groups where its user is Owner, projects where it is
  Maintainer. For a regular user that is the whole of its reach, so coverage can be complete.
- An administrator's token without admin mode (the instance enables admin mode and the token lacks the
  ``admin_mode`` scope) is answered as a regular user: private groups and projects it is no member of, and the
  instance variables, are out of reach. The walk then covers memberships only and the report says so, with
  the fix, instead of letting them vanish silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from rotator.domain import GitLabCapabilities

ADMIN_MODE_FIX = ("create a token with the admin_mode scope (as well as api or read_api) for this administrator, "
                  "and run discover again")


@dataclass(frozen=True)
class Reach:
    capabilities: GitLabCapabilities
    everything: bool  # every group and project of the instance, and the instance's variables
    limitation: str | None = None  # why the walk misses what an administrator should see, with the fix

    def describe(self) -> str:
        who = self.capabilities.username
        if self.everything:
            return f"every group and project, and the instance variables (administrator {who})"
        return f"the groups where {who} is Owner and the projects where {who} is Maintainer"


def reach_of(capabilities: GitLabCapabilities) -> Reach:
    if capabilities.admin_access:
        return Reach(capabilities, everything=True)
    if capabilities.admin_mode_missing:
        return Reach(capabilities, everything=False, limitation=(
            f"walk limited to memberships: {capabilities.admin_state()}, so GitLab answers it as a regular "
            f"user and hides the groups and projects it is not a member of, and the instance variables "
            f"(next step: {ADMIN_MODE_FIX})"))
    return Reach(capabilities, everything=False)
