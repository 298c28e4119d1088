"""From the operator's inputs to unit files: select workers, read and check the env file,
parse the per-worker options, render. Pure apart from reading the env file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tracardi_systemd.names import AGENT_UNIT, TARGET
from tracardi_systemd.render.escape import UnsafeValue
from tracardi_systemd.render.units import RenderSettings, render, worker_units
from tracardi_systemd.spec.catalog import CatalogError, select_workers
from tracardi_systemd.spec.envfile import EnvFile, load_env_file
from tracardi_systemd.spec.limits import LimitError, parse_memory_limits, parse_replicas
from tracardi_systemd.spec.problems import Problem, Severity, has_errors
from tracardi_systemd.spec.releases import decide


class PrepareError(Exception):
    """Input that cannot become unit files; `problems` are the env file's, if any."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = problems or []


class OptionError(PrepareError):
    """A wrong option (an unknown worker, a bad --replicas, a value systemd cannot take),
    or none where one is needed: a usage error, not the env file's."""


class ReleaseUndecided(OptionError):
    """No release was named and the env file does not decide one."""


@dataclass
class Prepared:
    env: EnvFile
    settings: RenderSettings
    files: dict[str, str]
    problems: list[Problem] = field(default_factory=list)  # warnings only
    chosen: str = ""  # which release the env file decided and why, when none was named

    @property
    def images(self) -> list[str]:
        """Every image the selection runs, once (one image serves several roles)."""
        return list(dict.fromkeys(self.settings.image_of(w) for w in self.settings.workers))

    @property
    def infrastructure_units(self) -> list[str]:
        return [TARGET, AGENT_UNIT]

    @property
    def instances(self) -> list[str]:
        """Every unit of the selected entries to enable and start, in catalog order: the
        workers (each replica), the run-once init, the timers of the scheduled jobs."""
        return [i for unit in worker_units(self.settings) for i in unit.instances]


def prepare(env_path: Path, tracardi_version: str | None, workers: tuple[str, ...] = (),
            replicas: tuple[str, ...] = (), **options: object) -> Prepared:
    """Raises PrepareError naming what to fix. Without a release, the env file's decides."""
    env = load_env_file(env_path)
    if not env.raw and has_errors(env.problems):  # unreadable: nothing else is worth saying
        raise PrepareError(f"{env_path}: give the path of a readable env file", env.problems)
    chosen = ""
    if tracardi_version is None:
        decision = decide(env.values)
        if decision.version is None:
            raise ReleaseUndecided(f"{env_path}: no --tracardi-version, and {decision.reason}")
        tracardi_version, chosen = decision.version, decision.reason
    try:
        selected = select_workers(tracardi_version, workers)
    except CatalogError as exc:
        raise OptionError(str(exc)) from None
    names = [w.name for w in selected]
    supervised = [w.name for w in selected if w.kind == "service"]  # what the agent watches
    try:
        counts = parse_replicas(replicas, names)
        parse_memory_limits(options.get("memory_limits", ()), supervised)  # type: ignore[arg-type]
    except LimitError as exc:
        raise OptionError(str(exc)) from None
    from tracardi_systemd.spec.validate import validate  # loads urllib and the rules: late

    problems = validate(env, selected, tracardi_version, options.get("network"))  # type: ignore[arg-type]
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if errors:
        raise PrepareError(f"{env_path}: {len(errors)} error(s); fix them and run again",
                           problems)
    settings = RenderSettings(version=tracardi_version, workers=selected,
                              env_keys=tuple(env.values), replicas=counts, **options)  # type: ignore[arg-type]
    try:
        files = render(settings)
    except UnsafeValue as exc:  # only options reach the unit files as values
        raise OptionError(str(exc)) from None
    return Prepared(env, settings, files, problems, chosen)
