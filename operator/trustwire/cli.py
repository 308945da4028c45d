"""``trustwire`` / ``kubectl trustwire``: run the operator, run the demo, inspect and rotate.

Errors reach the user as one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys
from pathlib import Path

import click

from trustwire import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trustwire")
def main() -> None:
    """trustwire wires mutual authentication (mTLS, JWT, shared secrets) between services."""


@main.command()
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Serve only these namespaces (repeatable).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Serve every namespace (the default without -n).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Kubeconfig file (default: in-cluster, then ~/.kube/config).")
@click.option("--context", help="Kubeconfig context.")
@click.option("--server", help="API server URL without credentials (e.g. an emulator).")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint URL ('' to disable).")
@click.option("--metrics-port", type=int, default=9090, show_default=True, help="Prometheus metrics port (0 to disable).")
@click.option("--peering", "peering_name", help="kopf peering name for HA (one active replica at a time).")
@click.option("--standalone", is_flag=True, help="No peering (single replica).")
@click.option("--priority", type=int, default=0, show_default=True, help="Peering priority (highest is active).")
@click.option("--priority-random", is_flag=True, help="Pick a random distinct peering priority.")
@click.option("--workers", type=int, default=4, show_default=True, help="Concurrent reconciles.")
@click.option("--resync", type=float, default=600.0, show_default=True, help="Seconds between full resyncs.")
@click.option("-v", "--verbose", is_flag=True)
def run(namespaces: tuple[str, ...], all_namespaces: bool, kubeconfig: str | None, context: str | None,
        server: str | None, liveness: str, metrics_port: int, peering_name: str | None, standalone: bool,
        priority: int, priority_random: bool, workers: int, resync: float, verbose: bool) -> None:
    """Run the operator against a cluster."""
    from trustwire.handlers import quiet_kopf_logging
    from trustwire.k8s.client import load_config
    from trustwire.runtime import OperatorOptions, running_operator

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_kopf_logging()
    if namespaces and all_namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces")
    try:
        config = load_config(server=server, kubeconfig=kubeconfig, context=context)
    except Exception as exc:
        raise click.ClickException(f"cannot load Kubernetes configuration: {exc}") from None
    if priority_random:
        priority = random.SystemRandom().randint(1, 2**31 - 1)
    options = OperatorOptions(
        clusterwide=not namespaces, namespaces=namespaces, liveness_endpoint=liveness or None,
        standalone=standalone or not peering_name, peering_name=peering_name, priority=priority,
        workers=workers, resync_interval=resync)

    async def main_async() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running_operator(config, options):
            await stop.wait()

    asyncio.run(main_async())


@main.command()
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Write every object and every identity's mounted files here.")
@click.option("--examples", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory of manifests to apply (default: examples/quickstart).")
def demo(output: Path | None, examples: Path | None) -> None:
    """Run the operator on the embedded API emulator and prove the result."""
    from trustwire.demo import run_demo
    from trustwire.handlers import quiet_kopf_logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_kopf_logging()
    logging.getLogger("trustwire").setLevel(logging.ERROR)
    try:
        code = asyncio.run(run_demo(output=output, examples=examples))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


if __name__ == "__main__":
    main()
