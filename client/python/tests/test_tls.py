"""Client("tls://HOST:PORT", tls=TlsOptions(...)) against a daemon serving
mutual TLS (docs/remote.md), with certificates made by the deployment
script (deploy/tls/procwarp-tls.sh) as the C++ TLS tests make them."""

import os
import shutil
import subprocess

import pytest

import procwarp
from conftest import NOBODY, make_temp_dir, start_daemon


def tls_script(*args: str) -> str:
    script = os.environ["PROCWARP_TEST_TLS_SCRIPT"]
    return subprocess.run(["/bin/sh", script, *args], check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def tls_daemon():
    directory = make_temp_dir()
    certs = os.path.join(directory, "certs")
    tls_script("ca", certs)
    tls_script("server", certs, "localhost", "127.0.0.1")
    mapping = [line.strip() for line in
               tls_script("client", certs, "nobody", "--uid", str(NOBODY)).splitlines()
               if line.strip().startswith("mappings {")]
    tls_script("client", certs, "stranger", "--unmapped")
    config = os.path.join(directory, "procwarpd.conf")
    with open(config, "w") as out:
        out.write(f'tls {{\n  ca_file: "{certs}/ca.pem"\n'
                  f'  cert_file: "{certs}/server.pem"\n'
                  f'  key_file: "{certs}/server.key"\n'
                  + "\n".join(mapping) + "\n}\n")
    daemon = start_daemon(directory, ["--config", config,
                                      "--listen_tcp", "127.0.0.1:0"])
    try:
        with procwarp.Client(daemon.socket_path) as local:
            address = local.status().tls_addresses[0]
        yield address, certs
    finally:
        assert daemon.stop() == 0
        shutil.rmtree(directory, ignore_errors=True)


def tls_options(certs: str, client: str) -> procwarp.TlsOptions:
    """Our CA, and client certificate ``client`` made by tls_daemon."""
    return procwarp.TlsOptions(ca=f"{certs}/ca.pem",
                               cert=f"{certs}/{client}.pem",
                               key=f"{certs}/{client}.key")


def test_remote_client_is_the_mapped_identity(tls_daemon):
    address, certs = tls_daemon
    with procwarp.Client(f"tls://{address}",
                         tls=tls_options(certs, "nobody")) as client:
        assert client.target == f"tls://{address}"
        caller = client.status().caller
        assert (caller.uid, caller.remote) == (NOBODY, True)
        process = client.spawn(["/usr/bin/id", "-u"], env=["PATH=/usr/bin"])
        assert b"".join(c.data for c in process.output()) == b"%d\n" % NOBODY


def test_remote_daemon_from_the_environment(tls_daemon, monkeypatch):
    # As the CLI: PROCWARP_HOST and PROCWARP_CA/CERT/KEY make Client() remote.
    address, certs = tls_daemon
    options = tls_options(certs, "nobody")
    monkeypatch.setenv("PROCWARP_HOST", address)
    monkeypatch.setenv("PROCWARP_CA", options.ca)
    monkeypatch.setenv("PROCWARP_CERT", options.cert)
    monkeypatch.setenv("PROCWARP_KEY", options.key)
    monkeypatch.setenv("XDG_CONFIG_HOME", certs)  # no config file there
    with procwarp.Client() as client:
        assert client.target == f"tls://{address}"
        assert client.status().caller.uid == NOBODY


def test_unmapped_certificate_is_refused(tls_daemon):
    address, certs = tls_daemon
    with procwarp.Client(f"tls://{address}",
                         tls=tls_options(certs, "stranger")) as client:
        with pytest.raises(procwarp.Unauthenticated) as raised:
            client.status()
        assert "'CN=stranger' is not mapped" in raised.value.details


def test_tls_target_needs_tls_options():
    with pytest.raises(procwarp.InvalidArgument):
        procwarp.Client("tls://127.0.0.1:1")
