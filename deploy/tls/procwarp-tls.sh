#!/bin/sh
# procwarp-tls.sh: make the certificates procwarpd's TCP listener needs
# (mutual TLS, docs/remote.md), with the openssl command-line tool.
#
#   procwarp-tls.sh ca DIR                      a CA: DIR/ca.pem, DIR/ca.key
#   procwarp-tls.sh server DIR HOST [NAME|IP]...
#                                               the daemon's certificate for
#                                               HOST (and more names/IPs):
#                                               DIR/server.pem, DIR/server.key
#   procwarp-tls.sh client DIR NAME --user USER | --uid UID | --admin | --unmapped
#                                               a client certificate:
#                                               DIR/NAME.pem, DIR/NAME.key
# Options, before the command:
#   --days N                  validity (default 365)
#   --dates START END         exact validity instead, as YYYYMMDDHHMMSSZ
#                             (e.g. to make an expired certificate for a test)
#
# Every command prints what to put where: the daemon's config lines
# (listen_tcp, tls { ... }, the mapping of a client certificate) and the
# client's flags. A client certificate carries the SAN URI
# "urn:procwarp:user:USER" (or ...:uid:UID, ...:admin:NAME), which is what
# the printed mapping matches; its CN is NAME.
#
# Keys are written 0600. Keep DIR/ca.key off the daemon's host if you can:
# the daemon needs only ca.pem, server.pem and server.key.
set -eu

days=365
start=""
end=""
while [ $# -gt 0 ]; do
  case "$1" in
    --days) days="$2"; shift 2 ;;
    --dates) start="$2"; end="$3"; shift 3 ;;
    *) break ;;
  esac
done

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -ge 2 ] || usage
command="$1"
dir="$2"
shift 2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
umask 077

# Signs $1.csr with the CA in $dir into $1.pem, with extensions from $2.
# `openssl ca` rather than `x509 -req`: only it can set exact dates.
sign() {
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  : > "$work/index.txt"
  openssl rand -hex 16 > "$work/serial"
  cat > "$work/ca.cnf" <<CNF
[ ca ]
default_ca = this
[ this ]
database = $work/index.txt
serial = $work/serial
new_certs_dir = $work
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
commonName = supplied
[ ext ]
$2
CNF
  if [ -n "$start" ]; then
    dates="-startdate $start -enddate $end"
  else
    dates="-days $days"
  fi
  # shellcheck disable=SC2086
  openssl ca -batch -notext -config "$work/ca.cnf" -extensions ext \
    $dates -in "$1.csr" -out "$1.pem" 2>"$work/log" ||
    { cat "$work/log" >&2; exit 1; }
  rm -f "$1.csr"
  chmod 0644 "$1.pem"
}

new_key_and_csr() {  # PATH_PREFIX CN
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
}

case "$command" in
  ca)
    [ ! -e "$dir/ca.key" ] || { echo "$dir/ca.key exists; not replacing it" >&2; exit 1; }
    if [ -n "$start" ]; then
      echo "--dates is for server and client certificates" >&2; exit 2
    fi
    # A name of its own (host and a random tag): the daemon's certificate
    # request lists the CAs it trusts by name only, which is how a client
    # tells it holds another CA's certificate (docs/remote.md, "Clients").
    tag=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" -days "$days" \
      -subj "/CN=procwarp CA $(hostname) $tag" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 0644 "$dir/ca.pem"
    echo "CA: $dir/ca.pem (key $dir/ca.key)"
    ;;
  server)
    [ $# -ge 1 ] || usage
    host="$1"
    sans=""
    for name in "$@"; do
      case "$name" in
        *:*|[0-9]*.[0-9]*.[0-9]*.[0-9]*) sans="$sans,IP:$name" ;;
        *) sans="$sans,DNS:$name" ;;
      esac
    done
    new_key_and_csr "$dir/server" "$host"
    sign "$dir/server" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=${sans#,}"
    cat <<EOT
Server certificate: $dir/server.pem (key $dir/server.key) for ${sans#,}
In /etc/procwarp/procwarpd.conf:
  listen_tcp: "0.0.0.0:7443"
  listen_tcp: "[::]:7443"
  tls {
    ca_file: "$dir/ca.pem"
    cert_file: "$dir/server.pem"
    key_file: "$dir/server.key"
    # one mappings { ... } per client certificate (procwarp-tls.sh client)
  }
EOT
    ;;
  client)
    [ $# -ge 2 ] || usage
    name="$1"
    case "$2" in
      --user) [ $# -ge 3 ] || usage; uri="urn:procwarp:user:$3"; mapping="user: \"$3\"" ;;
      --uid) [ $# -ge 3 ] || usage; uri="urn:procwarp:uid:$3"; mapping="uid: $3" ;;
      --admin) uri="urn:procwarp:admin:$name"; mapping="admin: true" ;;
      --unmapped) uri="urn:procwarp:unmapped:$name"; mapping="" ;;
      *) usage ;;
    esac
    new_key_and_csr "$dir/$name" "$name"
    sign "$dir/$name" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=URI:$uri"
    echo "Client certificate: $dir/$name.pem (key $dir/$name.key), SAN $uri"
    if [ -n "$mapping" ]; then
      echo "In the daemon's tls { ... }:"
      echo "  mappings { san_uri: \"$uri\" $mapping }"
    fi
    echo "On the client:"
    echo "  procwarp --host HOST:7443 --ca $dir/ca.pem --cert $dir/$name.pem --key $dir/$name.key status"
    ;;
  *) usage ;;
esac
