#!/usr/bin/env bash
# A test CA and a server certificate signed by it, for TLS test servers.
# Usage: make-tls.sh DIR SAN   (SAN as openssl takes it: "IP:127.0.0.1,DNS:localhost")
# Writes DIR/ca.crt, DIR/server.crt and DIR/server.key (P-256 keys, valid 7 days).
set -euo pipefail
d=$1 san=$2
mkdir -p "$d"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -subj "/CN=ragplane test CA" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=ragplane test server" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
printf '%s\n' "subjectAltName=$san" "basicConstraints=CA:FALSE" "keyUsage=digitalSignature" \
  "extendedKeyUsage=serverAuth" > "$d/server.ext"
openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
  -days 7 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
# Readable by a server that runs as another user (a pod's, a fixture's).
chmod 644 "$d/server.key"
