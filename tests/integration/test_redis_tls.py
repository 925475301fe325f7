"""TLS to the data nodes (REDIS_TLS, REDIS_TLS_CA_FILE, rediss://) against a real redis-server serving TLS only,
with a certificate from a CA made for the test: the services' client verifies it with the configured CA and refuses
a server it cannot verify."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import ConnectionError as RedisConnectionError

from flareport_cli.localredis import end_process, free_port
from flareport_common.redisconn import connect
from flareport_common.settings import load_reconciler
from fptest.waiting import wait_for


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1; (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flareport test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(paths[2], key)
    return paths


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks TLS only (no plain port); (its TLS port, the CA file)."""
    folder = tmp_path_factory.mktemp("redis-tls")
    ca, cert, key = _certificates(folder)
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port, ca
    finally:
        end_process(process)


async def _ping(env: dict[str, str]) -> bool:
    client = connect(load_reconciler(env).common)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


def _trusting(port: int, ca: Path, scheme: str = "redis") -> dict[str, str]:
    env = {"REDIS_URL": f"{scheme}://127.0.0.1:{port}", "REDIS_TLS_CA_FILE": str(ca)}
    return env if scheme == "rediss" else {**env, "REDIS_TLS": "true"}


async def _started(port: int, ca: Path) -> None:
    async def up() -> bool:
        try:
            return await _ping(_trusting(port, ca))
        except RedisConnectionError:
            return False  # not listening yet

    await wait_for(up, timeout=15, interval=0.05, what="the TLS redis-server answering")


async def test_redis_tls_with_the_configured_ca_reaches_a_tls_only_server(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    await _started(port, ca)  # REDIS_TLS with the server's CA connects
    assert await _ping(_trusting(port, ca, "rediss")), "a rediss:// URL with the CA file should connect too"


async def test_a_server_the_client_cannot_verify_is_refused(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    await _started(port, ca)
    # Without the test CA the system's CAs are used, and they never signed this certificate.
    with pytest.raises(RedisConnectionError, match=r"(?i)certificate"):
        await _ping({"REDIS_URL": f"redis://127.0.0.1:{port}", "REDIS_TLS": "true"})
    # Plain text to a TLS-only port is no Redis conversation at all.
    with pytest.raises(RedisConnectionError):
        await _ping({"REDIS_URL": f"redis://127.0.0.1:{port}"})
