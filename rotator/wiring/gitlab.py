"""GitLab: one paced python-gitlab client, one capability probe (kept a day), and the ports built on them
(CI variables, the inventory walk)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rotator.wiring.lazy import Lazy

if TYPE_CHECKING:
    from rotator.adapters.gitlab import GitLabVariables
    from rotator.adapters.gitlab_capabilities import CapabilityProbe
    from rotator.adapters.gitlab_inventory import GitLabInventory
    from rotator.adapters.gitlab_refs import GitLabProtectedRefs
    from rotator.config.sections import GitLabSettings
    from rotator.domain import Secret
    from rotator.ratelimit import Pacer


class GitLabParty:
    def __init__(self, section: Callable[[], GitLabSettings], token: Callable[[], Secret],
                 pacer: Callable[[], Pacer]) -> None:
        """Each argument is read only when GitLab is first needed: a command that never talks to GitLab never
        needs a [gitlab] section or its token."""
        self._section = section
        self._token = token
        self._pacer = pacer
        self._client: Lazy[Any] = Lazy(self._connect)
        self._probe: Lazy[CapabilityProbe] = Lazy(self._build_probe)
        self._variables: Lazy[GitLabVariables] = Lazy(self._build_variables)
        self._inventory: Lazy[GitLabInventory] = Lazy(self._build_inventory)

    @property
    def client(self) -> Any:
        """The python-gitlab client (gitlab.Gitlab), every request held to [gitlab] requests_per_second."""
        return self._client.get()

    @property
    def variables(self) -> GitLabVariables:
        return self._variables.get()

    @property
    def inventory(self) -> GitLabInventory:
        return self._inventory.get()

    @property
    def protected_refs(self) -> GitLabProtectedRefs:
        from rotator.adapters.gitlab_refs import GitLabProtectedRefs

        return GitLabProtectedRefs(self.client)

    def _connect(self) -> Any:
        from rotator.adapters.gitlab import connect

        section = self._section()
        return connect(section.url, self._token(), timeout=section.timeout.total_seconds(),
                       ssl_verify=section.ca_file or True, pacer=self._pacer())

    def _build_probe(self) -> CapabilityProbe:
        from rotator.adapters.gitlab_capabilities import CapabilityProbe

        return CapabilityProbe(self.client)

    def _build_variables(self) -> GitLabVariables:
        from rotator.adapters.gitlab import GitLabVariables

        return GitLabVariables(self.client, pacer=self._pacer(), capabilities=self._probe.get().capabilities)

    def _build_inventory(self) -> GitLabInventory:
        from rotator.adapters.gitlab_inventory import GitLabInventory

        return GitLabInventory(self.client, capabilities=self._probe.get().capabilities)
