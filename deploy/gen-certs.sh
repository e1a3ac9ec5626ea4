#!/usr/bin/env bash
# Makes the mesh's CA and meshd's serving certificate with openssl and prints them as Kubernetes
# objects for `kubectl apply -f -`:
#   Secret meshd-ca        ca-cert.pem, ca-key.pem: the CA meshd signs workload certificates with
#   Secret meshd-tls       tls.crt, tls.key: meshd's gRPC certificate for meshd.<ns>.svc
#   ConfigMap mesh-root-cert  root-cert.pem: what ztunnels and waypoints verify meshd with
#
# Usage:
#   deploy/gen-certs.sh [--dir DIR] [--namespace NS] [--trust-domain TD] | kubectl apply -f -
#   deploy/gen-certs.sh [--dir DIR] --root-configmap NS | kubectl apply -f -
# The CA is kept in DIR (default ~/.ambient-mesh/ca, outside any checkout) and reused when it
# exists there: keep DIR safe (it holds the CA key); run the script again to renew meshd's
# certificate. --root-configmap prints only the ConfigMap, for the namespace of a waypoint.
set -euo pipefail

dir=${HOME:-/root}/.ambient-mesh/ca
namespace=ambient-mesh
trust_domain=cluster.local
root_only=
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --namespace) namespace=$2; shift 2 ;;
    --trust-domain) trust_domain=$2; shift 2 ;;
    --root-configmap) root_only=1; namespace=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gen-certs.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v openssl >/dev/null || { echo "gen-certs.sh: needs openssl" >&2; exit 1; }

umask 077
mkdir -p "$dir"
chmod 700 "$dir"
if [ ! -s "$dir/ca-cert.pem" ] || [ ! -s "$dir/ca-key.pem" ]; then
  # ECDSA P-256 like the workload certificates; a self-signed root that is also the issuer.
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca-key.pem" 2>/dev/null
  openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days 3650 \
    -subj "/O=${trust_domain}/CN=ambient-mesh root CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca-cert.pem" 2>/dev/null
  echo "gen-certs.sh: new CA in $dir" >&2
fi

# Indents a file's lines for a YAML block scalar.
block() { sed 's/^/    /' "$1"; }

if [ -z "$root_only" ]; then
  svc="meshd.${namespace}.svc"
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/meshd-key.pem" 2>/dev/null
  openssl req -new -key "$dir/meshd-key.pem" -subj "/O=${trust_domain}/CN=${svc}" \
    -out "$dir/meshd.csr" 2>/dev/null
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:meshd,DNS:meshd.${namespace},DNS:${svc},DNS:${svc}.cluster.local" \
    >"$dir/meshd.ext"
  openssl x509 -req -in "$dir/meshd.csr" -CA "$dir/ca-cert.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -days 365 -sha256 -extfile "$dir/meshd.ext" -out "$dir/meshd-cert.pem" 2>/dev/null
  rm -f "$dir/meshd.csr" "$dir/meshd.ext"
  cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: meshd-ca
  namespace: ${namespace}
type: Opaque
stringData:
  ca-cert.pem: |
$(block "$dir/ca-cert.pem")
  ca-key.pem: |
$(block "$dir/ca-key.pem")
---
apiVersion: v1
kind: Secret
metadata:
  name: meshd-tls
  namespace: ${namespace}
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(block "$dir/meshd-cert.pem")
  tls.key: |
$(block "$dir/meshd-key.pem")
---
YAML
fi
cat <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: mesh-root-cert
  namespace: ${namespace}
data:
  root-cert.pem: |
$(block "$dir/ca-cert.pem")
YAML
