"""Java's proprietary JKS key store format, written and read without third-party code.

Why our own: JKS is a small, frozen format (Java has written PKCS#12 by default since 9 and
never changed JKS), and the only Python library for it pulls a C extension without wheels,
so installing trustwire would need a compiler. What Java's ``sun.security.provider.JavaKeyStore``
writes, and this module with it:

* header: magic ``0xFEEDFEED``, version 2, the number of entries (big-endian 32-bit);
* each entry: tag (1 = private key, 2 = trusted certificate), alias (``DataOutput.writeUTF``:
  a 16-bit length and modified UTF-8), creation time in milliseconds (64-bit); then for a
  trusted certificate its type (``X.509``) and DER, for a private key the protected key
  (a DER ``EncryptedPrivateKeyInfo``) and its certificate chain, leaf first;
* trailer: SHA-1 over the password as UTF-16BE, the ASCII words ``Mighty Aphrodite`` and
  every byte before the trailer — the store's integrity check, and how a wrong password shows.

A private key is protected by Sun's ``KeyProtector``: a 20-byte random salt, a keystream of
chained SHA-1 digests (``d1 = SHA1(password || salt)``, ``dn = SHA1(password || dn-1)``)
XORed onto the PKCS#8 key, and SHA-1 over password and plain key as the check. This is weak
by today's standards and the reason Java deprecated JKS; it is here only for consumers that
insist on ``.jks``. SHA-1 is the format's, not a choice. The module is pure: bytes in, bytes out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from trustwire.pki.errors import PKIError

__all__ = ["JksKeyEntry", "JksStore", "JksTrustedEntry", "read_jks", "write_jks"]

_MAGIC = 0xFEEDFEED
_VERSION = 2
_TAG_KEY = 1
_TAG_TRUSTED = 2
_CERT_TYPE = "X.509"
_WHITENER = b"Mighty Aphrodite"
_SALT_LEN = 20
_DIGEST_LEN = 20
#: DER AlgorithmIdentifier of Sun's KeyProtector: OID 1.3.6.1.4.1.42.2.17.1.1, NULL parameters.
_KEY_PROTECTOR_ALG = bytes.fromhex("300e060a2b060104012a021101010500")


@dataclass(frozen=True)
class JksKeyEntry:
    """A PrivateKeyEntry: the plain PKCS#8 DER key and its certificate chain (DER, leaf first)."""

    alias: str
    timestamp_ms: int
    pkcs8: bytes
    chain: tuple[bytes, ...]


@dataclass(frozen=True)
class JksTrustedEntry:
    """A trustedCertEntry: one DER certificate."""

    alias: str
    timestamp_ms: int
    cert: bytes


@dataclass(frozen=True)
class JksStore:
    """The entries of a JKS file, in file order."""

    keys: tuple[JksKeyEntry, ...]
    trusted: tuple[JksTrustedEntry, ...]


def _password_bytes(password: str) -> bytes:
    # Java hashes the password's chars, two bytes each, big-endian: UTF-16BE.
    return password.encode("utf-16-be")


def _keystream(password: bytes, salt: bytes, length: int) -> bytes:
    stream = bytearray()
    digest = salt
    while len(stream) < length:
        digest = hashlib.sha1(password + digest).digest()  # noqa: S324 - the format's keystream
        stream += digest
    return bytes(stream[:length])


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def protect_key(pkcs8: bytes, password: str, salt: bytes) -> bytes:
    """Sun's KeyProtector: ``EncryptedPrivateKeyInfo`` holding salt, XORed key and check digest."""
    if len(salt) != _SALT_LEN:
        raise PKIError(f"JKS key salt must be {_SALT_LEN} bytes")
    pw = _password_bytes(password)
    check = hashlib.sha1(pw + pkcs8).digest()  # noqa: S324 - the format's check
    protected = salt + _xor(pkcs8, _keystream(pw, salt, len(pkcs8))) + check
    return _der(0x30, _KEY_PROTECTOR_ALG + _der(0x04, protected))


def recover_key(encrypted_info: bytes, password: str) -> bytes:
    """The plain PKCS#8 key of a KeyProtector ``EncryptedPrivateKeyInfo``; PKIError if the password is wrong."""
    body, rest = _der_read(encrypted_info, 0x30)
    if rest or not body.startswith(_KEY_PROTECTOR_ALG):
        raise PKIError("JKS key entry is not protected by Sun's KeyProtector")
    protected, rest = _der_read(body[len(_KEY_PROTECTOR_ALG):], 0x04)
    if rest or len(protected) < _SALT_LEN + _DIGEST_LEN:
        raise PKIError("JKS key entry is truncated")
    salt, encrypted, check = protected[:_SALT_LEN], protected[_SALT_LEN:-_DIGEST_LEN], protected[-_DIGEST_LEN:]
    pw = _password_bytes(password)
    pkcs8 = _xor(encrypted, _keystream(pw, salt, len(encrypted)))
    if not hmac.compare_digest(hashlib.sha1(pw + pkcs8).digest(), check):  # noqa: S324
        raise PKIError("JKS key entry does not open with the password")
    return pkcs8


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_read(data: bytes, tag: int) -> tuple[bytes, bytes]:
    """One DER element of type ``tag``: (its content, the bytes after it)."""
    if len(data) < 2 or data[0] != tag:
        raise PKIError("JKS key entry is not valid DER")
    n, pos = data[1], 2
    if n & 0x80:
        width = n & 0x7F
        if width == 0 or width > 4 or len(data) < 2 + width:
            raise PKIError("JKS key entry is not valid DER")
        n, pos = int.from_bytes(data[2:2 + width], "big"), 2 + width
    if len(data) < pos + n:
        raise PKIError("JKS key entry is truncated")
    return data[pos:pos + n], data[pos + n:]


def _utf(text: str) -> bytes:
    """Java's ``DataOutput.writeUTF``: modified UTF-8 of the UTF-16 code units, 16-bit length first."""
    raw = text.encode("utf-16-be", errors="surrogatepass")
    units = struct.unpack(f">{len(raw) // 2}H", raw)
    out = bytearray()
    for u in units:
        if 0 < u < 0x80:
            out.append(u)
        elif u < 0x800:
            out += bytes([0xC0 | u >> 6, 0x80 | u & 0x3F])
        else:
            out += bytes([0xE0 | u >> 12, 0x80 | u >> 6 & 0x3F, 0x80 | u & 0x3F])
    if len(out) > 0xFFFF:
        raise PKIError("JKS alias is too long")
    return struct.pack(">H", len(out)) + bytes(out)


def _from_utf(raw: bytes) -> str:
    units: list[int] = []
    i = 0
    while i < len(raw):
        b = raw[i]
        if b < 0x80:
            units.append(b)
            i += 1
        elif b >> 5 == 0b110 and i + 1 < len(raw):
            units.append((b & 0x1F) << 6 | raw[i + 1] & 0x3F)
            i += 2
        elif b >> 4 == 0b1110 and i + 2 < len(raw):
            units.append((b & 0x0F) << 12 | (raw[i + 1] & 0x3F) << 6 | raw[i + 2] & 0x3F)
            i += 3
        else:
            raise PKIError("JKS alias is not modified UTF-8")
    return struct.pack(f">{len(units)}H", *units).decode("utf-16-be", errors="surrogatepass")


def _blob(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _integrity(password: str, body: bytes) -> bytes:
    return hashlib.sha1(_password_bytes(password) + _WHITENER + body).digest()  # noqa: S324


def write_jks(
    keys: Sequence[JksKeyEntry], trusted: Sequence[JksTrustedEntry], password: str, *, salt: bytes | None = None
) -> bytes:
    """A JKS file of ``keys`` then ``trusted``, each key protected by ``password`` (as Java assumes).

    ``salt`` (20 bytes) fixes the key protection salt, for tests; by default each key gets a random one.
    """
    if not password:
        raise PKIError("store password must be a non-empty string")
    aliases = [e.alias for e in keys] + [e.alias for e in trusted]
    if len(set(aliases)) != len(aliases) or not all(aliases):
        raise PKIError("JKS aliases must be unique and non-empty")
    out = bytearray(struct.pack(">III", _MAGIC, _VERSION, len(aliases)))
    for key in keys:
        if not key.chain:
            raise PKIError("a JKS key entry needs its certificate chain")
        out += struct.pack(">I", _TAG_KEY) + _utf(key.alias) + struct.pack(">q", key.timestamp_ms)
        out += _blob(protect_key(key.pkcs8, password, salt or secrets.token_bytes(_SALT_LEN)))
        out += struct.pack(">I", len(key.chain))
        for der in key.chain:
            out += _utf(_CERT_TYPE) + _blob(der)
    for entry in trusted:
        out += struct.pack(">I", _TAG_TRUSTED) + _utf(entry.alias) + struct.pack(">q", entry.timestamp_ms)
        out += _utf(_CERT_TYPE) + _blob(entry.cert)
    return bytes(out + _integrity(password, bytes(out)))


class _Reader:
    """Sequential big-endian reads over a JKS body; running past the end is a PKIError."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PKIError("JKS file is truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def i64(self) -> int:
        value: int = struct.unpack(">q", self.take(8))[0]
        return value

    def utf(self) -> str:
        return _from_utf(self.take(struct.unpack(">H", self.take(2))[0]))

    def cert(self) -> bytes:
        if self.utf() != _CERT_TYPE:
            raise PKIError("JKS file holds a certificate that is not X.509")
        return self.take(self.u32())


def read_jks(data: bytes, password: str) -> JksStore:
    """The entries of a JKS file, private keys recovered with ``password``.

    PKIError if the file is not JKS, is corrupt, or does not open with the password.
    """
    data = bytes(data)
    if len(data) < 12 + _DIGEST_LEN:
        raise PKIError("JKS file is truncated")
    body, digest = data[:-_DIGEST_LEN], data[-_DIGEST_LEN:]
    r = _Reader(body)
    if r.u32() != _MAGIC or r.u32() != _VERSION:
        raise PKIError("not a JKS (version 2) file")
    if not hmac.compare_digest(_integrity(password, body), digest):
        raise PKIError("JKS file does not open with the password (wrong password or corrupt file)")
    keys: list[JksKeyEntry] = []
    trusted: list[JksTrustedEntry] = []
    for _ in range(r.u32()):
        tag, alias, stamp = r.u32(), r.utf(), r.i64()
        if tag == _TAG_KEY:
            pkcs8 = recover_key(r.take(r.u32()), password)
            chain = tuple(r.cert() for _ in range(r.u32()))
            keys.append(JksKeyEntry(alias, stamp, pkcs8, chain))
        elif tag == _TAG_TRUSTED:
            trusted.append(JksTrustedEntry(alias, stamp, r.cert()))
        else:
            raise PKIError(f"JKS file holds an entry of unknown type {tag}")
    if r.pos != len(body):
        raise PKIError("JKS file has trailing data")
    return JksStore(tuple(keys), tuple(trusted))
