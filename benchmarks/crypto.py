"""Crypto floor: the CPU time trustwire.pki needs per identity, for each KeyAlgorithm.

Why: every ServiceIdentity costs a CA key + certificate, a leaf key + certificate, a
JWT signing key + its JWK, and a PKCS#12 keystore + truststore (plus JKS on request).
That work is unavoidable, so it is the *floor* under any reconcile or scale
benchmark: if issuing 1,000 identities takes 60 s and the crypto floor is 20 s, 40 s
are spent elsewhere (API calls, planning, rendering). This script measures the floor
per step and per algorithm; ``crypto_floor_seconds`` gives the same number to other
benchmarks (``from benchmarks.crypto import crypto_floor_seconds``).

Steps timed per identity (single thread, wall clock via ``time.perf_counter``):

* ``ca``: generate the CA key and self-sign the CA certificate;
* ``leaf``: generate the leaf key and issue the leaf from the CA;
* ``jwt``: generate the JWT key for the algorithm's JWT counterpart (ECDSAP256→ES256,
  ECDSAP384→ES384, RSA*→RS256 with RSA-2048 as trustwire uses, Ed25519→EdDSA) and
  build its private and public JWK (thumbprint included);
* ``pkcs12``: two random passwords, the keystore (key, leaf, CA chain) and a truststore
  with one peer CA, modern profile (PBKDF2 10,000 rounds, AES-256, HMAC-SHA256);
* ``jks`` (only with ``--jks``): keystore and truststore in JKS.

RSA key generation searches for random primes, so its time varies a lot from run to
run: medians over ``--runs`` are reported, and more runs give steadier RSA numbers.

Usage::

    python benchmarks/crypto.py                # markdown table of medians, 5 runs
    python benchmarks/crypto.py --runs 21 --jks
    python benchmarks/crypto.py --json         # raw per-run timings and medians
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from trustwire.pki import (
    JwtAlgorithm,
    KeyAlgorithm,
    create_ca,
    create_leaf,
    generate_jwt_key,
    generate_private_key,
    jks_keystore,
    jks_truststore,
    pkcs12_keystore,
    pkcs12_truststore,
    private_jwk,
    public_jwk,
    random_password,
)

__all__ = ["JWT_FOR", "STEPS", "crypto_floor_seconds", "issue_identity", "main", "measure"]

#: The JWT algorithm benchmarked alongside each key algorithm.
JWT_FOR: dict[KeyAlgorithm, JwtAlgorithm] = {
    KeyAlgorithm.ECDSAP256: JwtAlgorithm.ES256,
    KeyAlgorithm.ECDSAP384: JwtAlgorithm.ES384,
    KeyAlgorithm.RSA2048: JwtAlgorithm.RS256,
    KeyAlgorithm.RSA3072: JwtAlgorithm.RS256,
    KeyAlgorithm.RSA4096: JwtAlgorithm.RS256,
    KeyAlgorithm.Ed25519: JwtAlgorithm.EdDSA,
}
STEPS = ("ca", "leaf", "jwt", "pkcs12", "jks")
_NOW = datetime(2030, 1, 1, tzinfo=UTC)


def issue_identity(
    algorithm: KeyAlgorithm, *, jks: bool = False, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Issue one identity's full material; return seconds spent per step (``jks`` only if asked)."""
    timings: dict[str, float] = {}

    t0 = clock()
    ca_key = generate_private_key(algorithm)
    ca = create_ca(ca_key, common_name="bench CA", now=_NOW, lifetime=timedelta(days=365))
    t1 = clock()
    leaf_key = generate_private_key(algorithm)
    leaf = create_leaf(
        ca,
        ca_key,
        leaf_key.public_key(),
        common_name="bench",
        dns_names=["bench", "bench.ns", "bench.ns.svc", "bench.ns.svc.cluster.local"],
        uri_sans=["spiffe://cluster.local/ns/ns/sid/bench"],
        now=_NOW,
        lifetime=timedelta(days=30),
    )
    t2 = clock()
    jwt_algorithm = JWT_FOR[algorithm]
    jwt_key = generate_jwt_key(jwt_algorithm)
    private_jwk(jwt_key, jwt_algorithm)
    public_jwk(jwt_key, jwt_algorithm)
    t3 = clock()
    keystore_password, truststore_password = random_password(), random_password()
    pkcs12_keystore(leaf_key, leaf, [ca], keystore_password)
    pkcs12_truststore([ca], truststore_password)  # stands in for the peer's CA: same cost
    t4 = clock()
    timings.update(ca=t1 - t0, leaf=t2 - t1, jwt=t3 - t2, pkcs12=t4 - t3)
    if jks:
        jks_keystore(leaf_key, leaf, [ca], keystore_password)
        jks_truststore([ca], truststore_password)
        timings["jks"] = clock() - t4
    return timings


def measure(
    algorithms: Sequence[KeyAlgorithm], runs: int, *, jks: bool = False
) -> dict[str, dict[str, list[float]]]:
    """Raw per-run seconds: ``{algorithm: {step: [run1, run2, ...], "total": [...]}}``."""
    results: dict[str, dict[str, list[float]]] = {}
    for algorithm in algorithms:
        per_step: dict[str, list[float]] = {}
        for _ in range(runs):
            timings = issue_identity(algorithm, jks=jks)
            for step, seconds in timings.items():
                per_step.setdefault(step, []).append(seconds)
            per_step.setdefault("total", []).append(sum(timings.values()))
        results[str(algorithm)] = per_step
    return results


def crypto_floor_seconds(
    identities: int, algorithm: KeyAlgorithm = KeyAlgorithm.ECDSAP256, *, sample: int = 20, jks: bool = False
) -> float:
    """Estimated single-core seconds of pure crypto to issue ``identities`` identities.

    Issues ``min(identities, sample)`` real identities and scales their *mean* time
    (the mean, not the median, is the right estimator for a sum) to ``identities``.
    Returns 0.0 for zero identities.
    """
    if identities < 0:
        raise ValueError("identities must be >= 0")
    if identities == 0:
        return 0.0
    n = max(1, min(identities, sample))
    totals = [sum(issue_identity(KeyAlgorithm(algorithm), jks=jks).values()) for _ in range(n)]
    return statistics.fmean(totals) * identities


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import cryptography

    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": _openssl_version(),
    }


def _openssl_version() -> str:
    from cryptography.hazmat.backends.openssl.backend import backend

    return str(backend.openssl_version_text())


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def markdown(results: dict[str, dict[str, list[float]]], runs: int, jks: bool) -> str:
    steps = [s for s in STEPS if s != "jks" or jks]
    header = ["algorithm", *[f"{s} ms" for s in steps], "total ms", "identities/s (1 core)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for algorithm, per_step in results.items():
        medians = [statistics.median(per_step[s]) for s in steps]
        total = statistics.median(per_step["total"])
        row = [algorithm, *[_ms(m) for m in medians], _ms(total), f"{1 / total:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"Medians of {runs} runs per algorithm; each run issues one complete identity.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="identities issued per algorithm (default 5)")
    parser.add_argument("--json", action="store_true", help="print raw timings and medians as JSON")
    parser.add_argument("--jks", action="store_true", help="also build the JKS keystore and truststore")
    parser.add_argument(
        "--algorithm",
        action="append",
        choices=[a.value for a in KeyAlgorithm],
        help="limit to these algorithms (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    algorithms = [KeyAlgorithm(a) for a in args.algorithm] if args.algorithm else list(KeyAlgorithm)
    results = measure(algorithms, args.runs, jks=args.jks)
    if args.json:
        payload: dict[str, Any] = {
            "machine": machine(),
            "runs": args.runs,
            "jks": args.jks,
            "seconds": results,
            "median_seconds": {
                alg: {step: statistics.median(values) for step, values in per_step.items()}
                for alg, per_step in results.items()
            },
        }
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        info = machine()
        print(
            f"Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
            f"cryptography {info['cryptography']}, {info['openssl']}\n"
        )
        print(markdown(results, args.runs, args.jks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
