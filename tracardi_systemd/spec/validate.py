"""What Tracardi's workers need from the env file, checked against how Tracardi reads it.

Every rule encodes a fact of Tracardi's own config code (see docs/design.md), read from
the catalog where releases differ, so that a setting that would silently misbehave at
3 a.m. is an error at install time.
"""

from __future__ import annotations

import difflib
import re
import stat
from collections.abc import Iterable
from urllib.parse import urlsplit

from tracardi_systemd.spec.addresses import (
    DEFAULT_MYSQL_PORT,
    DEFAULT_PULSAR_PORT,
    DEFAULT_REDIS_PORT,
    elastic_entries,
    elastic_url,
    has_own_loopback,
    loopback_settings,
    split_redis_host,
)
from tracardi_systemd.spec.catalog import CATALOG, MYSQL, PULSAR, REDIS, Worker, known_settings
from tracardi_systemd.spec.envfile import EnvFile
from tracardi_systemd.spec.problems import Problem, error, warning
from tracardi_systemd.spec.releases import foreign_settings, readers, span
from tracardi_systemd.spec.secrets import LICENSE_NAMES, is_secret, shown

# Tracardi maps these (upper-cased) names; an unknown name silently falls back.
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR")
LOGGING_LEVEL_MAPPED = {"CRITICAL": "WARNING"}
# Placeholders of Tracardi's documentation: <redis-ip>, <elastic-ip>, "paste license here".
_PLACEHOLDER = re.compile(r"<[^<>]*>|paste .* here|your[-_ ]license", re.IGNORECASE)


def validate(env: EnvFile, workers: Iterable[Worker], version: str | None = None,
             network: str | None = "host") -> list[Problem]:
    """Every problem of the file for the selected workers of a release, whose containers
    run on `network` (None: Docker's default bridge): syntax first, then settings."""
    workers = tuple(workers)
    checker = _Checker(env)
    if version is not None:
        checker.release(version)
    checker.loopback(workers, network)
    checker.placeholders()
    checker.required(workers)
    checker.redis(workers)
    checker.elastic()
    checker.mysql(workers)
    checker.pulsar(workers)
    checker.logging_level(workers)
    checker.permissions()
    return env.problems + checker.problems


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

    def release(self, version: str) -> None:
        """Settings of other releases are an error (the file is for another release); names
        no release reads are a warning with the nearest setting of this one (a typo)."""
        foreign = foreign_settings(self.values, version)
        if foreign:
            fitting = sorted({v for name in foreign for v in readers(name)},
                             key=list(CATALOG).index)
            self._error(foreign[0], (
                f"{', '.join(foreign)}: settings that Tracardi {span(fitting)} read, not "
                f"{version}: is the file for another release? Choose it with "
                "--tracardi-version, or remove them"))
        known = known_settings(version)
        for name in self.values:
            if name in known or name in foreign:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            self._warning(name, (
                f"{name}: did you mean {close[0]}? ({name} is no setting Tracardi {version} "
                "reads)" if close else
                f"{name} is no setting Tracardi {version} reads (the workers get it anyway)"))

    def loopback(self, workers: tuple[Worker, ...], network: str | None) -> None:
        """A container on a network of its own has its own loopback: 127.0.0.1 is the
        worker itself there, not the host where Redis listens."""
        if not has_own_loopback(network):
            return
        read = [key for w in workers for key in w.required_settings]
        where = f"the network {network!r}" if network else "Docker's default bridge network"
        for key in loopback_settings(self.values, read):
            self._error(key, (
                f"{key}={shown(key, self.values[key])} is a loopback address, which on "
                f"{where} is the worker's own container, not this host: the worker would "
                "never reach it. Install with --network host, or write the host's address "
                "as the containers see it (e.g. the docker0 bridge's, with the service "
                "listening there)"))

    def placeholders(self) -> None:
        """Tracardi's docs write `redis://<redis-ip>:6379` and `paste license here`."""
        for key, value in self.values.items():
            if _PLACEHOLDER.search(value):
                self._error(key, (
                    f"{key} still holds the placeholder {shown(key, value)} from Tracardi's "
                    "documentation: put the real value in"
                ))

    def required(self, workers: tuple[Worker, ...]) -> None:
        needed: dict[str, list[str]] = {}
        for worker in workers:
            for name in worker.required_settings:
                needed.setdefault(name, []).append(worker.unit_base)
        for name, units in needed.items():
            if not self.values.get(name, "").strip():
                self._error(name if name in self.values else None, (
                    f"{name} is not set; {', '.join(units)} need(s) it: add {name}=... to the file"
                ))
        commercial = [w.unit_base for w in workers if w.commercial]
        licenses = {n: self.values[n] for n in LICENSE_NAMES if self.values.get(n)}
        if commercial and not licenses:
            free = [w.name for w in workers if not w.commercial]
            hint = (f"; on a host for the open-source worker alone, select it with "
                    f"{' '.join('--worker ' + n for n in free)}") if free else ""
            self._error(None, (
                f"no license: the commercial workers ({', '.join(commercial)}) need "
                f"API_LICENSE=... (or LICENSE=...) in the file{hint}"
            ))
        if len(set(licenses.values())) > 1:
            self._error("API_LICENSE", (
                "LICENSE and API_LICENSE are both set and differ; the containers would get "
                "LICENSE: keep only one of them"
            ))

    def redis(self, workers: tuple[Worker, ...]) -> None:
        host = self.values.get("REDIS_HOST", "").strip()
        readers = [w for w in workers if w.needs(REDIS)]
        if not host or not readers:
            return
        port = self._port("REDIS_PORT")
        if port is None:
            return
        if host.lower().startswith("rediss://"):
            said: dict[str, list[str]] = {}
            for worker in readers:
                said.setdefault(worker.redis.on_rediss, []).append(worker.unit_base)
            effects = "; ".join(f"{', '.join(units)} {effect}" for effect, units in said.items())
            self._error("REDIS_HOST", (
                f"REDIS_HOST starts with rediss://, which Tracardi does not support: {effects}. "
                "Write the bare host name, and use a TLS tunnel if Redis must be reached "
                "over TLS"
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
        self._redis_port(name, host_port, port or str(DEFAULT_REDIS_PORT), readers)

    def _redis_port(self, name: str, host_port: str, port: str,
                    readers: list[Worker]) -> None:
        """Workers that read the port from REDIS_PORT and those that read it from REDIS_HOST
        must end up on the same port."""
        from_port = [w.unit_base for w in readers if w.redis.port_from == "REDIS_PORT"]
        from_host = [w.unit_base for w in readers if w.redis.port_from == "REDIS_HOST"]
        if host_port and from_port and host_port != port:
            self._error("REDIS_HOST", (
                f"REDIS_HOST has port {host_port}, but {', '.join(from_port)} drop everything "
                f"after ':' and take the port from REDIS_PORT (now {port}): "
                f"set REDIS_PORT={host_port}"
            ))
        if from_host and not host_port and port != str(DEFAULT_REDIS_PORT):
            self._error("REDIS_HOST", (
                f"{', '.join(from_host)} take the Redis port only from REDIS_HOST and ignore "
                f"REDIS_PORT={port}: write REDIS_HOST={name}:{port}"
                + (f" ({', '.join(from_port)} ignore the ':{port}' and keep using REDIS_PORT)"
                   if from_port else "")
            ))

    def elastic(self) -> None:
        scheme = self.values.get("ELASTIC_SCHEME", "").strip()
        if scheme and scheme not in ("http", "https"):
            self._error("ELASTIC_SCHEME", f"ELASTIC_SCHEME={scheme!r}: write http or https")
        self._port("ELASTIC_PORT")
        for entry in elastic_entries(self.values.get("ELASTIC_HOST", "")):
            try:
                parts = urlsplit(elastic_url(entry, self.values))
                valid = parts.scheme in ("http", "https") and bool(parts.hostname)
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                valid = False
            if not valid:
                self._error("ELASTIC_HOST", (
                    f"ELASTIC_HOST entry {shown('ELASTIC_HOST', entry)!r} is neither an http(s) "
                    "URL nor a host name: write a comma-separated list such as "
                    "ELASTIC_HOST=http://10.0.0.5:9200,http://10.0.0.6:9200, or host names "
                    "with ELASTIC_SCHEME and ELASTIC_PORT"
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

    def _port(self, key: str) -> str | None:
        """The value of a port setting, after an error if it is not a port number."""
        port = self.values.get(key, "").strip()
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            self._error(key, f"{key}={port!r} is not a port number (1-65535)")
            return None
        return port

    def mysql(self, workers: tuple[Worker, ...]) -> None:
        """Tracardi builds its MySQL URL as MYSQL_SCHEMA + credentials@ + MYSQL_HOST + ':' +
        MYSQL_PORT: MYSQL_HOST must be a bare host name."""
        if not any(w.needs(MYSQL) for w in workers):
            return
        port = self._port("MYSQL_PORT")
        host = self.values.get("MYSQL_HOST", "").strip()
        if "@" in host:  # never repeat it: the part before '@' may be a password
            self._error("MYSQL_HOST", (
                "MYSQL_HOST holds credentials (...@host): write only the host in MYSQL_HOST, "
                "the user in MYSQL_USERNAME and the password in MYSQL_PASSWORD"))
        elif "://" in host:
            self._error("MYSQL_HOST", (
                f"MYSQL_HOST={host} is a URL, but Tracardi puts MYSQL_SCHEMA "
                "(mysql+aiomysql:// unless set) in front of it: write the bare host name"))
        elif ":" in host:
            name, _, given = host.partition(":")
            self._error("MYSQL_HOST", (
                f"MYSQL_HOST={host} has a port, but Tracardi appends ':' and MYSQL_PORT "
                f"(now {port or DEFAULT_MYSQL_PORT}) to it: write MYSQL_HOST={name} and "
                f"MYSQL_PORT={given}"))

    def pulsar(self, workers: tuple[Worker, ...]) -> None:
        """PULSAR_HOST is the Pulsar client's service URL; PULSAR_API the admin API's."""
        if not any(w.needs(PULSAR) for w in workers):
            return
        host = self.values.get("PULSAR_HOST", "").strip()
        if host and not _url_with_host(host, ("pulsar", "pulsar+ssl")):
            self._error("PULSAR_HOST", (
                f"PULSAR_HOST={shown('PULSAR_HOST', host)} is not a Pulsar service URL: write "
                f"PULSAR_HOST=pulsar://HOST:{DEFAULT_PULSAR_PORT} (pulsar+ssl:// for TLS)"))
        api = self.values.get("PULSAR_API", "").strip()
        if api and not _url_with_host(api, ("http", "https")):
            self._error("PULSAR_API", (
                f"PULSAR_API={shown('PULSAR_API', api)} is not the http(s) URL of Pulsar's "
                "admin API: write PULSAR_API=http://HOST:8080"))

    def logging_level(self, workers: tuple[Worker, ...]) -> None:
        """Tracardi's core config reads it: every commercial worker, not the update worker."""
        if "LOGGING_LEVEL" not in self.values:
            if not any(w.commercial for w in workers):
                return
            self._warning(None, "LOGGING_LEVEL is not set: the workers get LOGGING_LEVEL=info, "
                          "as Tracardi's documentation sets it (add LOGGING_LEVEL=... to change)")
            return
        level = self.values["LOGGING_LEVEL"].strip().upper()
        if level in LOGGING_LEVEL_MAPPED:
            self._warning("LOGGING_LEVEL", (
                f"LOGGING_LEVEL={level}: Tracardi maps it to {LOGGING_LEVEL_MAPPED[level]}, "
                f"so the workers log at {LOGGING_LEVEL_MAPPED[level]}"
            ))
        elif level not in LOGGING_LEVELS:
            self._error("LOGGING_LEVEL", (
                f"LOGGING_LEVEL={level!r} is not a level Tracardi knows (it would fall back "
                f"silently): use one of {', '.join(LOGGING_LEVELS)}"
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


def _url_with_host(value: str, schemes: tuple[str, ...]) -> bool:
    """An absolute URL of one of `schemes`, with a host and (if any) a valid port."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname) and parts.path in ("", "/")
