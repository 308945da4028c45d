"""What every command that reads the cluster shares: its options, loading the configuration,
and one API call whose failures reach the user as one line and exit 3 (:class:`Unavailable`)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from trustwire.cli.output import Unavailable

if TYPE_CHECKING:
    from trustwire.k8s.client import ApiConfig, Client
    from trustwire.k8s.resources import Resource

_T = TypeVar("_T")


def cluster_options(func: Callable[..., None]) -> Callable[..., None]:
    """--kubeconfig/--context/--server, as for ``run``."""
    func = click.option("--server", help="API server URL without credentials (e.g. an emulator).")(func)
    func = click.option("--context", help="Kubeconfig context.")(func)
    return click.option("--kubeconfig", type=click.Path(dir_okay=False),
                        help="Kubeconfig file (default: in-cluster, then ~/.kube/config).")(func)


def load(server: str | None, kubeconfig: str | None, context: str | None) -> ApiConfig:
    from trustwire.k8s.client import load_config

    try:
        return load_config(server=server, kubeconfig=kubeconfig, context=context)
    except Exception as exc:  # kubeconfig parsing raises many types; the user needs one line
        raise Unavailable(f"cannot load Kubernetes configuration: {exc}") from None


def namespace_of(config: ApiConfig, namespace: str | None) -> str:
    return namespace or config.default_namespace or "default"


def where(namespace: str | None) -> str:
    return "any namespace" if namespace is None else f"namespace {namespace}"


def api_call(config: ApiConfig, work: Callable[[Client], Awaitable[_T]]) -> _T:
    """Run ``work`` with a short-retrying client; API and network failures become one line."""
    from trustwire.k8s.client import Client
    from trustwire.k8s.errors import UNREACHABLE, ApiError

    async def go() -> _T:
        async with Client(config, timeout=20.0, retries=1) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except ApiError as exc:
        if exc.reason == UNREACHABLE:
            raise Unavailable(f"cannot reach the Kubernetes API server at {config.server} "
                                       f"({exc.api_message})") from None
        if exc.status == 404 and exc.verb == "list" and "/apis/trustwire.io/" in exc.path:
            raise Unavailable(f"the API server at {config.server} does not serve "
                                       "trustwire.io/v1alpha1 (are the trustwire CRDs installed?)") from None
        if exc.status in (401, 403):
            detail = f": {exc.api_message}" if exc.api_message else ""
            raise Unavailable(f"the API server refused {exc.verb} {exc.path}: "
                                       f"{exc.status} {exc.reason}{detail}") from None
        raise Unavailable(str(exc)) from None
    except (OSError, ssl.SSLError) as exc:
        raise Unavailable(
            f"cannot reach the Kubernetes API server at {config.server} ({exc})") from None


async def read_spec(client: Client, resource: Resource, namespace: str, name: str,
                    parse: Callable[[Mapping[str, Any]], _T]) -> _T:
    """The object's validated spec; a missing object or a bad spec is one line for the user."""
    from trustwire.model import SpecError

    body = await client.get(resource, namespace, name)
    if body is None:
        raise Unavailable(f"{resource.kind} {namespace}/{name} not found")
    try:
        return parse(body)
    except SpecError as exc:
        raise Unavailable(f"{resource.kind} {namespace}/{name} has an invalid spec: {exc}") from None
