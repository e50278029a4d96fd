"""The Triton launcher's clean-up: a killed Triton's process group does not outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from reviewsum_server.triton import reap_process_group

# A leader that starts a child in its own process group, as tritonserver starts its backend stubs.
LEADER = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def group_members(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != pgid and alive(int(name)):
            try:
                if os.getpgid(int(name)) == pgid:
                    members.append(int(name))
            except ProcessLookupError:
                continue
    return members


def test_the_group_of_a_killed_leader_is_reaped_and_a_running_one_left_alone() -> None:
    leader = subprocess.Popen([sys.executable, "-c", LEADER], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not group_members(leader.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = group_members(leader.pid)
        reap_process_group(leader)  # still running: nothing happens
        assert alive(child) and leader.poll() is None
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        assert alive(child), "the child outlives its killed leader, as Triton's stubs do"
        reap_process_group(leader)
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
        reap_process_group(leader)  # an empty group: no error
    finally:
        if leader.poll() is None:
            leader.kill()
        for pid in group_members(leader.pid):
            os.kill(pid, signal.SIGKILL)
