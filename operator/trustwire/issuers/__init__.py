"""Fetching external OpenID Connect issuers' keys over HTTPS (the one I/O of the feature;
what the answers must be is decided in :mod:`trustwire.plan.issuers`)."""

from trustwire.issuers.fetch import fetch_keys

__all__ = ["fetch_keys"]
