"""``up.py`` as a person runs it: it prints ``ready``, the cluster answers with the admin
kubeconfig, and SIGTERM stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _children(pid: int) -> set[int]:
    """Every process whose parent is ``pid`` (the components run in process groups of their own)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def test_up_serves_a_cluster_until_sigterm(control_plane_binaries: Path, tmp_path: Path) -> None:
    env = os.environ | {"TESTCLUSTER_BIN": str(control_plane_binaries)}
    up = subprocess.Popen([sys.executable, str(HERE / "up.py"), "--workdir", str(tmp_path)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None
        assert up.stdout.readline().strip() == "ready"
        components = _children(up.pid)
        assert len(components) == 5, components  # etcd, apiserver, controller-manager, scheduler, kwok
        kubectl = [str(control_plane_binaries / "kubectl"), f"--kubeconfig={tmp_path / 'admin.kubeconfig'}"]
        nodes = subprocess.run([*kubectl, "get", "nodes", "-o", "name"], capture_output=True, text=True,
                               check=True, timeout=60).stdout.split()
        assert nodes == ["node/kwok-node-0"]
        can = subprocess.run([*kubectl, "auth", "can-i", "create", "clusterroles"], capture_output=True,
                             text=True, check=False, timeout=60).stdout.strip()
        assert can == "yes", "admin.kubeconfig is cluster-admin"
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    assert up.returncode == 0, up.stderr.read() if up.stderr else ""
    assert not [pid for pid in components if _alive(pid)], "every component stopped"


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False
