"""The Celery app of Tracardi 0.8.1's update worker, reduced to three trivial tasks.

It reads its settings as that worker does: REDIS_HOST only (never REDIS_PORT), the scheme
added when missing, so the port comes only from REDIS_HOST (Redis' default 6379 when it
has none), and an optional REDIS_PASSWORD. Broker and result backend are that Redis.
"""

import os
import socket
import time
from collections.abc import Mapping

import redis
from celery import Celery

SCHEME = "redis://"


def redis_url(env: Mapping[str, str] = os.environ) -> str:
    host = env.get("REDIS_HOST", "redis://localhost:6379")
    if not host.startswith(SCHEME):
        host = SCHEME + host
    password = env.get("REDIS_PASSWORD")
    if password:
        host = f"{SCHEME}:{password}@{host[len(SCHEME):]}"
    return host


celery = Celery(__name__, broker=redis_url(), backend=redis_url())


@celery.task
def touch(key: str) -> str:
    """SET key to who consumed the task and when: a test reads it with redis-cli."""
    value = f"{socket.gethostname()} {os.getpid()} {time.time():.3f}"
    redis.Redis.from_url(redis_url()).set(key, value)
    return value


@celery.task
def hold(seconds: float) -> float:
    """A long task, as a migration is: keeps a pool process busy for `seconds`."""
    time.sleep(seconds)
    return seconds


@celery.task
def record(key: str) -> str:
    """RPUSH who ran the task and when onto key: a soak counts runs (twice = two entries)."""
    value = f"{socket.gethostname()} {os.getpid()} {time.time():.3f}"
    redis.Redis.from_url(redis_url()).rpush(key, value)
    return value
