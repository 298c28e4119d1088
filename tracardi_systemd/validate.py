"""What Tracardi's workers need from the env file, checked against how Tracardi reads it.

Every rule encodes a fact of Tracardi 0.8.1's own config code (see docs/design.md), so
that a setting that would silently misbehave at 3 a.m. is an error at install time.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from urllib.parse import urlsplit

from tracardi_systemd.catalog import Worker
from tracardi_systemd.dependencies import DEFAULT_REDIS_PORT, elastic_urls, split_redis_host
from tracardi_systemd.envfile import EnvFile
from tracardi_systemd.problems import Problem, error, warning
from tracardi_systemd.secrets import LICENSE_NAMES, is_secret, shown

LOGGING_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def validate(env: EnvFile, workers: Iterable[Worker]) -> list[Problem]:
    """Every problem of the file for the selected workers: syntax first, then settings."""
    workers = tuple(workers)
    checker = _Checker(env)
    checker.placeholders()
    checker.required(workers)
    checker.redis(workers)
    checker.elastic()
    checker.logging_level()
    checker.permissions()
    return env.problems + checker.problems


def license_value(values: dict[str, str]) -> str | None:
    """The license as the commercial containers will receive it (LICENSE wins)."""
    for name in LICENSE_NAMES:
        if values.get(name):
            return values[name]
    return None


class _Checker:
    def __init__(self, env: EnvFile):
        self.env = env
        self.values = env.values
        self.file = str(env.path)
        self.problems: list[Problem] = []

    def _error(self, key: str | None, message: str) -> None:
        self.problems.append(error(self.file, self.env.line_of(key) if key else None, message))

    def _warning(self, key: str | None, message: str) -> None:
        self.problems.append(warning(self.file, self.env.line_of(key) if key else None, message))

    def placeholders(self) -> None:
        """Tracardi's docs write `<redis-ip>` and `paste license here` in their examples."""
        for key, value in self.values.items():
            lowered = value.lower()
            if "paste license here" in lowered or (value.startswith("<") and ">" in value):
                self._error(key, (
                    f"{key} still holds the placeholder {shown(key, value)} from Tracardi's "
                    "documentation: put the real value in"
                ))

    def required(self, workers: tuple[Worker, ...]) -> None:
        needed: dict[str, list[str]] = {}
        for worker in workers:
            for name in worker.needs:
                needed.setdefault(name, []).append(worker.unit_base)
        for name, units in needed.items():
            if not self.values.get(name, "").strip():
                self._error(name if name in self.values else None, (
                    f"{name} is not set; {', '.join(units)} need(s) it: add {name}=... to the file"
                ))
        commercial = [w.unit_base for w in workers if w.commercial]
        licenses = {n: self.values[n] for n in LICENSE_NAMES if self.values.get(n)}
        if commercial and not licenses:
            self._error(None, (
                f"no license: the commercial workers ({', '.join(commercial)}) need "
                "API_LICENSE=... (or LICENSE=...) in the file"
            ))
        if len(set(licenses.values())) > 1:
            self._error("API_LICENSE", (
                "LICENSE and API_LICENSE are both set and differ; the containers would get "
                "LICENSE: keep only one of them"
            ))

    def redis(self, workers: tuple[Worker, ...]) -> None:
        host = self.values.get("REDIS_HOST", "").strip()
        if not host:
            return
        port = self.values.get("REDIS_PORT", "").strip()
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            self._error("REDIS_PORT", f"REDIS_PORT={port!r} is not a port number (1-65535)")
            return
        if host.lower().startswith("rediss://"):
            self._error("REDIS_HOST", (
                "REDIS_HOST starts with rediss://, but Tracardi 0.8.1 strips the scheme and "
                "connects in plain TCP without TLS: write the bare host name, and use a TLS "
                "tunnel if Redis must be reached over TLS"
            ))
        name, host_port = split_redis_host(host)
        if "@" in name + host_port:  # never repeat it: the part before '@' is a password
            self._error("REDIS_HOST", (
                "REDIS_HOST holds credentials (...@host), which Tracardi does not read from "
                "there: write only the host in REDIS_HOST and the password in REDIS_PASSWORD"
            ))
            return
        if host_port and not host_port.isdigit():
            self._error("REDIS_HOST", f"REDIS_HOST={shown('REDIS_HOST', host)}: "
                        f"{host_port!r} after ':' is not a port number")
            return
        port_readers = {w.redis_port_from for w in workers if w.needs_redis}
        default_port = str(DEFAULT_REDIS_PORT)
        effective_port = port or default_port
        if host_port and "REDIS_PORT" in port_readers and host_port != effective_port:
            self._error("REDIS_HOST", (
                f"REDIS_HOST has port {host_port}, but Tracardi's core config drops "
                f"everything after ':' and takes the port from REDIS_PORT "
                f"(now {effective_port}): set REDIS_PORT={host_port}"
            ))
        if "REDIS_HOST" in port_readers and not host_port and effective_port != default_port:
            self._error("REDIS_HOST", (
                f"the update worker (0.8.1) takes the Redis port only from REDIS_HOST and "
                f"ignores REDIS_PORT={effective_port}: write REDIS_HOST={name}:{effective_port} "
                f"(core workers ignore the ':{effective_port}' and keep using REDIS_PORT)"
            ))

    def elastic(self) -> None:
        for url in elastic_urls(self.values.get("ELASTIC_HOST", "")):
            try:
                parts = urlsplit(url)
                valid = parts.scheme in ("http", "https") and bool(parts.hostname)
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                valid = False
            if not valid:
                self._error("ELASTIC_HOST", (
                    f"ELASTIC_HOST entry {shown('ELASTIC_HOST', url)!r} is not an http(s) URL: "
                    "write a comma-separated list such as "
                    "ELASTIC_HOST=http://10.0.0.5:9200,http://10.0.0.6:9200"
                ))
        user = self.values.get("ELASTIC_HTTP_AUTH_USERNAME", "")
        password = self.values.get("ELASTIC_HTTP_AUTH_PASSWORD", "")
        if bool(user) != bool(password):
            missing = "ELASTIC_HTTP_AUTH_PASSWORD" if user else "ELASTIC_HTTP_AUTH_USERNAME"
            present = "ELASTIC_HTTP_AUTH_USERNAME" if user else "ELASTIC_HTTP_AUTH_PASSWORD"
            self._warning(present, (
                f"{present} is set but {missing} is not: Tracardi uses authentication only "
                "when both are set, so it will connect without any"
            ))
        verify = self.values.get("ELASTIC_VERIFY_CERTS")
        if verify is not None and verify != "yes" and verify.lower() in ("true", "1", "on", "y"):
            self._warning("ELASTIC_VERIFY_CERTS", (
                f"ELASTIC_VERIFY_CERTS={verify} means false to Tracardi (only 'yes' means "
                "true): write ELASTIC_VERIFY_CERTS=yes to verify certificates"
            ))

    def logging_level(self) -> None:
        level = self.values.get("LOGGING_LEVEL", "").strip()
        if level and level.upper() not in LOGGING_LEVELS:
            self._error("LOGGING_LEVEL", (
                f"LOGGING_LEVEL={level!r} is not a level: use one of {', '.join(LOGGING_LEVELS)}"
            ))

    def permissions(self) -> None:
        try:
            mode = self.env.path.stat().st_mode
        except OSError:
            return
        secrets = sorted(k for k in self.values if is_secret(k))
        if secrets and mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
            self._warning(None, (
                f"the file holds secrets ({', '.join(secrets)}) and other users can read it "
                f"(mode {stat.S_IMODE(mode):04o}): run  chmod 600 {self.file}  "
                "(install writes its copy 0600)"
            ))
