"""``trustwire serve``: the HTTPS server for parties outside the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from trustwire.cli.cluster import cluster_options, load

if TYPE_CHECKING:
    from trustwire.k8s.client import ApiConfig


@click.command()
@click.option("--tls-secret", metavar="NS/NAME", help="kubernetes.io/tls Secret with tls.crt and tls.key.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Certificate chain file (instead of --tls-secret).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Private key file (with --tls-cert).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")  # noqa: S104
@click.option("--port", type=int, default=8443, show_default=True)
@click.option("--public-url", help="The URL clients reach this server at (default: from each request).")
@click.option("-n", "--namespace", "namespaces", multiple=True, help="Serve only these namespaces (repeatable).")
@click.option("--propagation-delay", type=click.FloatRange(min=1.0), default=90.0, show_default=True,
              help="Seconds, the operator's --propagation-delay: bounds how long validators cache a JWKS.")
@cluster_options
@click.option("-v", "--verbose", is_flag=True)
def serve(tls_secret: str | None, tls_cert: Path | None, tls_key: Path | None, host: str, port: int,
          public_url: str | None, namespaces: tuple[str, ...], propagation_delay: float, kubeconfig: str | None,
          context: str | None, server: str | None, verbose: bool) -> None:
    """Serve enrollment (and discovery) over HTTPS."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (tls_secret is None) == (tls_cert is None):
        raise click.UsageError("use either --tls-secret or --tls-cert/--tls-key")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_secret is not None and tls_secret.count("/") != 1:
        raise click.UsageError("--tls-secret takes NAMESPACE/NAME")
    config = load(server, kubeconfig, context)
    try:
        asyncio.run(_serve(config, tls_secret, tls_cert, tls_key, host, port, public_url, namespaces,
                           timedelta(seconds=propagation_delay)))
    except (LookupError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


async def _serve(config: ApiConfig, tls_secret: str | None, tls_cert: Path | None, tls_key: Path | None,
                 host: str, port: int, public_url: str | None, namespaces: tuple[str, ...],
                 propagation_delay: timedelta) -> None:
    from trustwire.k8s.client import Client
    from trustwire.server.context import ServerContext
    from trustwire.server.run import (
        keep_tls_from_secret,
        material_from_files,
        material_from_secret,
        serving,
        tls_context,
    )
    from trustwire.times import utcnow

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Client(config) as client:
        if tls_secret is not None:
            namespace, name = tls_secret.split("/")
            material = await material_from_secret(client, namespace, name)
        else:
            assert tls_cert is not None and tls_key is not None
            material = material_from_files(tls_cert, tls_key)
        ctx = ServerContext(client=client, clock=utcnow, public_url=public_url, namespaces=namespaces,
                            tls=tls_context(material), propagation_delay=propagation_delay)
        follow = None
        if tls_secret is not None:
            assert ctx.tls is not None
            follow = asyncio.create_task(keep_tls_from_secret(client, ctx.tls, namespace, name, material))
        try:
            async with serving(ctx, host, port):
                await stop.wait()
        finally:
            if follow is not None:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follow
