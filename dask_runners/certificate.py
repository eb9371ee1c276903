"""The job's self-signed certificate, encoded in DER by this module.

A job's TLS credential is one P-256 key and a certificate that names
itself as issuer and is its own certificate authority (see
:class:`~dask_runners.security.JobCredentials`). The key and its signature
come from ``cryptography``'s primitives; the certificate's fixed shape is
written here, field by field, after RFC 5280. ``cryptography.x509`` would
build the same certificate, but importing it costs the scheduler rank about
20 ms just before it publishes its address, which every other rank waits for.

The certificate holds:

* version 3 and a random positive 159-bit serial number;
* issuer and subject: the one common name given;
* validity from ``not_before`` to ``not_after`` (UTCTime before 2050,
  GeneralizedTime from then on);
* basic constraints, critical: a certificate authority with no
  intermediate below it;
* a subject alternative name, ``dask-runners``;
* an ECDSA signature with SHA-256 over all of the above.
"""

from __future__ import annotations

import base64
import datetime
import os

ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
COMMON_NAME = "2.5.4.3"
BASIC_CONSTRAINTS = "2.5.29.19"
SUBJECT_ALT_NAME = "2.5.29.17"
DNS_NAME = "dask-runners"


def der(tag: int, content: bytes) -> bytes:
    """One DER element: ``tag``, the length of ``content``, ``content``."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def sequence(*items: bytes) -> bytes:
    return der(0x30, b"".join(items))


def integer(value: int) -> bytes:
    """A non-negative INTEGER, with a leading zero byte where the top bit is set."""
    return der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def oid(dotted: str) -> bytes:
    first, second, *rest = (int(part) for part in dotted.split("."))
    encoded = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        encoded.extend(reversed(chunk))
    return der(0x06, bytes(encoded))


def time(moment: datetime.datetime) -> bytes:
    """UTCTime before 2050, GeneralizedTime from then on (RFC 5280, 4.1.2.5)."""
    moment = moment.astimezone(datetime.timezone.utc)
    if moment.year < 2050:
        return der(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return der(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


def name(common_name: str) -> bytes:
    """A Name of one relative name: the common name, as a UTF8String."""
    return sequence(der(0x31, sequence(oid(COMMON_NAME), der(0x0C, common_name.encode()))))


def extension(identifier: str, value: bytes, critical: bool = False) -> bytes:
    flag = der(0x01, b"\xff") if critical else b""
    return sequence(oid(identifier), flag, der(0x04, value))


def to_be_signed(common_name: str, public_key_info: bytes, not_before, not_after, serial: int) -> bytes:
    """The TBSCertificate: everything the signature covers."""
    extensions = sequence(
        extension(BASIC_CONSTRAINTS, sequence(der(0x01, b"\xff"), integer(0)), critical=True),
        extension(SUBJECT_ALT_NAME, sequence(der(0x82, DNS_NAME.encode()))),
    )
    return sequence(
        der(0xA0, integer(2)),  # [0] version: v3
        integer(serial),
        sequence(oid(ECDSA_WITH_SHA256)),
        name(common_name),
        sequence(time(not_before), time(not_after)),
        name(common_name),
        public_key_info,
        der(0xA3, extensions),  # [3] extensions
    )


def pem(kind: str, data: bytes) -> str:
    text = base64.b64encode(data).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----", ""])


def self_signed(common_name: str, valid_days: int) -> tuple[str, str]:
    """A new P-256 key and its self-signed certificate authority: ``(certificate, key)`` in PEM.

    Valid from an hour ago (clocks differ a little) for ``valid_days``.
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public_key_info = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    serial = (int.from_bytes(os.urandom(20), "big") >> 1) or 1
    signed = to_be_signed(
        common_name,
        public_key_info,
        now - datetime.timedelta(hours=1),
        now + datetime.timedelta(days=valid_days),
        serial,
    )
    signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
    certificate = sequence(signed, sequence(oid(ECDSA_WITH_SHA256)), der(0x03, b"\x00" + signature))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem("CERTIFICATE", certificate), key_pem.decode()
