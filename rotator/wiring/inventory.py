"""Discovery, ready to run: read-only ports (GitLab listings, the key locator, each account's IAM reads)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotator.inventory.discover import DiscoveryPorts
    from rotator.wiring.root import Root


class InventoryWiring:
    def __init__(self, root: Root) -> None:
        self._root = root

    def discovery_ports(self) -> DiscoveryPorts:
        from rotator.inventory.discover import DiscoveryPorts

        root = self._root
        return DiscoveryPorts(inventory=root.gitlab.inventory, locator=root.aws.locator(paced=True),
                              iam_for=root.aws.iam, clock=root.clock)
