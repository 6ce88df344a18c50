"""HTTPS: `berth serve --tls-cert/--tls-key` with a self-signed certificate; the token realm
is advertised as https and skopeo pushes and pulls with certificate verification ON."""
from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import REPO_ROOT, Creds, free_port, lower_tempdir
from tests.fixtures.images import build_image

pytestmark = pytest.mark.e2e
ADMIN_PASSWORD = "tls-admin-password"


def self_signed(directory) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth-e2e")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def tls_berth():
    work = lower_tempdir("berth-tls-")
    cert, key = self_signed(work)
    port = free_port()
    env = {**os.environ, "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD}
    log = open(work / "berth.log", "wb")
    proc = subprocess.Popen(
        [str(REPO_ROOT / ".venv/bin/berth"), "serve", "--port", str(port), "--data", str(work / "data"),
         "--tls-cert", cert, "--tls-key", key],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    ctx = ssl.create_default_context(cafile=cert)
    base = f"https://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/healthz", context=ctx, timeout=1)
            break
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("berth did not come up over HTTPS:\n" + (work / "berth.log").read_text())
    yield base, ctx, cert, work
    proc.terminate()
    proc.wait(10)
    log.close()


def test_challenge_advertises_an_https_realm(tls_berth):
    base, ctx, _, _ = tls_berth
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base + "/v2/", context=ctx, timeout=5)
    assert err.value.code == 401
    challenge = err.value.headers["WWW-Authenticate"]
    assert f'realm="{base}/auth/token"' in challenge
    # plain HTTP is not served on the TLS port
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(base.replace("https", "http") + "/healthz", timeout=5)


def test_skopeo_push_and_pull_with_verified_tls(tls_berth, skopeo, workdir):
    base, ctx, cert, work = tls_berth
    host = base.removeprefix("https://")
    admin = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    req = urllib.request.Request(base + "/admin/tenants", data=json.dumps({"name": "acme"}).encode(),
                                 headers={"Authorization": admin, "Content-Type": "application/json"}, method="POST")
    assert urllib.request.urlopen(req, context=ctx, timeout=10).status == 201
    certs = work / "certs"
    certs.mkdir(exist_ok=True)
    (certs / "ca.crt").write_bytes(open(cert, "rb").read())
    img = build_image(workdir / "img", multi_arch=True, media="oci", layout="oci")
    creds = str(Creds("admin", ADMIN_PASSWORD))
    skopeo("copy", "--all", "--preserve-digests", "--dest-cert-dir", str(certs), "--dest-creds", creds,
           img.source, f"docker://{host}/acme/app:1.0")
    raw = skopeo("inspect", "--raw", "--cert-dir", str(certs), "--creds", creds, f"docker://{host}/acme/app:1.0")
    assert hashlib.sha256(raw.encode()).hexdigest() == img.digest.split(":", 1)[1]
    # without the CA the certificate is refused: verification really is on
    with pytest.raises(AssertionError, match="certificate"):
        skopeo("inspect", "--raw", "--creds", creds, f"docker://{host}/acme/app:1.0")
