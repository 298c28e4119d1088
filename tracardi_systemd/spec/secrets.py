"""Which settings are secret, and how to show them without revealing them."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

LICENSE_NAMES = ("LICENSE", "API_LICENSE")
_SECRET_NAME = re.compile(r"LICENSE|PASSWORD|PASSWD|SECRET|TOKEN|_KEY$|^KEY$")


def is_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.upper()))


def mask(value: str) -> str:
    return f"<hidden, {len(value)} characters>" if value else "<empty>"


def shown(name: str, value: str) -> str:
    """The value as it may appear in a message: secrets masked, URL credentials removed."""
    if is_secret(name):
        return mask(value)
    return ",".join(_without_credentials(part) for part in value.split(","))


def _without_credentials(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        parts = None
    if parts is not None and parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()
    if "@" in url:  # user:password@host without a scheme, or a URL urlsplit refuses
        return "***@" + url.rpartition("@")[2]
    return url
