"""Rotation use cases, ready to run: `rotate` (one or many, `--dry-run`, the emergency fleet run) and the ports
each credential's rotation runs against."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from rotator.domain import CredentialSpec
    from rotator.rotation.fleet import FleetReport
    from rotator.rotation.plan import Plan
    from rotator.rotation.results import RotationPorts, RotationResult
    from rotator.wiring.root import Root

StepCallback = Callable[[str, str, str], None]  # credential, step, detail
ResultCallback = Callable[["RotationResult"], None]
StartCheck = Callable[[str], bool]  # asked before each credential starts; False once the process is stopping
StopCheck = Callable[[], None]  # raises LeaseLost at a journaled point once the process is stopping


class RotationWiring:
    def __init__(self, root: Root) -> None:
        self._root = root

    def ports(self, spec: CredentialSpec) -> RotationPorts:
        from rotator.rotation.results import RotationPorts

        root = self._root
        slack = root.settings.slack
        return RotationPorts(
            iam=root.aws.iam(spec.account), sts=root.aws.sts_for(spec.account), variables=root.gitlab.variables,
            store=root.store, sealer=root.sealer, clock=root.clock, notifier=root.notifier, actor=root.actor,
            security_channel=slack.security_channel if slack else None,
        )

    def schedule_retry(self, result: RotationResult) -> datetime | None:
        """A credential that failed because a party did not answer is tried again with a backoff
        ([service] retry_unreachable_after, doubling, at most retry_unreachable_max); returns when."""
        if result.unreachable is None:
            return None
        from functools import partial

        from rotator.service.scheduling import unreachable_backoff

        service = self._root.settings.service
        delay = partial(unreachable_backoff, first=service.retry_unreachable_after, cap=service.retry_unreachable_max)
        return self._root.database.service_queries.note_unreachable(result.credential, self._root.clock.now(), delay)

    def plan(self, specs: Sequence[CredentialSpec], *, force: bool, emergency: bool = False) -> list[Plan]:
        """`rotate --dry-run`: reads only."""
        from rotator.rotation.plan import plan_rotation

        root = self._root
        return [plan_rotation(spec, iam=root.aws.iam(spec.account), variables=root.gitlab.variables,
                              store=root.store, clock=root.clock, force=force, emergency=emergency)
                for spec in specs]

    def sync_credentials(self) -> None:
        """Make the store know every configured credential and its targets."""
        self._root.store.sync_credentials(self._root.settings.credential_specs(), self._root.clock.now())

    def rotate(self, specs: Sequence[CredentialSpec], *, holder: str, concurrency: int, force: bool,
               on_step: StepCallback | None = None, on_result: ResultCallback | None = None,
               should_start: StartCheck | None = None, interrupt: StopCheck | None = None) -> list[RotationResult]:
        from rotator.rotation.batch import rotate_many

        return rotate_many(specs, self.ports, holder=holder, lease_ttl=self._root.settings.service.lease_ttl,
                           concurrency=concurrency, force=force, on_step=on_step, on_result=on_result,
                           should_start=should_start or (lambda name: True), interrupt=interrupt)

    def recover_others(self, selected: Sequence[CredentialSpec], *, holder: str, on_step: StepCallback | None = None,
                       on_result: ResultCallback | None = None, should_start: StartCheck | None = None,
                       interrupt: StopCheck | None = None) -> list[RotationResult]:
        """Finish (or undo) interrupted rotations of configured credentials not in ``selected``."""
        from rotator.rotation.batch import recover_interrupted

        root = self._root
        return recover_interrupted(root.settings.credential_specs(), selected,
                                   lambda name: root.store.open_journal(name) is not None, self.ports,
                                   holder=holder, lease_ttl=root.settings.service.lease_ttl, on_step=on_step,
                                   on_result=on_result, should_start=should_start, interrupt=interrupt)

    def fleet(self, specs: Sequence[CredentialSpec], *, holder: str, concurrency: int, force: bool, scope: str,
              emergency: bool = False, on_step: StepCallback | None = None,
              on_result: ResultCallback | None = None, should_start: StartCheck | None = None,
              interrupt: StopCheck | None = None) -> FleetReport:
        """The fleet run (`--all`, `--emergency`): batched owner digests, one security summary, Slack paced."""
        from rotator.rotation.fleet import FleetOptions, PacedNotifier, rotate_fleet

        root = self._root
        settings = root.settings
        notifier = root.notifier
        options = FleetOptions(holder=holder, lease_ttl=settings.service.lease_ttl, concurrency=concurrency,
                               force=force or emergency, emergency=emergency, scope=scope, actor=root.actor,
                               security_channel=settings.slack.security_channel if settings.slack else None)
        paced = PacedNotifier(notifier, root.pacers.get("slack")) if notifier is not None else None
        return rotate_fleet(specs, self.ports, options, clock=root.clock, store=root.store, notifier=paced,
                            buckets=lambda: [bucket.stats() for bucket in root.pacers.all().values()],
                            on_step=on_step, on_result=on_result, should_start=should_start, interrupt=interrupt)
