"""`rotator check`: validate the config, then one harmless call to each outside party."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import click

from rotator.cli.common import cli_logging, config_option, handle_errors, json_option, print_json
from rotator.errors import RotatorError


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ok: bool
    detail: str


def _probe(name: str, call: Callable[[], str]) -> ProbeResult:
    try:
        return ProbeResult(name, True, call())
    except RotatorError as exc:  # every adapter failure is typed; report it and go on to the next probe
        return ProbeResult(name, False, str(exc))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@json_option
@handle_errors
def check(config_path: str | None, as_json: bool) -> None:
    """Validate the config, then probe each outside party with one harmless call.

    \b
    Probes: the database (reachable, schema at head); STS GetCallerIdentity for every
    AWS account; GitLab GET /user and each target's variable list; Slack auth.test.
    Nothing is written anywhere. Prints ✔ or ✘ per probe with the reason.

    \b
    Exit codes: 0 every probe passed; 1 a probe failed; 2 config error (before any call).

    \b
    Example:
      ROTATOR_GITLAB_TOKEN=glpat-... rotator check --config /etc/rotator/rotator.toml
    """
    from rotator.config.settings import load_settings
    from rotator.wiring.root import Wiring

    settings = load_settings(config_path)
    cli_logging()
    wiring = Wiring(settings)
    wiring.resolve_secrets(state_key=False)  # every missing secret is exit 2 before the first call
    results = run_probes(wiring)
    if as_json:
        print_json({"ok": all(r.ok for r in results),
                    "probes": [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in results]})
    else:
        for r in results:
            mark = click.style("✔", fg="green") if r.ok else click.style("✘", fg="red")
            click.echo(f"{mark} {r.name}: {r.detail}")
    sys.exit(0 if all(r.ok for r in results) else 1)


def run_probes(wiring: object) -> list[ProbeResult]:
    from rotator.adapters.aws import caller_identity
    from rotator.adapters.gitlab import current_user
    from rotator.wiring.root import Wiring

    assert isinstance(wiring, Wiring)
    settings = wiring.settings
    results: list[ProbeResult] = []

    def database() -> str:
        from rotator.adapters.db.store import redact_url

        wiring.store.list_statuses()
        return f"{redact_url(settings.service.database_url)} reachable, schema at head"

    results.append(_probe("database", database))
    for account in settings.account_names():
        def sts(account: str = account) -> str:
            who = caller_identity(wiring.aws.client("sts", account))
            return f"account {who['account']} as {who['arn']}"

        results.append(_probe(f"aws[{account}] sts:GetCallerIdentity", sts))

    def gitlab_user() -> str:
        user = current_user(wiring.gitlab_client)
        admin = " (administrator)" if user.get("is_admin") else ""
        return f"token of {user.get('username')}{admin} at {settings.require_gitlab().url}"

    results.append(_probe("gitlab GET /user", gitlab_user))
    seen: set[tuple[str, str | None]] = set()
    for spec in settings.credential_specs():
        for target in spec.targets:
            if (target.kind.value, target.path) in seen:
                continue
            seen.add((target.kind.value, target.path))

            def variables(kind=target.kind, path=target.path) -> str:  # type: ignore[no-untyped-def]
                found = wiring.variables.list(kind, path)
                return f"{len(found)} variable(s) readable"

            where = "instance" if target.path is None else f"{target.kind.value} {target.path}"
            results.append(_probe(f"gitlab variables of {where}", variables))
    if wiring.notifier is not None:
        notifier = wiring.notifier

        def slack() -> str:
            who = notifier.auth_test()
            return f"bot {who.get('user')} in team {who.get('team')}"

        results.append(_probe("slack auth.test", slack))
    return results
