#!/usr/bin/env bash
# The main job, on one machine: installs what is needed, builds, then runs a loopback mesh of
# two workloads, each with its own ztunnel (dedicated mode), and shows a client reaching a
# server through both: identities, the HBONE hop (mTLS + HTTP/2 CONNECT on 15008), bytes.
# Usage: scripts/demo.sh [--no-setup]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "${1:-}" != "--no-setup" ]; then
  scripts/setup.sh
fi
scripts/build.sh ztunnel

client_ip=127.0.100.2
server_ip=127.0.100.3
work=$(mktemp -d /tmp/ambient-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KEEP_DEMO:-}" ] && { echo "kept $work"; return; }
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Waits (event-driven, up to 10 s) for a line matching $2 in file $1: the daemons log
# "listening ..." and "ztunnel ready", the app logs "app listening".
wait_for_line() {
  local file=$1 pattern=$2
  if ! timeout 10 grep -qm1 -E "$pattern" <(tail -F -n +1 "$file" 2>/dev/null); then
    echo "timed out waiting for '$pattern' in $file" >&2
    cat "$file" >&2
    return 1
  fi
}
listening() { grep -oE "listening component=$2 address=\S+" "$1" | head -1 | sed 's/.*address=//'; }

say "A mesh of two workloads (local config, ztunnel's camelCase layout)"
cat > "$work/mesh.yaml" <<YAML
workloads:
- uid: demo//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  workloadIps: ["$client_ip"]
  protocol: HBONE
  node: node-a
- uid: demo//v1/Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  workloadIps: ["$server_ip"]
  protocol: HBONE
  node: node-b
  services:
    "default/server.default.svc.cluster.local":
      80: 8080
services:
- name: server
  namespace: default
  hostname: server.default.svc.cluster.local
  vips: ["/127.0.101.10"]
  ports: {80: 8080}
YAML
cat "$work/mesh.yaml"

say "A CA shared by both ztunnels (ECDSA P-256, trust domain cluster.local)"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca-key.pem" 2>/dev/null
openssl req -x509 -new -key "$work/ca-key.pem" -subj "/O=cluster.local" -days 7 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$work/ca-cert.pem" 2>/dev/null
echo "$work/ca-cert.pem"

say "The server app on $server_ip:8080 (answers with the client address it sees)"
python3 - "$server_ip" > "$work/app.log" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self): self.reply(b"")
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0")); body = self.rfile.read(n); self.reply(body)
    def reply(self, body):
        msg = f"hello from server; you are {self.client_address[0]}:{self.client_address[1]}; got {len(body)} bytes\n".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(msg))); self.end_headers(); self.wfile.write(msg)
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer((sys.argv[1], 8080), H)
print("app listening", flush=True)
server.serve_forever()
PY
pids+=($!)
wait_for_line "$work/app.log" "app listening"

common=(--ca-cert "$work/ca-cert.pem" --ca-key "$work/ca-key.pem" --worker-threads 1
        --admin-address 127.0.0.1:0 --metrics-address 127.0.0.1:0 --readiness-address 127.0.0.1:0)
LOCAL_XDS_PATH="$work/mesh.yaml" PROXY_WORKLOAD_INFO=default/server/server \
  build/bin/ztunnel "${common[@]}" > "$work/ztunnel-b.log" 2>&1 &
pids+=($!)
LOCAL_XDS_PATH="$work/mesh.yaml" PROXY_WORKLOAD_INFO=default/client/client UNSTABLE_ENABLE_SOCKS5=true \
  build/bin/ztunnel "${common[@]}" --socks5-address 127.0.0.1:0 > "$work/ztunnel-a.log" 2>&1 &
pids+=($!)
wait_for_line "$work/ztunnel-a.log" "ztunnel ready"
wait_for_line "$work/ztunnel-b.log" "ztunnel ready"
socks=$(listening "$work/ztunnel-a.log" socks5)
metrics_a=$(listening "$work/ztunnel-a.log" metrics)
metrics_b=$(listening "$work/ztunnel-b.log" metrics)
echo "ztunnel A (client): SOCKS5 on $socks, inbound HBONE on $client_ip:15008"
echo "ztunnel B (server): inbound HBONE on $server_ip:15008"

say "curl -> ztunnel A (SOCKS5) -> HBONE -> ztunnel B -> server, by pod IP"
curl -sS -m 10 --socks5 "$socks" "http://$server_ip:8080/"
say "The same by service VIP (127.0.101.10:80 -> endpoint port 8080), with a 1 MiB upload"
head -c 1048576 /dev/urandom > "$work/upload.bin"
curl -sS -m 10 --socks5 "$socks" --data-binary "@$work/upload.bin" "http://127.0.101.10:80/"

say "What happened, from the access logs"
wait_for_line "$work/ztunnel-b.log" 'access connection complete.*got|access connection complete.*bytes_recv=[1-9]'
echo "ztunnel A (outbound):"
grep 'access connection' "$work/ztunnel-a.log" | sed 's/^[^ ]* [a-z]* access /  /'
echo "ztunnel B (inbound):"
grep 'access connection' "$work/ztunnel-b.log" | sed 's/^[^ ]* [a-z]* access /  /'

say "The HBONE hop is TLS 1.3 with mutual authentication (openssl s_client to B's 15008)"
cert_dir="$work/probe"; mkdir -p "$cert_dir"
openssl ecparam -name prime256v1 -genkey -noout -out "$cert_dir/key.pem" 2>/dev/null
openssl req -new -key "$cert_dir/key.pem" -subj "/" -out "$cert_dir/csr.pem" 2>/dev/null
printf 'subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/probe\nextendedKeyUsage=clientAuth\n' > "$cert_dir/ext"
openssl x509 -req -in "$cert_dir/csr.pem" -CA "$work/ca-cert.pem" -CAkey "$work/ca-key.pem" \
  -CAcreateserial -days 1 -extfile "$cert_dir/ext" -out "$cert_dir/cert.pem" 2>/dev/null
openssl s_client -connect "$server_ip:15008" -cert "$cert_dir/cert.pem" -key "$cert_dir/key.pem" \
  -CAfile "$work/ca-cert.pem" -alpn h2 -brief </dev/null 2>&1 | grep -aE "Protocol version|Ciphersuite|Verification" || true
echo "server certificate SAN: $(openssl s_client -connect "$server_ip:15008" -cert "$cert_dir/cert.pem" \
  -key "$cert_dir/key.pem" -CAfile "$work/ca-cert.pem" -alpn h2 </dev/null 2>/dev/null \
  | openssl x509 -noout -ext subjectAltName | tail -1 | sed 's/^ *//')"
echo "without a client certificate:"
openssl s_client -connect "$server_ip:15008" -CAfile "$work/ca-cert.pem" -alpn h2 -brief </dev/null 2>&1 \
  | grep -aiE "alert|error" | head -2 || true

say "Metrics (ztunnel B, Prometheus text on $metrics_b/metrics)"
curl -sS "http://$metrics_b/metrics" | grep -E '^istio_tcp_(connections_opened|received_bytes|sent_bytes)_total' | head -6
echo
echo "ztunnel A pooled HBONE connections: $(curl -sS "http://$metrics_a/metrics" | grep -E '^ztunnel_hbone_connections_opened_total' | head -2)"
say "Done: both requests crossed the mesh over one mutually authenticated HBONE connection."
