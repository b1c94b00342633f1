"""Which daemon a Client() talks to: the same rules as the CLI's
(client/cli/target.h; README, "Driving another host").

Each setting comes from the first of: the Client's arguments (a target,
``tls``, ``context``), the environment (PROCWARP_HOST, PROCWARP_CA,
PROCWARP_CERT, PROCWARP_KEY), the chosen context of the CLI's config file
($XDG_CONFIG_HOME/procwarp/config, else ~/.config/procwarp/config; chosen
by ``context``, else PROCWARP_CONTEXT, else the file's current_context).
A socket path given to Client() means the local daemon whatever the
environment says; with no socket anywhere, the library default
(default_socket_path(): PROCWARP_SOCKET, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from google.protobuf import text_format

from procwarp import _errors
from procwarp.cli import cli_config_pb2

TLS_PREFIX = "tls://"
UNIX_PREFIX = "unix:"


@dataclass(frozen=True)
class TlsOptions:
    """The client side of mutual TLS to a remote procwarpd (docs/remote.md):
    paths of PEM files. The daemon's certificate must chain to ``ca`` and
    name the host; ``cert``/``key`` are ours, which the daemon maps to a
    local identity."""

    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class Resolved:
    """A local socket (``host`` empty; an empty ``socket_path`` means the
    library default) or a remote ``host`` ("HOST:PORT") with ``tls``."""

    socket_path: str = ""
    host: str = ""
    tls: Optional[TlsOptions] = None
    context: str = ""


def default_config_path(env: Mapping[str, str]) -> str:
    base = env.get("XDG_CONFIG_HOME") or f"{env.get('HOME', '')}/.config"
    return f"{base}/procwarp/config"


def _load_config(path: str) -> Tuple[cli_config_pb2.CliConfig, bool]:
    config = cli_config_pb2.CliConfig()
    try:
        with open(path, encoding="utf-8") as text:
            content = text.read()
    except FileNotFoundError:
        return config, False
    try:
        text_format.Parse(content, config)
    except text_format.ParseError as error:
        raise _errors.InvalidArgument(
            f"{path} is not a valid procwarp CLI config (text format, see "
            f"client/cli/cli_config.proto): {error}") from None
    return config, True


def _config_relative(path: str, config_path: str,
                     env: Mapping[str, str]) -> str:
    """A path from the config file: "~/" is $HOME, relative is from the
    file's directory."""
    if not path or path.startswith("/"):
        return path
    if path.startswith("~/"):
        return env.get("HOME", "") + path[1:]
    return os.path.join(os.path.dirname(config_path), path)


def _first(*values: str) -> str:
    return next((v for v in values if v), "")


def resolve(target: Optional[str], tls: Optional[TlsOptions],
            context: Optional[str], env: Mapping[str, str],
            config_path: Optional[str] = None) -> Resolved:
    """Where Client(target, tls=tls, context=context) connects."""
    given_host = ""
    if target:
        if target.startswith(TLS_PREFIX):
            given_host = target[len(TLS_PREFIX):]
        else:
            socket_path = target[len(UNIX_PREFIX):] if target.startswith(
                UNIX_PREFIX) else target
            return Resolved(socket_path=socket_path)
    config_path = config_path or default_config_path(env)
    config, found = _load_config(config_path)
    asked = _first(context or "", env.get("PROCWARP_CONTEXT", ""))
    name = _first(asked, config.current_context)
    chosen = None
    if name:
        names = [c.name for c in config.contexts]
        chosen = next((c for c in config.contexts if c.name == name), None)
        if chosen is None:
            where = (f" (it has: {', '.join(names)})" if found
                     else " (the file does not exist)")
            raise _errors.NotFound(f"no context '{name}' in {config_path}{where}")
    # A host given as an argument or in the environment is a target of its
    # own: the current context's certificate belongs to the context's host,
    # so it is not lent to another (a context asked for by name still fills
    # in what is left out).
    host_given = bool(_first(given_host, env.get("PROCWARP_HOST", "")))
    use = chosen if chosen is not None and (not host_given or asked) else (
        cli_config_pb2.Context())
    host = _first(given_host, env.get("PROCWARP_HOST", ""), use.host)
    if not host:
        return Resolved(socket_path=use.socket, context=name if chosen else "")
    files = [
        _first(getattr(tls, field) if tls else "", env.get(variable, ""),
               _config_relative(getattr(use, field), config_path, env))
        for field, variable in (("ca", "PROCWARP_CA"), ("cert", "PROCWARP_CERT"),
                                ("key", "PROCWARP_KEY"))]
    if not all(files):
        raise _errors.InvalidArgument(
            f"{TLS_PREFIX}{host} needs a CA, a certificate and a key: "
            "tls=procwarp.TlsOptions(ca, cert, key), PROCWARP_CA, "
            "PROCWARP_CERT and PROCWARP_KEY, or a context that names them")
    return Resolved(host=host, tls=TlsOptions(*files),
                    context=name if chosen else "")
