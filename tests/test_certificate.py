"""The job's certificate, as written by dask_runners.certificate, read back by cryptography and OpenSSL."""

import datetime
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dask_runners.certificate import der, integer, oid, self_signed, time
from dask_runners.security import SUBJECT, JobCredentials


def test_the_certificate_says_what_the_job_needs_and_its_signature_holds():
    certificate, key = self_signed(SUBJECT, valid_days=30)
    cert = x509.load_pem_x509_certificate(certificate.encode())
    assert cert.version is x509.Version.v3
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SUBJECT
    assert 0 < cert.serial_number < 2**159
    now = datetime.datetime.now(datetime.timezone.utc)
    assert cert.not_valid_before_utc <= now - datetime.timedelta(minutes=59)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=30, hours=1)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not alt_names.critical and alt_names.value.get_values_for_type(x509.DNSName) == ["dask-runners"]
    assert len(cert.extensions) == 2
    public_key = cert.public_key()
    assert isinstance(public_key.curve, ec.SECP256R1)
    public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert "BEGIN PRIVATE KEY" in key


def test_two_credentials_differ():
    first, second = JobCredentials.generate(), JobCredentials.generate()
    assert first.certificate != second.certificate and first.key != second.key


def context(credentials: JobCredentials, purpose, path) -> ssl.SSLContext:
    (path / "cert.pem").write_text(credentials.certificate)
    (path / "key.pem").write_text(credentials.key)
    ctx = ssl.create_default_context(purpose, cafile=str(path / "cert.pem"))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(path / "cert.pem"), str(path / "key.pem"))
    return ctx


@pytest.mark.timeout(30)
def test_openssl_accepts_it_for_a_mutual_handshake_and_refuses_another_jobs(tmp_path):
    ours, theirs = JobCredentials.generate(), JobCredentials.generate()
    (tmp_path / "server").mkdir(), (tmp_path / "client").mkdir(), (tmp_path / "other").mkdir()
    server = context(ours, ssl.Purpose.CLIENT_AUTH, tmp_path / "server")

    def handshake(client_ctx):
        left, right = socket.socketpair()
        outcome = {}

        def serve():
            try:
                with server.wrap_socket(right, server_side=True) as s:
                    outcome["peer"] = s.getpeercert()
            except ssl.SSLError as e:
                outcome["server"] = e

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with client_ctx.wrap_socket(left) as c:
                c.sendall(b"x")
        except (ssl.SSLError, OSError) as e:
            outcome["client"] = e
        thread.join(10)
        return outcome

    accepted = handshake(context(ours, ssl.Purpose.SERVER_AUTH, tmp_path / "client"))
    assert "peer" in accepted, accepted
    refused = handshake(context(theirs, ssl.Purpose.SERVER_AUTH, tmp_path / "other"))
    assert "peer" not in refused and ("client" in refused or "server" in refused), refused


def test_der_lengths_times_and_integers():
    assert der(0x04, b"a" * 5) == b"\x04\x05" + b"a" * 5
    assert der(0x04, b"a" * 200)[:3] == b"\x04\x81\xc8"
    assert der(0x04, b"a" * 300)[:4] == b"\x04\x82\x01\x2c"
    assert integer(0) == b"\x02\x01\x00" and integer(127) == b"\x02\x01\x7f" and integer(128) == b"\x02\x02\x00\x80"
    assert oid("1.2.840.10045.4.3.2") == bytes.fromhex("06082a8648ce3d040302")
    utc = datetime.timezone.utc
    assert time(datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=utc)) == b"\x17\x0d491231235959Z"
    assert time(datetime.datetime(2050, 1, 1, tzinfo=utc)) == b"\x18\x0f20500101000000Z"
