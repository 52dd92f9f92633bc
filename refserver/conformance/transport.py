"""How the runner reaches a target: cleartext or TLS, and whether the HTTP/2 cases run.

With ``--tls`` the runner makes a throwaway certificate authority and a certificate for
127.0.0.1 (with the ``trustme`` package, imported only then, so the suite runs without it
otherwise), hands the certificate and key files to the server command as ``{certfile}`` and
``{keyfile}``, and verifies the server against that authority. A server the user started
(``--connect``) has a certificate the runner cannot know, so it is not verified.

Each connection offers one ALPN protocol: ``http/1.1`` for the HTTP/1.1 and WebSocket cases,
``h2`` for the HTTP/2 ones, so a server that negotiates by ALPN serves each case the protocol it
was written for.
"""

from __future__ import annotations

import os
import ssl


class TLSUnavailable(RuntimeError):
    """``--tls`` was asked for, but no certificate can be made here."""


class Certificate:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, written as PEM files."""

    def __init__(self, directory: str):
        try:
            import trustme
        except ImportError:
            raise TLSUnavailable(
                "--tls needs the trustme package to make a throwaway certificate "
                "(pip install trustme)"
            ) from None
        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1", "localhost")
        self.certfile = os.path.join(directory, "server-cert.pem")
        self.keyfile = os.path.join(directory, "server-key.pem")
        self.cafile = os.path.join(directory, "ca.pem")
        with open(self.certfile, "wb") as fh:
            fh.writelines(pem.bytes() for pem in issued.cert_chain_pems)
        issued.private_key_pem.write_to_path(self.keyfile)
        authority.cert_pem.write_to_path(self.cafile)


class Transport:
    """Cleartext, or TLS verified against ``certificate`` (unverified when it is None)."""

    def __init__(self, tls: bool = False, http2: bool = False, certificate=None):
        self.tls = tls
        self.http2 = http2
        self.certificate = certificate
        self._contexts: dict = {}

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def ws_scheme(self) -> str:
        return "wss" if self.tls else "ws"

    def placeholders(self) -> dict:
        cert = self.certificate
        return {
            "certfile": cert.certfile if cert else "",
            "keyfile": cert.keyfile if cert else "",
            "cafile": cert.cafile if cert else "",
        }

    def context(self, alpn: str) -> ssl.SSLContext | None:
        """The client context for connections that offer ``alpn`` (None in cleartext)."""
        if not self.tls:
            return None
        if alpn not in self._contexts:
            if self.certificate is not None:
                context = ssl.create_default_context(cafile=self.certificate.cafile)
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols([alpn])
            self._contexts[alpn] = context
        return self._contexts[alpn]


CLEARTEXT = Transport()
