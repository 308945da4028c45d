"""The checks of the leaf and its key: files present, chain, key, DNS and SPIFFE SANs, validity, renewal."""

from __future__ import annotations

from trustwire import pki
from trustwire.inspection.material import (
    JWT_FILES,
    REQUIRED_FILES,
    Finding,
    Material,
    fingerprint,
    namespace_of,
    relative,
    short,
    spiffe_uris,
)
from trustwire.plan.leaf import renewal_time as leaf_renewal_time
from trustwire.times import rfc3339


def check_files(m: Material) -> list[Finding]:
    missing = [name for name in REQUIRED_FILES if name not in m.files]
    jwt_present = [name for name in JWT_FILES if name in m.files]
    if jwt_present and len(jwt_present) < len(JWT_FILES):
        missing += [name for name in JWT_FILES if name not in m.files]
    if missing:
        return [Finding("files", False, f"missing: {', '.join(missing)}")]
    return [Finding("files", True, f"{len(m.files)} files present")]


def check_chain(m: Material) -> list[Finding]:
    if m.leaf is None or not m.cas:
        return [Finding("chain", False, m.chain_problem or m.cas_problem)]
    not_ca = [c for c in m.cas if not pki.is_ca(c)]
    if not_ca:
        return [Finding("chain", False,
                        f"ca.crt holds a certificate that is not a CA ({short(fingerprint(not_ca[0]))})")]
    issuer = next((ca for ca in m.cas if pki.is_signed_by(m.leaf, ca)), None)
    if issuer is None:
        return [Finding("chain", False, f"the leaf in tls.crt (serial {pki.serial_hex(m.leaf)}) "
                                        "is not signed by any CA in ca.crt")]
    if len(m.chain) > 1 and not pki.is_signed_by(m.leaf, m.chain[1]):
        return [Finding("chain", False, "tls.crt: the certificate after the leaf is not its issuer")]
    return [Finding("chain", True, f"leaf serial {pki.serial_hex(m.leaf)} signed by CA "
                                   f"{pki.subject_common_name(issuer) or '?'} ({short(fingerprint(issuer))})")]


def check_key(m: Material) -> list[Finding]:
    if m.leaf is None or m.key is None:
        return [Finding("private key", False, m.key_problem or m.chain_problem)]
    if not pki.public_key_matches(m.key, m.leaf):
        return [Finding("private key", False, "tls.key does not match the leaf certificate in tls.crt")]
    return [Finding("private key", True, f"tls.key matches the leaf ({pki.key_algorithm_of(m.key)})")]


def check_dns(m: Material) -> list[Finding]:
    if m.leaf is None:
        return [Finding("DNS SANs", False, m.chain_problem)]
    present = {n.lower() for n in pki.dns_sans(m.leaf)}
    expected = list(m.target.dns_names)
    if not expected:
        service = m.target.service_name or pki.subject_common_name(m.leaf)
        namespace = namespace_of(m)
        if not service or not namespace:
            return [Finding("DNS SANs", False,
                            "cannot tell the service name and namespace (no CN or SPIFFE ID)")]
        expected = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
                    f"{service}.{namespace}.svc.cluster.local"]
    missing = [n for n in expected if n.lower() not in present]
    if missing:
        return [Finding("DNS SANs", False, f"the leaf lacks DNS name(s) {', '.join(missing)}")]
    key_name = next((n for n in expected if n.endswith(".svc")), expected[0])
    return [Finding("DNS SANs", True, f"{len(present)} DNS name(s), including {key_name}")]


def check_spiffe(m: Material) -> list[Finding]:
    if m.leaf is None:
        return [Finding("SPIFFE ID", False, m.chain_problem)]
    uris, match = spiffe_uris(m.leaf)
    if not uris:
        return [Finding("SPIFFE ID", False, "the leaf has no spiffe:// URI SAN")]
    if len(uris) > 1:
        return [Finding("SPIFFE ID", False,
                        f"the leaf has {len(uris)} spiffe:// URI SANs; a SVID has exactly one")]
    if match is None:
        return [Finding("SPIFFE ID", False, f"{uris[0]} is not spiffe://<trustDomain>/ns/<namespace>/sid/<name>")]
    wrong = [f"{what} is {match[what]}, expected {want}"
             for what, want in (("namespace", m.target.namespace), ("name", m.target.identity))
             if want and match[what] != want]
    if wrong:
        return [Finding("SPIFFE ID", False, f"{uris[0]}: {'; '.join(wrong)}")]
    return [Finding("SPIFFE ID", True, uris[0])]


def check_validity(m: Material) -> list[Finding]:
    if m.leaf is None:
        return [Finding("validity", False, m.chain_problem)]
    problems = []
    start, end = pki.not_before(m.leaf), pki.not_after(m.leaf)
    if m.now < start:
        problems.append(f"the leaf is not valid before {rfc3339(start)}")
    if m.now >= end:
        problems.append(f"the leaf expired at {rfc3339(end)} ({relative(end, m.now)})")
    for ca in m.cas:
        if m.now >= pki.not_after(ca):
            problems.append(f"CA {short(fingerprint(ca))} in ca.crt expired at {rfc3339(pki.not_after(ca))}")
    if problems:
        return [Finding("validity", False, "; ".join(problems))]
    return [Finding("validity", True, f"leaf valid until {rfc3339(end)} ({relative(end, m.now)})")]


def check_renewal(m: Material) -> list[Finding]:
    if m.leaf is None:
        return [Finding("renewal", False, m.chain_problem)]
    due = m.target.renewal_time
    source = "status.certificate.renewalTime"
    if due is None:
        due = leaf_renewal_time(m.leaf, m.target.renew_before)
        source = f"renewBefore {m.target.renew_before.total_seconds() / 3600:.0f}h"
    if m.now >= due:
        return [Finding("renewal", False,
                        f"the leaf was due for renewal at {rfc3339(due)} ({relative(due, m.now)}, {source}) "
                        "and has not been renewed — is the operator running?")]
    return [Finding("renewal", True, f"renewal due {rfc3339(due)} ({relative(due, m.now)})")]
