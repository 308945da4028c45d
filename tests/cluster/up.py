"""Start the test control plane and keep it up until SIGTERM or Ctrl-C.

    python tests/cluster/up.py --workdir DIR

builds the binaries if needed (``build.sh``, cached), starts etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok on 127.0.0.1, writes
``DIR/admin.kubeconfig`` (cluster-admin), prints ``ready`` on a line of its own and waits.
On SIGTERM or SIGINT it stops every process it started.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlplane import ControlPlane, ControlPlaneError, binaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, type=Path, help="where certificates, kubeconfigs, "
                        "etcd's data and the components' logs go (created if missing)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        plane = ControlPlane(binaries(), args.workdir.resolve())
        with plane:
            print(f"kube-apiserver at {plane.server}; kubeconfig {plane.admin_kubeconfig}; "
                  f"logs in {plane.logs} (up in {plane.startup_seconds:.1f} s)", file=sys.stderr)
            print("ready", flush=True)
            while not stop.wait(1.0):
                plane.check_alive()
    except ControlPlaneError as exc:
        print(f"up.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
