"""Reading memory of containers' process trees from the real process table."""

from __future__ import annotations

import subprocess
import time

import psutil

from tracardi_systemd.observe import tree_memory


def test_tree_memory_sums_a_process_and_all_its_descendants():
    parent = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 5
        while len(psutil.Process(parent.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        tree = [psutil.Process(parent.pid), *psutil.Process(parent.pid).children(recursive=True)]
        expected = sum(p.memory_info().rss for p in tree)

        measured = tree_memory([parent.pid])[parent.pid]

        assert len(tree) == 3
        assert measured > tree[0].memory_info().rss
        assert abs(measured - expected) < expected * 0.1
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()


def test_processes_that_are_gone_are_left_out():
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert tree_memory([gone.pid, 0, -1]) == {}
