"""trustwire.pki — the pure crypto layer of trustwire.

Everything here is a pure function of its inputs plus OS randomness: no Kubernetes,
no network, no files, no clock (callers pass ``now``). That keeps issuance, rotation
decisions and their tests deterministic, and lets the same code run in the operator,
the CLI and the benchmarks. Errors are :class:`PKIError` (bad material) or
:class:`TokenError` (refused token); neither ever carries key material.

Modules: :mod:`.keys` (key generation/PEM), :mod:`.certs` (CA and leaf issuance),
:mod:`.inspect` (problems with existing material), :mod:`.stores` (PKCS#12/JKS),
:mod:`.jks` (the JKS file format),
:mod:`.jwk` (JWK/JWKS/thumbprints), :mod:`.tokens` (JWT sign/verify).
"""

from trustwire.pki.certs import (
    BACKDATE,
    cert_to_pem,
    certs_to_pem,
    create_ca,
    create_leaf,
    dns_sans,
    fingerprint_sha256,
    is_ca,
    is_signed_by,
    load_certificates,
    not_after,
    not_before,
    random_serial,
    serial_hex,
    subject_common_name,
    uri_sans,
)
from trustwire.pki.errors import PKIError
from trustwire.pki.hmac import HMAC_RANDOM_BYTES, HmacAlgorithm, generate_hmac_key, hmac_jwk, hmac_key_fits
from trustwire.pki.inspect import check_ca, check_leaf
from trustwire.pki.jks import JksStore, read_jks
from trustwire.pki.jwk import (
    JwtAlgorithm,
    generate_jwt_key,
    jwk_thumbprint,
    jwks,
    jwt_algorithm_accepts,
    jwt_algorithm_of_jwk,
    private_jwk,
    public_jwk,
    public_key_from_jwk,
)
from trustwire.pki.keys import (
    KeyAlgorithm,
    PrivateKey,
    PublicKey,
    generate_private_key,
    key_algorithm_of,
    load_private_key,
    private_key_to_pem,
    public_key_matches,
)
from trustwire.pki.stores import (
    jks_keystore,
    jks_truststore,
    pkcs12_keystore,
    pkcs12_truststore,
    random_password,
    read_pkcs12,
    truststore_alias,
)
from trustwire.pki.tokens import (
    TokenError,
    generate_shared_secret,
    sign_hs256,
    sign_token,
    verify_hs256,
    verify_token,
)

__all__ = [
    "BACKDATE",
    "HMAC_RANDOM_BYTES",
    "HmacAlgorithm",
    "JksStore",
    "JwtAlgorithm",
    "KeyAlgorithm",
    "PKIError",
    "PrivateKey",
    "PublicKey",
    "TokenError",
    "cert_to_pem",
    "certs_to_pem",
    "check_ca",
    "check_leaf",
    "create_ca",
    "create_leaf",
    "dns_sans",
    "fingerprint_sha256",
    "generate_hmac_key",
    "generate_jwt_key",
    "generate_private_key",
    "generate_shared_secret",
    "hmac_jwk",
    "hmac_key_fits",
    "is_ca",
    "is_signed_by",
    "jks_keystore",
    "jks_truststore",
    "jwk_thumbprint",
    "jwks",
    "jwt_algorithm_accepts",
    "jwt_algorithm_of_jwk",
    "key_algorithm_of",
    "load_certificates",
    "load_private_key",
    "not_after",
    "not_before",
    "pkcs12_keystore",
    "pkcs12_truststore",
    "private_jwk",
    "private_key_to_pem",
    "public_jwk",
    "public_key_from_jwk",
    "public_key_matches",
    "random_password",
    "random_serial",
    "read_jks",
    "read_pkcs12",
    "serial_hex",
    "sign_hs256",
    "sign_token",
    "subject_common_name",
    "truststore_alias",
    "uri_sans",
    "verify_hs256",
    "verify_token",
]
