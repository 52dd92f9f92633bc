"""TLS: the server's SSL context from the ``--ssl-*`` options, ALPN, and the facts of a connection.

Everything here runs on the standard :mod:`ssl` module, the same under asyncio and uvloop: both
loops take the context in ``connect_accepted_socket`` and expose the connection's ``SSLObject``
as the transport's ``"ssl_object"`` extra info.

A certificate, key, password or CRL that cannot be used stops the server before it binds, with
one :class:`~refserver.config.ConfigError` line naming the option and the file: OpenSSL's own
messages ("[SSL] PEM lib (_ssl.c:3917)") name neither.
"""

from __future__ import annotations

import re
import ssl

from .config import ConfigError

#: The ALPN protocol ids (RFC 7301) each ``--http`` choice offers, in the server's preference.
ALPN_BY_HTTP = {"auto": ("h2", "http/1.1"), "1": ("http/1.1",), "2": ("h2",)}

#: The protocol numbers of the TLS versions (RFC 8446 §4.2.1, RFC 5246 §6.2.1), by the names
#: ``SSLObject.version()`` gives them.
TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

_MIN_VERSION = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

_PEM_CERT_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----"
)
_PEM_KEY_RE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_PEM_CRL_MARK = "-----BEGIN X509 CRL-----"


class ServerContext(ssl.SSLContext):
    """A server-side context that also keeps what the ASGI ``tls`` extension reports and the
    ssl module gives only at creation: the server certificate as PEM and the cipher suites'
    numbers (``SSLObject.cipher()`` gives a name)."""

    server_cert: str | None = None
    cipher_ids: dict = {}  # noqa: RUF012 - a default; each context sets its own


class _NeedPassword(Exception):
    """OpenSSL asked for a password that was not given (instead of prompting on the terminal)."""


def make_context(config) -> ServerContext | None:
    """The SSL context for ``config``, or None when TLS is off (no ``--ssl-certfile``)."""
    certfile = config.ssl_certfile
    if certfile is None:
        return None
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MIN_VERSION[config.ssl_protocol_min]
    # The ssl module's default already; stated because HTTPS depends on it (CRIME).
    context.options |= ssl.OP_NO_COMPRESSION
    if config.ssl_ciphers is not None:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise ConfigError(
                f"--ssl-ciphers {config.ssl_ciphers!r}: no cipher suite matches this OpenSSL "
                "cipher string"
            ) from None
    context.server_cert = _server_certificate(certfile)
    _load_chain(context, certfile, config.ssl_keyfile, config.ssl_keyfile_password)
    if config.ssl_ca_certs is not None:
        _load_verify(context, "--ssl-ca-certs", config.ssl_ca_certs)
    context.verify_mode = _CERT_REQS[config.ssl_cert_reqs]
    if config.ssl_crl is not None:
        text = _read("--ssl-crl", config.ssl_crl)
        if _PEM_CRL_MARK not in text:
            raise ConfigError(
                f"--ssl-crl {config.ssl_crl}: no PEM certificate revocation list "
                f"({_PEM_CRL_MARK}) in the file"
            )
        _load_verify(context, "--ssl-crl", config.ssl_crl)
        # The leaf only: the CA that signed the client certificate is the one that publishes
        # this list; the chain above it would need a list from each of its CAs.
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    context.set_alpn_protocols(ALPN_BY_HTTP[config.http])
    # OpenSSL's id of a TLS cipher is 0x0300 followed by the suite's two IANA bytes
    # (SSL_CIPHER_get_id); get_ciphers() is the supported way to read it.
    context.cipher_ids = {
        c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers() if c["id"] >> 16 == 0x0300
    }
    return context


def _read(flag: str, path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None


def _server_certificate(certfile: str) -> str:
    """The first certificate of ``certfile`` as PEM, checked to be one that OpenSSL parses."""
    match = _PEM_CERT_RE.search(_read("--ssl-certfile", certfile))
    if match is None:
        raise ConfigError(
            f"--ssl-certfile {certfile}: no PEM certificate "
            "(-----BEGIN CERTIFICATE-----) in the file"
        )
    try:
        pem = ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(match.group(0)))
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cadata=pem)
    except (ValueError, ssl.SSLError):
        raise ConfigError(
            f"--ssl-certfile {certfile}: its first PEM certificate does not parse"
        ) from None
    return pem


def _load_chain(context, certfile: str, keyfile: str | None, password: str | None) -> None:
    """The certificate chain and its key; each failure names the option that is wrong."""
    key_flag, key_path = ("--ssl-keyfile", keyfile) if keyfile else ("--ssl-certfile", certfile)
    if not _PEM_KEY_RE.search(_read(key_flag, key_path)):
        hint = "" if keyfile else "; give it with --ssl-keyfile"
        raise ConfigError(
            f"{key_flag} {key_path}: no PEM private key "
            f"(-----BEGIN ... PRIVATE KEY-----) in the file{hint}"
        )
    asked = []

    def give_password():
        # A callable, not the string: with no password given, OpenSSL would otherwise prompt on
        # the terminal and hang a server started by a supervisor.
        asked.append(True)
        if password is None:
            raise _NeedPassword
        return password

    try:
        context.load_cert_chain(certfile, keyfile, password=give_password)
    except _NeedPassword:
        raise ConfigError(
            f"{key_flag} {key_path}: the private key is encrypted and "
            "--ssl-keyfile-password is not given"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"{key_flag} {key_path}: the private key does not match the "
                f"certificate of --ssl-certfile {certfile}"
            ) from None
        if asked:
            raise ConfigError(
                f"--ssl-keyfile-password: wrong password for the private key in {key_path}"
            ) from None
        raise ConfigError(
            f"{key_flag} {key_path}: the PEM private key does not parse ({_reason(exc)})"
        ) from None


def _load_verify(context, flag: str, path: str) -> None:
    _read(flag, path)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(f"{flag} {path}: cannot load it ({_reason(exc)})") from None


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason, without the ssl module's source line: "PEM lib", "no certificate or
    crl found"."""
    text = exc.args[1] if len(exc.args) > 1 else str(exc)
    return re.sub(r"^\[[^\]]*\] |\s*\(_ssl\.c:\d+\)$", "", str(text))


# ------------------------------------------------------------------ facts of one connection


def negotiated_protocol(transport) -> str | None:
    """The ALPN protocol chosen on ``transport`` ("h2", "http/1.1"), None without ALPN or TLS."""
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object.selected_alpn_protocol() if ssl_object is not None else None


def asgi_tls_extension(transport) -> dict | None:
    """The ASGI ``tls`` scope extension (version 0.2) of a connection; None in cleartext, where
    the extension must be absent.

    ``client_cert_error`` is always None: a client certificate that fails verification ends the
    handshake, so no request ever reaches the application with one. The facts do not change
    during a connection: made once per connection, a copy of the dict can serve each request.
    """
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    context = ssl_object.context
    chain = _client_chain(ssl_object)
    cipher = ssl_object.cipher()
    return {
        "server_cert": getattr(context, "server_cert", None),
        "client_cert_chain": chain,
        "client_cert_name": _rfc4514(ssl_object.getpeercert().get("subject")) if chain else None,
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(ssl_object.version()),
        "cipher_suite": getattr(context, "cipher_ids", {}).get(cipher[0]) if cipher else None,
    }


def _client_chain(ssl_object) -> list:
    """The client's certificates as PEM, its own first, then the rest of the chain it sent.

    From Python 3.13 ``get_unverified_chain()`` gives the whole chain the client sent; before
    it, the ssl module exposes only the client's own certificate, so the list holds that one.
    """
    leaf = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        return []
    chain = [leaf]
    sent = getattr(ssl_object, "get_unverified_chain", None)
    if sent is not None:
        try:
            rest = [der for der in sent() or () if isinstance(der, bytes)]
        except (AttributeError, ValueError):  # a resumed session on some 3.13/3.14 releases
            rest = []
        chain.extend(rest[1:] if rest and rest[0] == leaf else rest)
    return [ssl.DER_cert_to_PEM_cert(der) for der in chain]


#: RFC 4514 §3's short names, by the long names the ssl module reports (OpenSSL's); other
#: known attributes by their object identifiers, as §2.3 asks for types without a short name.
_RFC4514_TYPES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
    "emailAddress": "1.2.840.113549.1.9.1",
    "serialNumber": "2.5.4.5",
    "surname": "2.5.4.4",
    "givenName": "2.5.4.42",
    "title": "2.5.4.12",
    "initials": "2.5.4.43",
    "generationQualifier": "2.5.4.44",
    "dnQualifier": "2.5.4.46",
    "pseudonym": "2.5.4.65",
    "businessCategory": "2.5.4.15",
    "postalCode": "2.5.4.17",
    "organizationIdentifier": "2.5.4.97",
    "jurisdictionCountryName": "1.3.6.1.4.1.311.60.2.1.3",
    "jurisdictionStateOrProvinceName": "1.3.6.1.4.1.311.60.2.1.2",
    "jurisdictionLocalityName": "1.3.6.1.4.1.311.60.2.1.1",
}


def _rfc4514(subject) -> str | None:
    """A subject as the ssl module decodes it (a sequence of RDNs, each a sequence of
    (type, value) pairs) as an RFC 4514 string: the last RDN first, multi-valued RDNs joined by
    ``+``. A type OpenSSL names but the table above does not keep OpenSSL's name."""
    if subject is None:
        return None
    return ",".join(
        "+".join(f"{_RFC4514_TYPES.get(kind, kind)}={_escape_dn(value)}" for kind, value in rdn)
        for rdn in reversed(subject)
    )


def _escape_dn(value: str) -> str:
    """RFC 4514 §2.4: the special characters anywhere, a leading space or ``#``, a trailing
    space, and NUL."""
    out = []
    for index, char in enumerate(value):
        if char in ',+"\\<>;' or (char in " #" and index == 0):
            out.append("\\" + char)
        elif char == " " and index == len(value) - 1:
            out.append("\\ ")
        elif char == "\0":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)
