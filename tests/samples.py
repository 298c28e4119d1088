"""Sample settings of the fast tests: recognisable secrets that no message or rendered file
may ever contain, and env files that are fine for every 0.8.1 worker."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ENV = ROOT / "examples" / "env-docker.example"

# Recognisable secret values: no message and no rendered file may ever contain them.
SECRET_LICENSE = "LIC-7f3a9c-SECRET-LICENSE-d41d8cd98f"
SECRET_PASSWORD = "pw-Zq8vX2-SECRET-PASSWORD-0b1e"

# A file that is fine for every 0.8.1 worker.
CLEAN_ENV = f"""\
# Tracardi worker settings
ELASTIC_HOST=http://10.0.0.5:9200,http://10.0.0.6:9200
REDIS_HOST=10.0.0.7
REDIS_PORT=6379
LOGGING_LEVEL=INFO
API_LICENSE={SECRET_LICENSE}
"""

# The same with credentials that must stay secret.
SECRET_ENV = CLEAN_ENV + f"""\
ELASTIC_HTTP_AUTH_USERNAME=elastic
ELASTIC_HTTP_AUTH_PASSWORD={SECRET_PASSWORD}
REDIS_PASSWORD={SECRET_PASSWORD}
"""
