"""Slack: the notifier, or None when the config has no [slack] section."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rotator.wiring.lazy import Lazy

if TYPE_CHECKING:
    from rotator.adapters.slack import SlackNotifier
    from rotator.config.sections import SlackSettings
    from rotator.domain import Secret


class SlackParty:
    def __init__(self, section: Callable[[], SlackSettings | None], token: Callable[[], Secret]) -> None:
        self._section = section
        self._token = token
        self._notifier: Lazy[SlackNotifier | None] = Lazy(self._build)

    @property
    def notifier(self) -> SlackNotifier | None:
        return self._notifier.get()

    def whoami(self) -> str:
        notifier = self.notifier
        if notifier is None:
            return "no [slack] section"
        who = notifier.auth_test()
        return f"bot {who.get('user')} in team {who.get('team')}"

    def _build(self) -> SlackNotifier | None:
        section = self._section()
        if section is None:
            return None
        from rotator.adapters.slack import SlackNotifier, connect

        return SlackNotifier(connect(self._token(), section.api_url, timeout=section.timeout.total_seconds()))
