"""A secure stack's throw-away CA, its server certificate, and the files that hold secrets.

Made with the ``openssl`` command (Debian's ``openssl`` package, installed if missing), so no Python
dependency is needed; EC P-256 keys, so it takes milliseconds. The certificate names ``127.0.0.1``
and ``localhost``, where the stack's servers listen. The CA's key is deleted as soon as it signed
the server's certificate: nothing else can ever be signed by it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .processes import Log, ensure_apt_tool

CERT_DAYS = 30
"""Long enough for a dev stack left running; each ``up`` of a secure stack makes a new CA anyway."""


@dataclass(frozen=True)
class StackTls:
    """PEM files: the CA clients trust, the servers' certificate and key, and both in one file
    (Kafka's PEM keystore wants key and chain together)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    keystore_file: Path


def write_private(path: Path, text: str) -> Path:
    """Create ``path`` readable by its owner only (mode 0600) from the first byte: for secrets."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    return path


def _openssl(openssl: str, *args: str, cwd: Path) -> None:
    proc = subprocess.run([openssl, *args], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def make_tls(tls_dir: Path, *, log: Log = print) -> StackTls:
    """A new CA and a certificate it signed for 127.0.0.1/localhost, in ``tls_dir`` (mode 0700)."""
    openssl = ensure_apt_tool("openssl", "openssl", log=log)
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", str(CERT_DAYS),
        "-subj", "/CN=churnwatch local stack throw-away CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=tls_dir,
    )  # fmt: skip
    _openssl(openssl, "req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
             cwd=tls_dir)  # fmt: skip
    (tls_dir / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", str(CERT_DAYS), "-extfile", "server.ext",
        cwd=tls_dir,
    )  # fmt: skip
    for leftover in ("ca.key", "ca.srl", "server.csr", "server.ext"):
        (tls_dir / leftover).unlink(missing_ok=True)
    key, cert = tls_dir / "server.key", tls_dir / "server.pem"
    os.chmod(key, 0o600)
    keystore = write_private(tls_dir / "server-keystore.pem", key.read_text() + cert.read_text())
    return StackTls(ca_file=tls_dir / "ca.pem", cert_file=cert, key_file=key, keystore_file=keystore)
