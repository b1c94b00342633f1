#!/usr/bin/env python3
"""Checks deploy/kubernetes/procwarpd.yaml as far as can be done without a
cluster: the DaemonSet has hostPID, exactly the capabilities of the systemd
unit's CapabilityBoundingSet, the unix socket directory on a hostPath, the
TLS port, the certificates from a Secret mounted as a directory where the
config expects them; and the config itself is accepted by procwarpd (it is
started with it, with test certificates at those paths' file names, and
must serve TLS).

Usage: kubernetes_test.py MANIFEST SERVICE_UNIT PROCWARPD TLS_SCRIPT
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import yaml


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def unit_capabilities(unit_path):
    caps = set()
    with open(unit_path) as unit:
        for line in unit:
            if line.startswith("CapabilityBoundingSet="):
                caps.update(c.replace("CAP_", "", 1)
                            for c in line.split("=", 1)[1].split())
    return caps


def main():
    manifest, unit, procwarpd, tls_script = sys.argv[1:5]
    with open(manifest) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {d["kind"]: d for d in docs}
    for kind in ("Namespace", "ConfigMap", "DaemonSet"):
        if kind not in by_kind:
            fail("no %s in %s" % (kind, manifest))
    ds = by_kind["DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    if ds["spec"]["selector"]["matchLabels"] != ds["spec"]["template"]["metadata"]["labels"]:
        fail("the DaemonSet selector does not match its pod labels")
    if pod.get("hostPID") is not True:
        fail("hostPID must be true: the daemon acts on the node's processes")
    (container,) = pod["containers"]
    sc = container["securityContext"]
    if sc.get("privileged"):
        fail("privileged: the capability set is the sandbox, not privileged")
    if sc.get("allowPrivilegeEscalation") is not True:
        fail("allowPrivilegeEscalation must stay true (no_new_privs breaks children)")
    if sc["capabilities"].get("drop") != ["ALL"]:
        fail("capabilities must drop ALL and add the unit's set")
    added = set(sc["capabilities"]["add"])
    wanted = unit_capabilities(unit)
    if added != wanted:
        fail("capabilities differ from %s: missing %s, extra %s"
             % (unit, sorted(wanted - added), sorted(added - wanted)))

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    run = mounts.get("/run/procwarp")
    if not run or "hostPath" not in volumes[run["name"]] or \
            volumes[run["name"]]["hostPath"]["path"] != "/run/procwarp":
        fail("the unix socket directory /run/procwarp must be a hostPath")

    config_text = by_kind["ConfigMap"]["data"]["procwarpd.conf"]
    files = dict(re.findall(r'(ca_file|cert_file|key_file):\s*"([^"]+)"', config_text))
    if set(files) != {"ca_file", "cert_file", "key_file"}:
        fail("the config's tls {} does not name all three files")
    tls_dirs = {os.path.dirname(p) for p in files.values()}
    if len(tls_dirs) != 1:
        fail("the TLS files must share one directory (one Secret)")
    (tls_dir,) = tls_dirs
    tls_mount = mounts.get(tls_dir)
    if not tls_mount or "secret" not in volumes[tls_mount["name"]]:
        fail("%s must be a Secret volume" % tls_dir)
    if "subPath" in tls_mount:
        fail("the Secret must be mounted as a directory (subPath gets no updates)")
    if 'socket_path: "/run/procwarp/procwarpd.sock"' not in config_text:
        fail("the config's socket_path must be under the hostPath")
    ports = [re.match(r'listen_tcp:\s*"(.*):(\d+)"', l.strip())
             for l in config_text.splitlines() if "listen_tcp" in l]
    tcp_ports = {int(m.group(2)) for m in ports if m}
    container_ports = {p["containerPort"] for p in container["ports"]}
    if not tcp_ports or tcp_ports != container_ports:
        fail("listen_tcp ports %s != container ports %s" % (tcp_ports, container_ports))
    command = container["command"]
    if command[0] != "/usr/local/bin/procwarpd" or "--config" not in command:
        fail("the container must run procwarpd --config")

    # The config as a daemon reads it: certificates at the Secret's file
    # names, the socket and port moved to a test directory.
    work = tempfile.mkdtemp()
    try:
        def run(*args):
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        run(tls_script, "ca", work)
        run(tls_script, "server", work, "localhost", "127.0.0.1")
        text = config_text
        for name in ("ca_file", "cert_file", "key_file"):
            base = os.path.basename(files[name])
            text = text.replace(files[name], os.path.join(work, base))
        text = text.replace("/run/procwarp/procwarpd.sock",
                            os.path.join(work, "procwarpd.sock"))
        text = re.sub(r'listen_tcp:\s*"[^"]*"\n', "", text)
        text = re.sub(r'admin_group:\s*"[^"]*"', 'admin_group: ""', text)
        conf = os.path.join(work, "procwarpd.conf")
        with open(conf, "w") as f:
            f.write(text)
        log = os.path.join(work, "log")
        with open(log, "w") as out:
            daemon = subprocess.Popen(
                [procwarpd, "--config", conf, "--listen_tcp", "127.0.0.1:0"],
                stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 30
            served = False
            while time.time() < deadline and daemon.poll() is None:
                with open(log) as f:
                    if "mutual TLS on 127.0.0.1:" in f.read():
                        served = True
                        break
                time.sleep(0.1)
            if not served:
                with open(log) as f:
                    fail("procwarpd did not serve TLS with the manifest's config:\n"
                         + f.read())
        finally:
            daemon.terminate()
            daemon.wait()
    finally:
        shutil.rmtree(work)
    print("PASS")


if __name__ == "__main__":
    main()
