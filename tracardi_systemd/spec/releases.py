"""Which Tracardi release an env file is written for.

Releases read different settings (MYSQL_* only from 0.9, PULSAR_HOST only from 0.8.2; the
catalog says which): a file that sets a setting only some releases read, or lacks one a
release's workers need, fits only some releases. When exactly one fits, the file decides
the release; a release asked for that the file does not fit is an error naming the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tracardi_systemd.spec.catalog import CATALOG, known_settings, select_workers


@dataclass(frozen=True)
class Decision:
    version: str | None  # None: the file fits no release, or several
    reason: str  # why, in a sentence that names the settings


def foreign_settings(values: Mapping[str, str], version: str) -> list[str]:
    """The settings of the file that other releases read but `version` does not."""
    mine = known_settings(version)
    others = set().union(*(known_settings(v) for v in CATALOG if v != version))
    return [name for name in values if name in others and name not in mine]


def readers(name: str) -> list[str]:
    """The releases that read a setting."""
    return [v for v in CATALOG if name in known_settings(v)]


def span(versions: list[str]) -> str:
    """'0.9.0 to 1.2.0' for a run of releases in catalog order, else the list."""
    order = list(CATALOG)
    first, last = order.index(versions[0]), order.index(versions[-1])
    if len(versions) > 2 and order[first:last + 1] == versions:
        return f"{versions[0]} to {versions[-1]}"
    return ", ".join(versions)


def misfit(values: Mapping[str, str], version: str) -> str | None:
    """Why the file does not fit a release (settings it does not read, or settings its
    workers need that are not set), or None when it fits."""
    foreign = foreign_settings(values, version)
    if foreign:
        return f"sets {', '.join(foreign)}, which it does not read"
    needed = dict.fromkeys(s for w in select_workers(version) for s in w.required_settings)
    missing = [name for name in needed if not values.get(name, "").strip()]
    if missing:
        return f"needs {', '.join(missing)}"
    return None


def decide(values: Mapping[str, str]) -> Decision:
    """The release the file decides, with the reason said aloud."""
    why = {version: misfit(values, version) for version in CATALOG}
    fitting = [v for v, reason in why.items() if reason is None]
    if len(fitting) == 1:
        others = _grouped({v: r for v, r in why.items() if r})
        return Decision(fitting[0], f"Tracardi {fitting[0]}, as the env file decides: it fits "
                        f"no other release ({others}); --tracardi-version chooses another")
    if fitting:
        return Decision(None, f"the env file fits Tracardi {span(fitting)}: say which with "
                        "--tracardi-version (`tracardi-systemd workers --tracardi-version X` "
                        "lists a release)")
    reasons = _grouped(why)  # type: ignore[arg-type]  # no None left: nothing fits
    return Decision(None, f"the env file fits no release of the catalog ({reasons}): fix it, "
                    "or say which release with --tracardi-version")


def _grouped(reasons: dict[str, str]) -> str:
    """'0.8.2 needs PULSAR_HOST; 0.9.0 to 1.2.0 need MYSQL_HOST, ...': one clause per reason."""
    by_reason: dict[str, list[str]] = {}
    for version, reason in reasons.items():
        by_reason.setdefault(reason, []).append(version)
    return "; ".join(f"{span(versions)} {reason if len(versions) == 1 else _plural(reason)}"
                     for reason, versions in by_reason.items())


def _plural(reason: str) -> str:
    return reason.replace("needs ", "need ", 1).replace("sets ", "set ", 1).replace(
        "it does not", "they do not")
