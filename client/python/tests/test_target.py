"""Which daemon Client() picks: the CLI's rules (client/cli/target.h), from
arguments, the environment and the CLI's config file of contexts."""

import os
import shutil

import pytest

import procwarp
from procwarp import _target
from conftest import make_temp_dir

CONFIG = """
current_context: "here"
contexts { name: "here" socket: "/run/here.sock" }
contexts {
  name: "node1"
  host: "node1.example.org:7443"
  ca: "node1/ca.pem"
  cert: "~/alice.pem"
  key: "/abs/alice.key"
}
"""


@pytest.fixture
def config_dir():
    directory = make_temp_dir()
    os.makedirs(os.path.join(directory, "procwarp"))
    with open(os.path.join(directory, "procwarp", "config"), "w") as out:
        out.write(CONFIG)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def resolve(config_dir, target=None, tls=None, context=None, **env):
    return _target.resolve(target, tls, context,
                           {"XDG_CONFIG_HOME": config_dir, "HOME": "/home/a",
                            **env})


def test_a_socket_argument_wins_over_everything(config_dir):
    resolved = resolve(config_dir, "/tmp/x.sock", PROCWARP_HOST="h:1")
    assert resolved == _target.Resolved(socket_path="/tmp/x.sock")
    assert resolve(config_dir, "unix:/tmp/y.sock").socket_path == "/tmp/y.sock"


def test_current_context(config_dir):
    assert resolve(config_dir) == _target.Resolved(socket_path="/run/here.sock",
                                                   context="here")


def test_context_by_name_with_config_relative_paths(config_dir):
    for resolved in (resolve(config_dir, context="node1"),
                     resolve(config_dir, PROCWARP_CONTEXT="node1")):
        assert resolved.host == "node1.example.org:7443"
        assert resolved.tls == procwarp.TlsOptions(
            ca=f"{config_dir}/procwarp/node1/ca.pem", cert="/home/a/alice.pem",
            key="/abs/alice.key")
        assert resolved.context == "node1"


def test_environment_beats_the_context(config_dir):
    resolved = resolve(config_dir, context="node1", PROCWARP_CA="/env/ca.pem")
    assert resolved.tls.ca == "/env/ca.pem"
    assert resolved.tls.cert == "/home/a/alice.pem"


def test_a_given_host_does_not_borrow_the_current_contexts_certificate(config_dir):
    with open(os.path.join(config_dir, "procwarp", "config"), "w") as out:
        out.write(CONFIG.replace('current_context: "here"',
                                 'current_context: "node1"'))
    with pytest.raises(procwarp.InvalidArgument) as raised:
        resolve(config_dir, PROCWARP_HOST="other:7443")
    assert "tls://other:7443 needs a CA, a certificate and a key" in raised.value.details
    options = procwarp.TlsOptions(ca="c", cert="t", key="k")
    # As the CLI's `status`, the context found is still named.
    assert resolve(config_dir, "tls://other:7443", tls=options) == _target.Resolved(
        host="other:7443", tls=options, context="node1")


def test_unknown_context(config_dir):
    with pytest.raises(procwarp.NotFound) as raised:
        resolve(config_dir, context="nope")
    assert raised.value.details == (
        f"no context 'nope' in {config_dir}/procwarp/config (it has: here, node1)")


def test_malformed_config(config_dir):
    with open(os.path.join(config_dir, "procwarp", "config"), "w") as out:
        out.write("contexts { nme: 1 }")
    with pytest.raises(procwarp.InvalidArgument) as raised:
        resolve(config_dir)
    assert "is not a valid procwarp CLI config" in raised.value.details


def test_no_config_means_the_library_default(config_dir):
    os.remove(os.path.join(config_dir, "procwarp", "config"))
    assert resolve(config_dir) == _target.Resolved()


def test_client_follows_the_current_context(daemon, config_dir, monkeypatch):
    with open(os.path.join(config_dir, "procwarp", "config"), "w") as out:
        out.write(f'current_context: "test"\n'
                  f'contexts {{ name: "test" socket: "{daemon.socket_path}" }}\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", config_dir)
    monkeypatch.delenv("PROCWARP_SOCKET", raising=False)
    with procwarp.Client() as client:
        assert client.target == daemon.socket_path
        assert client.context == "test"
        assert client.status().daemon_pid == daemon.process.pid
