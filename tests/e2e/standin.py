"""Stand-in Tracardi worker images, built inside a sandbox (no registry is reachable), and
the services the workers reach there: Debian's Redis, a TCP listener for Elasticsearch.

Each image is busybox plus /standin.sh, imported with `docker import` under a real image
name. What the script prints and the environment variables that steer it are described in
STANDIN_SH; tests put those variables in the operator's env file, which the units pass
into the container by name.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from .host import Host
from .sandbox import DOCKER

TRACARDI_TAG = "0.8.1"
TRACARDI_081_IMAGES = [
    "tracardi/update-worker",
    "tracardi/com-tracardi-segmentation-worker",
    "tracardi/com-tracardi-scheduler-worker",
    "tracardi/com-tracardi-coping-worker",
    "tracardi/com-tracardi-trigger-worker",
    "tracardi/com-heartbeat-job",
]
# Tracardi 1.2's default selection (its images are tagged 1.2.x).
TRACARDI_12_TAG = "1.2.x"
TRACARDI_12_IMAGES = [
    "tracardi/init",
    "tracardi/background-worker",
    "tracardi/apm",
    "tracardi/update-worker",
]
# Worker names that do not follow from the image name (the background worker's roles all
# answer to STANDIN_FAIL_BACKGROUND).
WORKER_OF_IMAGE = {"tracardi/com-tracardi-coping-worker": "post-collection",
                   "tracardi/com-heartbeat-job": "heartbeat"}
# Images that run once and exit 0 (init, scheduled jobs), after STANDIN_ONCE_SECONDS (1).
RUN_ONCE_IMAGES = {"tracardi/init", "tracardi/com-heartbeat-job"}

STANDIN_SH = r"""#!/bin/sh
# Stand-in for a Tracardi worker. W is the worker in upper case: STANDIN_FAIL_SCHEDULER,
# STANDIN_ALLOC_MB_POST_COLLECTION.
worker=${STANDIN_WORKER:-$(cat /standin-worker)}
W=$(echo "$worker" | tr 'a-z-' 'A-Z_')
echo "standin start $(cat /standin-image) worker=$worker"
if [ -n "${CONSUMER_TYPE:-}" ]; then
    echo "consumer-type $CONSUMER_TYPE"
fi

names=$(env | sed -n 's/^\([A-Z][A-Z0-9_]*\)=.*/\1/p' |
    grep -vxE 'PATH|HOME|HOSTNAME|PWD|SHLVL|TERM' | sort -u | xargs)
echo "env-names: $names"
for name in $names; do
    case $name in
    LICENSE | API_LICENSE | *PASSWORD* | *TOKEN*)
        eval "value=\$$name"
        echo "secret-sha256 $name $(printf %s "$value" | sha256sum | cut -d' ' -f1)"
        ;;
    esac
done

eval "fail=\${STANDIN_FAIL_$W:-}"
if [ "$fail" = 1 ] || [ -e /standin-crash ]; then
    echo "standin failing"
    exit 3
fi

# Like Tracardi's core config: no scheme, nothing after ':', the port from REDIS_PORT.
host=${REDIS_HOST:-127.0.0.1}
host=${host#redis://}
host=${host#rediss://}
host=${host%%:*}
port=${REDIS_PORT:-6379}
if printf 'PING\r\nQUIT\r\n' | nc -w 2 "$host" "$port" 2>/dev/null | grep -q '^+PONG'; then
    echo "redis ok $host:$port"
else
    echo "redis unreachable $host:$port"
    if [ "${STANDIN_REQUIRE_REDIS:-}" = 1 ]; then
        exit 1
    fi
fi

if [ "$(cat /standin-kind)" = once ]; then
    sleep "${STANDIN_ONCE_SECONDS:-1}"
    echo "standin done"
    exit 0
fi

eval "alloc=\${STANDIN_ALLOC_MB_$W:-}"
if [ -n "$alloc" ]; then
    ballast=$(head -c $((alloc * 1048576)) /dev/zero | tr '\0' x)
    echo "standin holding $alloc MB (${#ballast} bytes)"
fi

# A Python worker dies of SIGTERM, which docker-init reports as 143. `sleep & wait`
# lets the trap run at once.
trap 'kill $! 2>/dev/null; echo "standin stopped by SIGTERM"; exit 143' TERM
if [ -n "${STANDIN_EXIT_AFTER:-}" ]; then
    sleep "$STANDIN_EXIT_AFTER" &
    wait $!
    echo "standin exiting 0 after $STANDIN_EXIT_AFTER s"
    exit 0
fi
while :; do
    echo "standin alive"
    sleep 5 &
    wait $!
done
"""


# What the liveness check of the Celery update worker runs (catalog.CELERY_PING): the
# stand-in answers like a consuming worker, unless its image was built to fail the check
# (/standin-liveness-fail) or a test made this container stop answering with
# `docker exec <container> touch /tmp/not-live`.
CELERY_SH = r"""#!/bin/sh
if [ -e /tmp/not-live ] || [ -e /standin-liveness-fail ]; then
    echo "Error: No nodes replied within time constraint" >&2
    exit 69
fi
echo "-> celery@$HOSTNAME: OK"
echo "        pong"
"""


def worker_of(image: str) -> str:
    """tracardi/com-tracardi-scheduler-worker -> scheduler."""
    if image in WORKER_OF_IMAGE:
        return WORKER_OF_IMAGE[image]
    name = image.rsplit("/", 1)[-1]
    return name.removeprefix("com-tracardi-").removesuffix("-worker")


def build_standin_images(
    sandbox: Host,
    images: Iterable[str] = TRACARDI_081_IMAGES,
    tag: str = TRACARDI_TAG,
    crash: bool = False,
    liveness_fails: bool = False,
    podman: bool = False,
    also_tags: tuple[str, ...] = (),
) -> None:
    """Build one stand-in image per name, tagged `<image>:<tag>`, in the sandbox's docker.

    crash: the image exits with status 3 at once, whatever its settings (a release that
    crash-loops); liveness_fails: it runs, but its liveness check (celery ping) fails;
    podman: into Podman's store instead, under the fully qualified name a registry's pull
    would give it (`docker.io/<image>:<tag>`, as Quadlet's Image= names it); also_tags:
    an image of its own (its /standin-image names it) under each of these tags too, from the
    same root (whose busybox links take seconds to make under emulation).
    """
    root = "/tmp/standin-rootfs"
    baked = [name for name, wanted in (("standin-crash", crash),
                                       ("standin-liveness-fail", liveness_fails)) if wanted]
    sandbox.run(
        f"rm -rf {root} && mkdir -p {root}/bin {root}/tmp && cp /bin/busybox {root}/bin/ && "
        f"for a in $(busybox --list | grep -vx busybox); do ln -s busybox {root}/bin/$a; done && "
        + "".join(f"touch {root}/{name} && " for name in baked)
        + f"cat > {root}/standin.sh && chmod 755 {root}/standin.sh",
        input=STANDIN_SH,
    )
    sandbox.run(f"cat > {root}/bin/celery && chmod 755 {root}/bin/celery", input=CELERY_SH)
    engine, registry = ("podman", "docker.io/") if podman else (DOCKER, "")
    images = list(images)
    for image, each in [(i, t) for t in (tag, *also_tags) for i in images]:
        ref = shlex.quote(f"{registry}{image}:{each}")
        kind = "once" if image in RUN_ONCE_IMAGES else "service"
        sandbox.run(
            f"echo {shlex.quote(worker_of(image))} > {root}/standin-worker && "
            f"echo {ref} > {root}/standin-image && echo {kind} > {root}/standin-kind && "
            f"tar -C {root} -c . | {engine} import -c 'CMD [\"/standin.sh\"]' - {ref}"
        )


def start_redis(sandbox: Host) -> None:
    """Debian's redis-server unit, answering on 127.0.0.1:6379 (the sandbox's loopback)."""
    sandbox.run("systemctl start redis-server.service")
    sandbox.wait_until("redis-cli -h 127.0.0.1 -p 6379 ping | grep -qx PONG", timeout=15)


def start_fake_elasticsearch(sandbox: Host) -> None:
    """A TCP listener on 127.0.0.1:9200, enough for the agent's reachability probe."""
    sandbox.run(
        "systemctl is-active -q fake-elasticsearch || systemd-run -q "
        "--unit=fake-elasticsearch /usr/bin/python3 -m http.server 9200 --bind 127.0.0.1"
    )


# Started before basic.target, so before every ordinary service (the agent and dockerd
# among them) without naming one: a unit named in Before= stays loaded, and purge's check
# that no tracardi unit is left would see the agent's.
FAKE_ELASTICSEARCH_UNIT = """[Unit]
Description=a stand-in Elasticsearch for the tests: a TCP listener on 127.0.0.1:9200
DefaultDependencies=no
After=local-fs.target
Before=basic.target shutdown.target
Conflicts=shutdown.target

[Service]
ExecStart=/usr/bin/python3 -m http.server 9200 --bind 127.0.0.1
ExecStartPost=/bin/bash -c 'until echo 2>/dev/null >/dev/tcp/127.0.0.1/9200; do sleep 0.2; done'

[Install]
WantedBy=basic.target
"""


def enable_fake_elasticsearch(host: Host) -> None:
    """start_fake_elasticsearch's listener as a unit started at boot, listening before
    docker and the agent start: a host that reboots finds it there, where a late one would
    be an outage the agent heals by restarting the workers that need it."""
    host.run("cat > /etc/systemd/system/fake-elasticsearch.service && "
             "systemctl daemon-reload && systemctl enable -q --now fake-elasticsearch",
             input=FAKE_ELASTICSEARCH_UNIT)
