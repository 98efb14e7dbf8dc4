"""Settings, built once at the entry point and passed down (never read from os.environ deeper in).

Defaults are the embedded ones: a SQLite file in the user data dir and ``memory://``
(checks run in-process). Production sets ``URLTESTER_DATABASE_URL=postgresql://…`` and
``URLTESTER_BROKER_URL=amqp://…``.

The variables' names live here (``ENV``). The ``runner`` command reads them through its
options' ``envvar=`` (so ``--help`` lists each beside its option) and hands the values to
:func:`build`; :func:`from_env` reads the same names from a mapping, for library use and tests.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.errors import ConfigError
from runner.jobs.regions import DEFAULT_REGION, validate_region
from runner.text import mask_url as mask_password
from runner.text import url_password

BROKER_SCHEMES = ("amqp", "amqps", "pyamqp", "memory")
DATABASE_SCHEMES = ("postgresql", "postgres", "sqlite")

DEFAULT_QUEUE = "urltester"


def default_database_url() -> str:
    """The embedded default: a SQLite file in the user data dir, which is made here (the
    store creates no folder for a path someone typed)."""
    from platformdirs import user_data_dir

    folder = Path(user_data_dir("urltester"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # opening the store says what is wrong with it, in one line
    return "sqlite:///" + str(folder / "urltester.db")


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=default_database_url)
    broker_url: str = "memory://"
    queue: str = DEFAULT_QUEUE
    deny_private: bool = False
    allow_networks: tuple[str, ...] = ()
    publish_timeout: float = 30.0  # seconds a publish keeps retrying a lost broker before failing
    region: str = DEFAULT_REGION  # the region a worker checks from (runner start --region)
    no_worker_after: float = 60.0  # seconds before a named region with no live worker is no_worker
    host_rate: float | None = None  # checks/s per host, fleet-wide, unless `runner limits` says otherwise
    host_connections: int | None = None  # checks at once per host, fleet-wide
    timezone: str = ""  # IANA name for times shown as local (the old /api/get_jobs); "": the machine's

    @property
    def zone(self) -> ZoneInfo | None:
        """The time zone of ``timezone``; None: the machine's own."""
        return ZoneInfo(self.timezone) if self.timezone else None

    @property
    def immediate(self) -> bool:
        """True on the embedded broker (``memory://``): checks run in this process."""
        from runner.taskq.memory import is_memory_url

        return is_memory_url(self.broker_url)

    @property
    def database_shown(self) -> str:
        return mask_password(self.database_url)

    @property
    def broker_shown(self) -> str:
        return mask_password(self.broker_url)

    def with_(self, **changes: Any) -> Settings:
        return validated(replace(self, **{k: v for k, v in changes.items() if v is not None}))


#: Settings field -> its environment variable (the one list of names).
ENV = {
    "database_url": "URLTESTER_DATABASE_URL",
    "broker_url": "URLTESTER_BROKER_URL",
    "queue": "URLTESTER_QUEUE",
    "deny_private": "URLTESTER_DENY_PRIVATE",
    "allow_networks": "URLTESTER_ALLOW_NETWORKS",
    "publish_timeout": "URLTESTER_PUBLISH_TIMEOUT",
    "timezone": "URLTESTER_TIMEZONE",
}


def build(**values: object) -> Settings:
    """Settings from explicit values (None: the default), validated; strings stripped."""
    values = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items() if v is not None}
    return validated(Settings(**values))  # type: ignore[arg-type]  # values of several types; validated() checks them


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from ``URLTESTER_*`` variables, then explicit overrides."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name in ("database_url", "broker_url", "queue"):
        if env.get(ENV[name]):
            values[name] = env[ENV[name]]
    if env.get("URLTESTER_DENY_PRIVATE"):
        values["deny_private"] = env["URLTESTER_DENY_PRIVATE"].strip().lower() in ("1", "true", "yes", "on")
    if env.get("URLTESTER_ALLOW_NETWORKS"):
        values["allow_networks"] = tuple(n.strip() for n in env["URLTESTER_ALLOW_NETWORKS"].split(",") if n.strip())
    if env.get("URLTESTER_PUBLISH_TIMEOUT"):
        try:
            values["publish_timeout"] = float(env["URLTESTER_PUBLISH_TIMEOUT"])
        except ValueError:
            raise ConfigError(f"URLTESTER_PUBLISH_TIMEOUT={env['URLTESTER_PUBLISH_TIMEOUT']!r} is not a number of "
                              "seconds") from None
    values.update(worker_env(env))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build(**values)


def worker_env(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """The settings with no global ``runner`` option, from their variables: a worker's region,
    the no-worker bound, the fleet-wide host limits, the time zone of local times (each command that uses one also takes
    it as an option, with the same variable)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    if env.get("URLTESTER_REGION"):
        values["region"] = env["URLTESTER_REGION"].strip()
    if env.get(ENV["timezone"], "").strip():
        values["timezone"] = env[ENV["timezone"]].strip()
    if env.get("URLTESTER_NO_WORKER_AFTER"):
        try:
            values["no_worker_after"] = float(env["URLTESTER_NO_WORKER_AFTER"])
        except ValueError:
            raise ConfigError(f"URLTESTER_NO_WORKER_AFTER={env['URLTESTER_NO_WORKER_AFTER']!r} is not a number of "
                              "seconds") from None
    for name, key, kind in (("URLTESTER_HOST_RATE", "host_rate", float),
                            ("URLTESTER_HOST_CONNECTIONS", "host_connections", int)):
        if env.get(name, "").strip():
            try:
                values[key] = kind(env[name].strip())
            except ValueError:
                raise ConfigError(
                    f"{name}={env[name]!r} is not a {'number' if kind is float else 'whole number'}") from None
    return values


def validated(settings: Settings) -> Settings:
    """The same settings, or ConfigError with one line naming the bad one (password masked)."""
    _validate_url("database URL (URLTESTER_DATABASE_URL)", settings.database_url, DATABASE_SCHEMES)
    _validate_url("broker URL (URLTESTER_BROKER_URL)", settings.broker_url, BROKER_SCHEMES)
    if not settings.queue or len(settings.queue) > 200 or any(c.isspace() for c in settings.queue):
        raise ConfigError(f"queue name {settings.queue!r} is not usable (1-200 characters, no spaces)")
    if validate_region(settings.region, "region (URLTESTER_REGION, --region)") != settings.region:
        raise ConfigError(f"region (URLTESTER_REGION, --region) {settings.region!r}: use lowercase")
    if not 0 < settings.no_worker_after <= 86400:
        raise ConfigError(f"no-worker wait {settings.no_worker_after:g} s (URLTESTER_NO_WORKER_AFTER) "
                          "must be more than 0 and at most 86400 seconds")
    if settings.host_rate is not None and not (0 < settings.host_rate <= 1e6):
        raise ConfigError(f"host rate {settings.host_rate!r} (URLTESTER_HOST_RATE, --host-rate): "
                          "checks per second per host must be more than 0")
    if settings.host_connections is not None and not (0 < settings.host_connections <= 1e6):
        raise ConfigError(f"host connections {settings.host_connections!r} (URLTESTER_HOST_CONNECTIONS, "
                          "--host-connections): checks at once per host must be at least 1")
    if settings.timezone:
        try:
            ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ConfigError(f"time zone {settings.timezone!r} (URLTESTER_TIMEZONE, --timezone) is not a known "
                              "time zone: use an IANA name such as Europe/Paris or UTC") from None
    for net in settings.allow_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise ConfigError(f"allowed network {net!r} (--allow-network, URLTESTER_ALLOW_NETWORKS) is not a network: "
                              f"{exc}") from exc
    return settings


def _validate_url(what: str, url: str, schemes: tuple[str, ...]) -> None:
    # Judged with the password masked: a '#', '?' or '/' in it would otherwise end the
    # authority early for urlsplit, which then quotes part of the password as a bad port.
    shown = mask_password(url)
    try:
        parts = urlsplit(shown)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{what} {shown} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in schemes:
        raise ConfigError(
            f"{what} {mask_password(url)} has unsupported scheme {parts.scheme or '(none)'!r}; "
            f"expected one of: {', '.join(s + '://' for s in schemes)}"
        )
    password = url_password(url)
    try:
        seen = urlsplit(url).password
    except ValueError:  # e.g. a '[' in the password: "Invalid IPv6 URL"
        seen = None
    if password is not None and what.startswith("broker") and seen != password:
        # libpq reads such a password; kombu (urllib) cannot, so it must be encoded.
        raise ConfigError(f"{what} {shown}: a password with '#', '?', '/', '[' or ']' must be percent-encoded "
                          "(%23, %3F, %2F, %5B, %5D)")
