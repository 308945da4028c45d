"""``trustwire run`` and ``trustwire demo``: the commands that start an operator."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from trustwire.cli.cluster import load

if TYPE_CHECKING:
    from trustwire.k8s.client import ApiConfig
    from trustwire.runtime import OperatorOptions


@click.command()
@click.option("-n", "--namespace", "namespaces", multiple=True,
              help="Serve only these namespaces (repeatable).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Serve every namespace (the default without -n).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False),
              help="Kubeconfig file (default: in-cluster, then ~/.kube/config).")
@click.option("--context", help="Kubeconfig context.")
@click.option("--server", help="API server URL without credentials (e.g. an emulator).")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint URL ('' to disable).")
@click.option("--metrics-port", type=int, default=9090, show_default=True,
              help="Prometheus metrics port (0 to disable).")
@click.option("--lease", help="NAMESPACE/NAME of the Lease for leader election (HA: one replica acts at a time).")
@click.option("--identity", envvar="POD_NAME", help="This replica's name in the Lease (default: host name).")
@click.option("--standalone", is_flag=True, help="Single replica, no leader election (the default without --lease).")
@click.option("--workers", type=int, default=4, show_default=True, help="Concurrent reconciles.")
@click.option("--resync", type=float, default=600.0, show_default=True, help="Seconds between full resyncs.")
@click.option("--propagation-delay", type=float, default=90.0, show_default=True,
              help="Seconds a rotation waits for consumers that have no workloads to report a rollout.")
@click.option("--public-url", envvar="TRUSTWIRE_PUBLIC_URL", callback=lambda _c, _p, v: _public_url(v),
              help="https URL where trustwire serve is reached from outside; each Enrollment's token Secret "
                   "then names its connector URL (key url).")
@click.option("-v", "--verbose", is_flag=True)
def run(namespaces: tuple[str, ...], all_namespaces: bool, kubeconfig: str | None, context: str | None,
        server: str | None, liveness: str, metrics_port: int, lease: str | None, identity: str | None,
        standalone: bool, workers: int, resync: float, propagation_delay: float, public_url: str | None,
        verbose: bool) -> None:
    """Run the operator against a cluster."""
    from trustwire.runtime import OperatorOptions

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if namespaces and all_namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces")
    config = load(server, kubeconfig, context)
    if lease and standalone:
        raise click.UsageError("use either --lease or --standalone")
    if lease and "/" not in lease:
        raise click.UsageError("--lease takes NAMESPACE/NAME, e.g. trustwire-system/trustwire")
    options = OperatorOptions(
        namespaces=namespaces, liveness_endpoint=liveness or None,
        lease=lease, identity=identity, workers=workers, resync_interval=resync,
        propagation_delay=timedelta(seconds=propagation_delay), public_url=public_url)

    asyncio.run(_serve(config, options, metrics_port))


def _public_url(value: str | None) -> str | None:
    """An absolute http(s) URL without query or fragment (the connector URL is built on it)."""
    if not value:
        return None
    url = urlsplit(value)
    if url.scheme not in ("https", "http") or not url.hostname or url.query or url.fragment:
        raise click.BadParameter(f"{value!r} is no http(s) URL without query and fragment, "
                                 "e.g. https://enroll.example.com", param_hint="--public-url")
    return value.rstrip("/")


async def _serve(config: ApiConfig, options: OperatorOptions, metrics_port: int) -> None:
    """Run the operator (and its metrics endpoint) until SIGINT or SIGTERM."""
    from trustwire.metrics import start_metrics_server
    from trustwire.runtime import running_operator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_operator(config, options) as controller:
        stop_metrics = None
        if metrics_port:
            try:
                stop_metrics = start_metrics_server(controller, metrics_port)
            except OSError as exc:
                raise click.ClickException(
                    f"cannot serve metrics on port {metrics_port}: {exc}") from None
            logging.getLogger("trustwire").info("serving metrics on :%d/metrics", metrics_port)
        try:
            await stop.wait()
        finally:
            if stop_metrics is not None:
                stop_metrics()


@click.command()
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Write every object and every identity's mounted files here.")
@click.option("--examples", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory of manifests to apply (default: examples/quickstart).")
@click.option("--rotate", is_flag=True,
              help="Short lifetimes: rotate CAs, leaves and JWT keys while probing mTLS and JWT continuously.")
@click.option("--serve", type=click.Path(file_okay=False, path_type=Path),
              help="Keep running with trustwire serve on loopback; write DIR/endpoints.json.")
def demo(output: Path | None, examples: Path | None, rotate: bool, serve: Path | None) -> None:
    """Run the operator on the embedded API emulator and prove the result."""
    from trustwire.demo.rotate import run_rotation_demo
    from trustwire.demo.run import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("trustwire").setLevel(logging.ERROR)
    try:
        if serve is not None and rotate:
            raise click.UsageError("--serve runs with the plain demo, not --rotate")
        code = asyncio.run(run_demo(output=output, examples=examples, serve=serve, hold=_until_stopped)
                           if serve is not None
                           else (run_rotation_demo if rotate else run_demo)(output=output, examples=examples))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


async def _until_stopped() -> None:
    """Until SIGINT (Ctrl-C) or SIGTERM: the demo then ends cleanly with its proofs' exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
