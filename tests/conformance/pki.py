"""A test PKI made by the tests: root CA -> intermediate -> leaf certificates, one per case.

The client trusts only the root (``ca.pem``); servers send the leaf and the intermediate,
except ``missing_intermediate``, which sends the leaf alone, as a misconfigured server does.
EC P-256 keys: fast to make.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DAY = dt.timedelta(days=1)
LEAF_DAYS = 20     # the leaf expires first: cert_days is its days left


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer: str, issuer_key, not_before: dt.datetime,
          not_after: dt.datetime, ca: bool, names: list[str] | None = None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        alt: list[x509.GeneralName] = []
        for name in names or []:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                    critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki(d: Path) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """(the root CA file, {case: (certificate chain file, key file)})."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    root_key, mid_key = _key(), _key()
    root = _cert("urltester conformance root", root_key, "urltester conformance root", root_key,
                 now - DAY, now + 365 * DAY, ca=True)
    mid = _cert("urltester conformance intermediate", mid_key, "urltester conformance root",
                root_key, now - DAY, now + 180 * DAY, ca=True)
    (d / "ca.pem").write_bytes(_pem(root))
    here = ["127.0.0.1", "localhost"]
    cases = {
        "valid": (now - DAY, now + LEAF_DAYS * DAY, here, True, True),
        "expired": (now - 30 * DAY, now - 2 * DAY, here, True, True),
        "not_yet_valid": (now + 2 * DAY, now + 30 * DAY, here, True, True),
        "wrong_host": (now - DAY, now + LEAF_DAYS * DAY, ["other.example"], True, True),
        "self_signed": (now - DAY, now + LEAF_DAYS * DAY, here, False, False),
        "missing_intermediate": (now - DAY, now + LEAF_DAYS * DAY, here, True, False),
        "tls1_0": (now - DAY, now + LEAF_DAYS * DAY, here, True, True),
    }
    out: dict[str, tuple[Path, Path]] = {}
    for case, (before, after, names, by_mid, send_mid) in cases.items():
        key = _key()
        if by_mid:
            leaf = _cert("127.0.0.1", key, "urltester conformance intermediate", mid_key,
                         before, after, ca=False, names=names)
        else:
            leaf = _cert("127.0.0.1", key, "127.0.0.1", key, before, after, ca=False, names=names)
        chain = _pem(leaf, mid) if send_mid else _pem(leaf)
        (d / f"{case}.pem").write_bytes(chain)
        (d / f"{case}.key").write_bytes(_key_pem(key))
        out[case] = (d / f"{case}.pem", d / f"{case}.key")
    return d / "ca.pem", out
