"""What every feature of the server is handed: nothing global, so tests build their own."""

from __future__ import annotations

import dataclasses
import ssl
from datetime import timedelta

from trustwire.k8s.client import Client
from trustwire.plan.rotation import DEFAULT_PROPAGATION_DELAY
from trustwire.times import Clock


@dataclasses.dataclass(frozen=True)
class ServerContext:
    client: Client
    clock: Clock
    #: the URL clients reach this server at (``https://trust.example.com``); None: derived
    #: from each request's Host header
    public_url: str | None
    #: the namespaces served; empty: all
    namespaces: tuple[str, ...] = ()
    #: the server's TLS context, so a feature can teach it client CAs for mTLS endpoints
    tls: ssl.SSLContext | None = None
    #: the operator's --propagation-delay: how long a new JWT key is published before it signs
    propagation_delay: timedelta = DEFAULT_PROPAGATION_DELAY

    def serves(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces
