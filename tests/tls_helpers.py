"""Certificates, keys and a CRL for TLS tests (trustme for the certificates, ``cryptography`` for
what trustme does not make), client contexts, and an in-memory handshake."""

from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import dataclass

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization


@dataclass
class TLSFiles:
    """Paths of PEM files in one directory; the certificates come from two unrelated CAs."""

    ca: trustme.CA
    ca_certs: str  # the CA that signed the server and client certificates
    certfile: str  # the server's certificate (for 127.0.0.1 and localhost)
    keyfile: str
    both: str  # the key and the certificate in one file
    encrypted_keyfile: str  # the server key, encrypted with PASSWORD
    other_keyfile: str  # a key that matches no certificate here
    garbage: str
    client: trustme.LeafCert  # a client certificate signed by ``ca``
    revoked: trustme.LeafCert  # another one, listed in ``crl``
    stranger: trustme.LeafCert  # a client certificate from another CA
    crl: str  # a CRL of ``ca`` revoking ``revoked``

    def options(self, **extra) -> dict:
        """Server options for HTTPS with this server certificate."""
        return {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile, **extra}


PASSWORD = "correct horse"


def make_tls_files(directory: str) -> TLSFiles:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.org", common_name="client one")
    revoked = ca.issue_cert("revoked@example.org", common_name="revoked one")
    stranger = trustme.CA().issue_cert("stranger@example.org", common_name="stranger")

    def path(name: str, data: bytes) -> str:
        full = os.path.join(directory, name)
        with open(full, "wb") as fh:
            fh.write(data)
        return full

    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )
    return TLSFiles(
        ca=ca,
        ca_certs=path("ca.pem", ca.cert_pem.bytes()),
        certfile=path("cert.pem", server.cert_chain_pems[0].bytes()),
        keyfile=path("key.pem", server.private_key_pem.bytes()),
        both=path("both.pem", server.private_key_and_cert_chain_pem.bytes()),
        encrypted_keyfile=path("encrypted-key.pem", encrypted),
        other_keyfile=path("other-key.pem", trustme.CA().issue_cert("x").private_key_pem.bytes()),
        garbage=path("garbage.pem", b"this is no PEM file\n"),
        client=client,
        revoked=revoked,
        stranger=stranger,
        crl=path("crl.pem", _crl(ca, revoked)),
    )


def _crl(ca: trustme.CA, revoked: trustme.LeafCert) -> bytes:
    """A CRL signed by ``ca`` listing ``revoked``, valid from a minute ago for a day."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    serial = x509.load_pem_x509_certificate(revoked.cert_chain_pems[0].bytes()).serial_number
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    entry = (
        x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=1))
        .add_revoked_certificate(entry)
        .sign(ca_key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.PEM)


def client_context(
    files: TLSFiles,
    cert: trustme.LeafCert | None = None,
    alpn: list | None = None,
    maximum_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A client context trusting ``files.ca``, presenting ``cert`` if given."""
    context = ssl.create_default_context(cafile=files.ca_certs)
    if cert is not None:
        cert.configure_cert(context)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    if maximum_version is not None:
        context.maximum_version = maximum_version
    return context


def memory_handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext):
    """Handshake two in-memory TLS ends; returns (server SSLObject, client SSLObject)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end, out, peer_in in (("client", client, c_out, s_in),
                                        ("server", server, s_out, c_in)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            data = out.read()
            if data:
                peer_in.write(data)
        if all(done.values()):
            return server, client
    raise AssertionError("the in-memory handshake did not finish")


class FakeTransport:
    """Just the transport's extra info, as the loops give it."""

    def __init__(self, ssl_object=None):
        self.ssl_object = ssl_object

    def get_extra_info(self, name, default=None):
        return self.ssl_object if name == "ssl_object" else default
