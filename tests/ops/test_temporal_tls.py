"""TLS to Temporal's frontend: ``PRINTFLOW_TEMPORAL_TLS_*`` make ``workflows.client.connect``
verify the server against the configured CA and present the client certificate (mutual TLS).

A TLS server on 127.0.0.1 that demands a client certificate from the test CA stands in for the
frontend: it records the certificate the client presents, then hangs up (it speaks no gRPC).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.settings import Settings
from workflows.client import connect, tls_config


def _issue(
    name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_no_tls_setting_means_plain_connections() -> None:
    assert tls_config(Settings()) is False
    assert tls_config(Settings(temporal_tls=True)) is not False


async def test_connect_presents_the_client_certificate_to_a_server_the_ca_vouches_for(
    tmp_path: Path,
) -> None:
    ca = _issue("printflow test CA")
    server = _issue("temporal.printflow.test", ca)
    client = _issue("printflow-worker", ca)
    ca_file = _write(tmp_path / "ca.pem", *ca)
    server_file = _write(tmp_path / "server.pem", *server)
    client_file = _write(tmp_path / "client.pem", *client)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_file))
    context.load_cert_chain(server_file, server_file.with_suffix(".key"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    presented: list[str] = []

    async def frontend(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("ssl_object").getpeercert()
        presented.append(dict(x[0] for x in peer["subject"])["commonName"])
        writer.close()

    listening = await asyncio.start_server(frontend, "127.0.0.1", 0, ssl=context)
    port = listening.sockets[0].getsockname()[1]
    settings = Settings(
        temporal_address=f"127.0.0.1:{port}",
        temporal_tls_ca=ca_file,
        temporal_tls_cert=client_file,
        temporal_tls_key=client_file.with_suffix(".key"),
        temporal_tls_server_name="temporal.printflow.test",
    )
    try:
        with contextlib.suppress(Exception):  # no gRPC behind the handshake
            await asyncio.wait_for(connect(settings), 10)
    finally:
        listening.close()
        await listening.wait_closed()
    assert presented and presented[0] == "printflow-worker", presented
