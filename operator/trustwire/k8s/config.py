"""Where the API server is and how to authenticate: in-cluster, a kubeconfig, or a bare URL.

Kubeconfigs are read by the ``kubernetes`` package's loader (maintained, and it knows every
shape of kubeconfig: merged ``KUBECONFIG`` lists, exec credential plugins, token files,
legacy auth providers); only its result is used here, never its HTTP client. Credentials
that end — an exec plugin's token or client certificate with an ``expirationTimestamp``,
a token file rotated by the kubelet — are renewed the way client-go renews them: when they
have expired, and at once when the API server answers 401.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import ssl
import tempfile
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclasses.dataclass(frozen=True)
class ApiConfig:
    """Where the API server is and how to authenticate, as of now.

    ``renew`` gives the configuration with fresh credentials (an exec plugin run again, a
    token file read again); ``expires`` says when the current ones stop working, if known.
    """

    server: str
    token: str | None = None
    ca_data: bytes | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    insecure: bool = False
    default_namespace: str | None = None
    #: the name the server's certificate is checked against (kubeconfig ``tls-server-name``)
    tls_server_name: str | None = None
    #: an HTTP proxy every connection is tunnelled through (kubeconfig ``proxy-url``, else
    #: the ``HTTPS_PROXY`` environment)
    proxy_url: str | None = None
    expires: datetime | None = None
    renew: Callable[[], ApiConfig] | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.proxy_url and urlsplit(self.proxy_url).scheme != "http":
            scheme = urlsplit(self.proxy_url).scheme
            raise ValueError(f"proxy {scheme}://…: only http:// proxies (HTTP CONNECT) are supported")

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.server.startswith("https"):
            return None
        ctx = ssl.create_default_context()
        if self.ca_data:
            ctx.load_verify_locations(cadata=self.ca_data.decode())
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_data and self.key_data:
            # ssl can only load a client key from a file: a private, short-lived temp file.
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
                cert.write_bytes(self.cert_data)
                key.touch(mode=0o600)
                key.write_bytes(self.key_data)
                ctx.load_cert_chain(cert, key)
        return ctx


def load_config(*, server: str | None = None, kubeconfig: str | None = None, context: str | None = None) -> ApiConfig:
    """An explicit server URL, else in-cluster service account, else kubeconfig."""
    if server:
        return ApiConfig(server=server.rstrip("/"))
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").exists():
        return in_cluster()
    return from_kubeconfig(kubeconfig, context)


def environment_proxy(server: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name for ``server`` unless ``NO_PROXY``
    exempts it, as client-go (kubectl) decides; loopback is never proxied."""
    url = urlsplit(server)
    host = url.hostname or ""
    if host == "localhost" or _loopback(host) or urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    return urllib.request.getproxies_environment().get(url.scheme) or None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def in_cluster() -> ApiConfig:
    """The pod's service account; its token file is read again on renewal (the kubelet
    rotates it hourly)."""
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    token_file, server = SA_DIR / "token", f"https://{host}:{port}"
    return _rereading(ApiConfig(server=server, token=token_file.read_text().strip(),
                                ca_data=(SA_DIR / "ca.crt").read_bytes(),
                                default_namespace=(SA_DIR / "namespace").read_text().strip(),
                                proxy_url=environment_proxy(server)), token_file)


def _rereading(config: ApiConfig, token_file: Path) -> ApiConfig:
    """``config``, renewed by reading ``token_file`` again (an unreadable file keeps the token)."""

    def renew() -> ApiConfig:
        try:
            token = token_file.read_text().strip()
        except OSError:
            token = ""
        return _rereading(dataclasses.replace(config, token=token or config.token), token_file)

    return dataclasses.replace(config, renew=renew)


def from_kubeconfig(path: str | None, context: str | None) -> ApiConfig:
    """The kubeconfig's current (or named) context; renewing runs its credential source again."""
    from kubernetes.config import kube_config  # parsing and exec plugins only; never its HTTP

    # the loader behind load_kube_config, kept: renewing runs its credential source again
    loader = kube_config._get_kube_config_loader(  # type: ignore[no-untyped-call]
        filename=path or kube_config.KUBE_CONFIG_DEFAULT_LOCATION, active_context=context, persist_config=False)

    def load() -> ApiConfig:
        from kubernetes import client as kclient

        configuration = kclient.Configuration()
        loader.load_and_set(configuration)
        return _api_config(loader, configuration, renew=load)

    return load()


def _api_config(loader: Any, configuration: Any, *, renew: Callable[[], ApiConfig]) -> ApiConfig:
    auth = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
    token = (auth.split(" ", 1)[1] if auth and " " in auth else auth or "").strip() or None  # a file's newline
    proxy = getattr(configuration, "proxy", None) or environment_proxy(configuration.host)
    context = loader.current_context or {}
    expiry = getattr(loader, "expiry", None)
    return ApiConfig(server=configuration.host.rstrip("/"), token=token,
                     ca_data=_read(configuration.ssl_ca_cert), cert_data=_read(configuration.cert_file),
                     key_data=_read(configuration.key_file), insecure=not configuration.verify_ssl,
                     default_namespace=context.get("context", {}).get("namespace"),
                     tls_server_name=getattr(configuration, "tls_server_name", None) or None,
                     proxy_url=proxy or None,
                     expires=expiry.astimezone(UTC) if isinstance(expiry, datetime) else None,
                     renew=renew)


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None
