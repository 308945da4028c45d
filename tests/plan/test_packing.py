"""Laying trust files out in Secrets: one while they fit, a Secret of its own per large file beyond."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustwire.plan.packing import SECRET_DATA_LIMIT, fill, largest, pack

BUDGET = 100


def files(**sizes: int) -> dict[str, bytes]:
    """Trust files of the given sizes; ``trust_bundle_pem=5`` is ``trust-bundle.pem`` of 5 bytes."""
    renamed = {"trust_bundle_pem": "trust-bundle.pem", "truststore_p12": "truststore.p12",
               "truststore_jks": "truststore.jks", "peers_jwks": "peers.jwks", "peers_json": "peers.json",
               "password": "truststore.password", "shared": "shared-a.key", "tpl": "app.conf"}
    return {renamed[k]: bytes([i]) * n for i, (k, n) in enumerate(sizes.items())}


CASES = [
    # (why, files, alone before, expected alone files or None when it cannot fit)
    ("everything fits in the trust Secret", files(trust_bundle_pem=40, peers_json=30, password=30), (), []),
    ("exactly the budget still fits", files(trust_bundle_pem=70, password=30), (), []),
    ("one byte over: the largest file moves out", files(trust_bundle_pem=71, password=30), (),
     ["trust-bundle.pem"]),
    ("largest first, only as many as needed",
     files(trust_bundle_pem=60, truststore_p12=55, peers_jwks=20, peers_json=50, password=10), (),
     ["trust-bundle.pem", "truststore.p12"]),
    ("equal sizes: by name, so the layout is the same every pass",
     files(peers_json=60, trust_bundle_pem=60, password=10), (), ["peers.json"]),
    ("a file alone before stays alone while a split is needed, even if no longer the largest",
     files(trust_bundle_pem=60, peers_jwks=20, peers_json=50, password=10), ("peers.jwks",),
     ["trust-bundle.pem", "peers.jwks"]),
    ("back within one Secret: every file returns to it", files(trust_bundle_pem=40, peers_json=30),
     ("trust-bundle.pem", "peers.json"), []),
    ("a file alone before that no longer exists is not laid out",
     files(trust_bundle_pem=80, password=30), ("truststore.jks",), ["trust-bundle.pem"]),
    ("passwords, shared secrets and templates never move",
     files(trust_bundle_pem=50, password=40, shared=40, tpl=40), (), None),
    ("one file larger than a Secret cannot fit", files(trust_bundle_pem=101, password=1), (), None),
    ("every document alone, the rest exactly full",
     files(trust_bundle_pem=100, truststore_p12=100, truststore_jks=100, peers_jwks=100, peers_json=100,
           password=50, shared=50), (), ["trust-bundle.pem", "truststore.p12", "truststore.jks", "peers.jwks",
                                         "peers.json"]),
]


@pytest.mark.parametrize(("why", "data", "before", "alone"), CASES, ids=[c[0] for c in CASES])
def test_pack(why: str, data: Mapping[str, bytes], before: tuple[str, ...], alone: list[str] | None) -> None:
    packing = pack(data, BUDGET, before)
    if alone is None:
        assert packing is None and fill(data, BUDGET) > 1
        return
    assert packing is not None and fill(data, BUDGET) <= 1
    assert list(packing.alone) == alone
    # nothing lost, nothing twice, every Secret within the budget
    assert {**packing.shared, **packing.alone} == data and not packing.shared.keys() & packing.alone.keys()
    assert sum(len(v) for v in packing.shared.values()) <= BUDGET
    assert all(len(v) <= BUDGET for v in packing.alone.values())


def test_the_default_budget_is_what_kubernetes_allows_a_secret() -> None:
    data = files(trust_bundle_pem=SECRET_DATA_LIMIT - 32, password=32)
    assert pack(data) == pack(data, SECRET_DATA_LIMIT) and pack(data) is not None
    assert not pack(data).alone  # type: ignore[union-attr]
    assert pack({**data, "truststore.password": b"x" * 33}).alone  # type: ignore[union-attr]


@pytest.mark.parametrize(("data", "expected"), [
    (files(trust_bundle_pem=3, peers_json=9), ("peers.json", 9)),
    (files(trust_bundle_pem=9, peers_json=9), ("peers.json", 9)),
    ({}, ("", 0)),
])
def test_largest(data: Mapping[str, bytes], expected: tuple[str, int]) -> None:
    assert largest(data) == expected


_FILES = ["trust-bundle.pem", "truststore.p12", "truststore.jks", "peers.jwks", "peers.json", "truststore.password",
          "shared-a.key", "app.conf"]
_layouts = st.dictionaries(st.sampled_from(_FILES), st.integers(0, 3 * BUDGET), min_size=1)


@given(_layouts, st.sampled_from(_FILES), st.integers(1, BUDGET),
       st.sets(st.sampled_from(_FILES[:5])))
def test_fill_is_the_fit_and_grows_with_every_byte(sizes: dict[str, int], grown: str, extra: int,
                                                   before: set[str]) -> None:
    data = {f: b"x" * n for f, n in sizes.items()}
    assert (fill(data, BUDGET) <= 1) == (pack(data, BUDGET, before) is not None)
    bigger = {**data, grown: data.get(grown, b"") + b"x" * extra}
    assert fill(bigger, BUDGET) >= fill(data, BUDGET)  # so the trust planner can estimate how many peers fit
