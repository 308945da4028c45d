"""The JKS file format of trustwire.pki.jks, byte by byte against the format's definition.

The entries here hold arbitrary bytes: the format does not look inside keys or certificates.
That Java and keytool read what we write, and that we read what keytool writes, is proven
in tests/interop/test_java.py.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

from trustwire.pki import PKIError
from trustwire.pki.jks import JksKeyEntry, JksStore, JksTrustedEntry, protect_key, read_jks, recover_key, write_jks

PASSWORD = "store-pässword"
SALT = bytes(range(20))
KEY = JksKeyEntry("service", 1_900_000_000_000, b"\x30\x82pkcs8-key-bytes" * 9, (b"leaf-der", b"ca-der"))
TRUSTED = JksTrustedEntry("peer-ca", 1_800_000_000_000, b"peer-ca-der")


def utf16(text: str) -> bytes:
    return text.encode("utf-16-be")


def sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()  # noqa: S324 - the format's hash


def test_round_trip_keeps_every_entry_in_order() -> None:
    data = write_jks([KEY], [TRUSTED], PASSWORD)
    assert read_jks(data, PASSWORD) == JksStore((KEY,), (TRUSTED,))


def test_layout_header_entries_and_mighty_aphrodite_trailer() -> None:
    data = write_jks([], [TRUSTED], PASSWORD)
    magic, version, count = struct.unpack(">III", data[:12])
    assert (magic, version, count) == (0xFEEDFEED, 2, 1)
    expected_entry = (
        struct.pack(">I", 2) + struct.pack(">H", 7) + b"peer-ca" + struct.pack(">q", TRUSTED.timestamp_ms)
        + struct.pack(">H", 5) + b"X.509" + struct.pack(">I", len(TRUSTED.cert)) + TRUSTED.cert
    )
    assert data[12:-20] == expected_entry
    assert data[-20:] == sha1(utf16(PASSWORD) + b"Mighty Aphrodite" + data[:-20])


def test_key_protection_is_suns_sha1_keystream() -> None:
    pkcs8 = KEY.pkcs8
    info = protect_key(pkcs8, PASSWORD, SALT)
    # EncryptedPrivateKeyInfo: SEQUENCE { AlgorithmIdentifier(1.3.6.1.4.1.42.2.17.1.1, NULL), OCTET STRING }
    algorithm = bytes.fromhex("300e060a2b060104012a021101010500")
    protected_len = 20 + len(pkcs8) + 20
    assert info[:2] == bytes([0x30, 0x81]) and info[3:3 + len(algorithm)] == algorithm
    protected = info[-protected_len:]
    assert protected[:20] == SALT
    first = sha1(utf16(PASSWORD) + SALT)
    second = sha1(utf16(PASSWORD) + first)
    stream = first + second
    assert bytes(a ^ b for a, b in zip(protected[20:60], stream, strict=True)) == pkcs8[:40]
    assert protected[-20:] == sha1(utf16(PASSWORD) + pkcs8)
    assert recover_key(info, PASSWORD) == pkcs8
    with pytest.raises(PKIError, match="does not open"):
        recover_key(info, "other")


def test_each_key_gets_a_fresh_salt_unless_one_is_given() -> None:
    assert write_jks([KEY], [], PASSWORD) != write_jks([KEY], [], PASSWORD)
    assert write_jks([KEY], [], PASSWORD, salt=SALT) == write_jks([KEY], [], PASSWORD, salt=SALT)


def test_plain_key_never_appears_in_the_file() -> None:
    assert KEY.pkcs8[-32:] not in write_jks([KEY], [], PASSWORD)


@pytest.mark.parametrize(
    ("alias", "encoded"),
    [
        ("ca", b"ca"),
        ("ünï", "ünï".encode()),
        ("a\x00b", b"a\xc0\x80b"),  # modified UTF-8: NUL is two bytes
        ("😀", b"\xed\xa0\xbd\xed\xb8\x80"),  # modified UTF-8: each surrogate on its own
    ],
)
def test_aliases_are_javas_modified_utf8(alias: str, encoded: bytes) -> None:
    entry = JksTrustedEntry(alias, 0, b"der")
    data = write_jks([], [entry], PASSWORD)
    assert data[16:18 + len(encoded)] == struct.pack(">H", len(encoded)) + encoded
    assert read_jks(data, PASSWORD).trusted == (entry,)


def test_wrong_password_and_damage_are_pkierrors_without_the_password() -> None:
    data = write_jks([KEY], [TRUSTED], PASSWORD)
    flipped = data[:40] + bytes([data[40] ^ 1]) + data[41:]
    for blob, password, message in [
        (data, "wrong", "does not open"),
        (flipped, PASSWORD, "does not open"),
        (data[:-1], PASSWORD, "does not open|truncated"),
        (b"", PASSWORD, "truncated"),
        (b"\x00" * 40, PASSWORD, "not a JKS"),
    ]:
        with pytest.raises(PKIError, match=message) as info:
            read_jks(blob, password)
        assert PASSWORD not in str(info.value)


def _resealed(body: bytes) -> bytes:
    return body + sha1(utf16(PASSWORD) + b"Mighty Aphrodite" + body)


def test_unknown_entries_and_trailing_bytes_are_refused() -> None:
    body = write_jks([], [TRUSTED], PASSWORD)[:-20]
    with pytest.raises(PKIError, match="unknown type 3"):
        read_jks(_resealed(body[:12] + struct.pack(">I", 3) + body[16:]), PASSWORD)
    with pytest.raises(PKIError, match="trailing"):
        read_jks(_resealed(body + b"x"), PASSWORD)
    with pytest.raises(PKIError, match=r"not X\.509"):
        read_jks(_resealed(body.replace(b"X.509", b"X.508")), PASSWORD)


def test_writer_refuses_what_java_could_not_read() -> None:
    for keys, trusted, password, message in [
        ([KEY], [], "", "non-empty"),
        ([KEY], [JksTrustedEntry("service", 0, b"der")], PASSWORD, "unique"),
        ([], [JksTrustedEntry("", 0, b"der")], PASSWORD, "non-empty"),
        ([JksKeyEntry("k", 0, b"key", ())], [], PASSWORD, "chain"),
        ([], [JksTrustedEntry("x" * 70_000, 0, b"der")], PASSWORD, "too long"),
    ]:
        with pytest.raises(PKIError, match=message):
            write_jks(keys, trusted, password)
    with pytest.raises(PKIError, match="salt"):
        protect_key(b"key", PASSWORD, b"short")
