"""Certificates and keys of the local control plane (see ``devcluster.py``).

One cluster CA signs every serving and client certificate: etcd's and the API
server's serving certificates, and one client certificate per component, whose
subject is what RBAC sees (``CN`` is the user, ``O`` the groups). ECDSA P-256 keys
keep generation in the milliseconds, so a fresh state directory costs nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
# The first address of the service range: the in-cluster `kubernetes` Service.
API_SERVICE_IP = "10.96.0.1"
API_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate: its file stem, subject and what it may be used for."""

    stem: str
    common_name: str
    organizations: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = field(default=("127.0.0.1",))


# Client identities follow the names the bootstrap RBAC policy grants rights to.
LEAF_CERTS = (
    CertSpec("etcd-server", "etcd", server=True, client=True, dns_names=("localhost",)),
    CertSpec("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True),
    CertSpec(
        "apiserver",
        "kube-apiserver",
        server=True,
        dns_names=API_DNS_NAMES,
        ip_addresses=("127.0.0.1", API_SERVICE_IP),
    ),
    CertSpec("admin", "icx-admin", ("system:masters",), client=True),
    CertSpec("kube-controller-manager", "system:kube-controller-manager", client=True),
    CertSpec("kube-scheduler", "system:kube-scheduler", client=True),
    # kwok plays every kubelet, so it needs to write any node's and pod's status.
    CertSpec("kwok", "kwok-controller", ("system:masters",), client=True),
    # The API server's identity towards a real kubelet (logs, exec), which asks the API
    # server whether that user may: system:masters may.
    CertSpec(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        ("system:masters",),
        client=True,
    ),
)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    # Backdated a minute so that a certificate is valid at once on every process.
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
    )


def make_ca(
    common_name: str = "icx-dev-cluster-ca",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(
    spec: CertSpec, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * spec.server + [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ] * spec.client
    builder = (
        _builder(_name(spec.common_name, spec.organizations), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in spec.dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ip_addresses]
    if spec.server:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def write_pki(pki_dir: Path) -> None:
    """Write ca.{crt,key}, <stem>.{crt,key} for LEAF_CERTS and the service-account key
    pair sa.{key,pub} into pki_dir, unless a previous run already did."""
    if (pki_dir / "complete").exists():
        return
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca()
    pem = serialization.Encoding.PEM
    _write(pki_dir / "ca.crt", ca_cert.public_bytes(pem))
    _write(pki_dir / "ca.key", _key_pem(ca_key), private=True)
    for spec in LEAF_CERTS:
        cert, key = make_leaf(spec, ca_cert, ca_key)
        _write(pki_dir / f"{spec.stem}.crt", cert.public_bytes(pem))
        _write(pki_dir / f"{spec.stem}.key", _key_pem(key), private=True)
    sa_key = _new_key()
    _write(pki_dir / "sa.key", _key_pem(sa_key), private=True)
    public = sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write(pki_dir / "sa.pub", public)
    (pki_dir / "complete").touch()


def issue_client_cert(
    pki_dir: Path, stem: str, common_name: str, organizations: tuple[str, ...]
) -> None:
    """Sign <stem>.{crt,key} with the CA that write_pki made: a client identity added
    later, such as a real node's (``system:node:<name>`` in ``system:nodes``)."""
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki_dir / 'ca.key'} is not the EC key write_pki makes")
    cert, key = make_leaf(CertSpec(stem, common_name, organizations, client=True), ca_cert, ca_key)
    _write(pki_dir / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))
    _write(pki_dir / f"{stem}.key", _key_pem(key), private=True)
