#!/usr/bin/env bash
# Development certificates for wss:// on this machine: a private CA and a server certificate signed by it.
#
#   tools/make-dev-cert.sh [options] [DIR]            (DIR defaults to ./certs)
#     --name NAME        file stem of the server certificate (default: localhost -> localhost.crt/.key)
#     --san LIST         subjectAltName (default: DNS:localhost,IP:127.0.0.1,IP:::1)
#     --key-type T       ec (P-256, default) or rsa (2048 bits); applies to the CA too when it is created
#     --expired          validity 2020-01-01 .. 2021-01-01 (to test start-up errors)
#     --not-yet-valid    validity starts in 2099 (to test start-up errors)
#     --force            overwrite the server certificate and key if they exist (the CA is kept: delete
#                        DIR/ca.crt and DIR/ca.key to make a new one)
#
# Idempotent: existing files are left alone unless --force is given.
set -euo pipefail

dir=./certs
name=localhost
san="DNS:localhost,IP:127.0.0.1,IP:::1"
key_type=ec
force=0
validity=normal

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --san) san=$2; shift 2 ;;
    --key-type) key_type=$2; shift 2 ;;
    --expired) validity=expired; shift ;;
    --not-yet-valid) validity=future; shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "make-dev-cert: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) dir=$1; shift ;;
  esac
done

command -v openssl >/dev/null || { echo "make-dev-cert: the openssl command is missing: apt-get install -y openssl" >&2; exit 1; }

new_key() {  # new_key FILE
  case "$key_type" in
    ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null ;;
    *) echo "make-dev-cert: --key-type must be ec or rsa, not '$key_type'" >&2; exit 2 ;;
  esac
  chmod 600 "$1"
}

mkdir -p "$dir"
ca_key="$dir/ca.key"
ca_crt="$dir/ca.crt"
key="$dir/$name.key"
crt="$dir/$name.crt"

if [ ! -s "$ca_key" ] || [ ! -s "$ca_crt" ]; then
  new_key "$ca_key"
  openssl req -x509 -new -key "$ca_key" -sha256 -days 3650 -subj "/O=edgews development/CN=edgews development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$ca_crt" 2>/dev/null
  echo "created CA:          $ca_crt (key $ca_key)"
else
  echo "using existing CA:   $ca_crt"
fi

if [ -s "$crt" ] && [ -s "$key" ] && [ "$force" = 0 ]; then
  echo "kept existing:       $crt (key $key); pass --force to replace"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  new_key "$key"
  cn=${san#*:}; cn=${cn%%,*}
  openssl req -new -key "$key" -subj "/O=edgews development/CN=$cn" -out "$work/req.csr" 2>/dev/null
  cat >"$work/ext.cnf" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
  if [ "$validity" = normal ]; then
    # 397 days: the longest validity browsers accept for a server certificate.
    openssl x509 -req -in "$work/req.csr" -CA "$ca_crt" -CAkey "$ca_key" -CAcreateserial -sha256 -days 397 \
      -extfile "$work/ext.cnf" -out "$crt" 2>/dev/null
    rm -f "$dir/ca.srl"
  else
    # 'openssl x509' cannot set past or future dates; 'openssl ca' can, given a throwaway database.
    if [ "$validity" = expired ]; then start=20200101000000Z; end=20210101000000Z
    else start=20990101000000Z; end=20991231000000Z; fi
    : >"$work/index.txt"
    cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = dev
[dev]
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
organizationName = optional
commonName = supplied
EOF
    openssl rand -hex 16 >"$work/serial"
    openssl ca -batch -notext -config "$work/ca.cnf" -cert "$ca_crt" -keyfile "$ca_key" -in "$work/req.csr" \
      -startdate "$start" -enddate "$end" -extfile "$work/ext.cnf" -out "$crt" 2>"$work/ca.log" \
      || { cat "$work/ca.log" >&2; exit 1; }
  fi
  echo "created certificate: $crt (key $key), $(openssl x509 -in "$crt" -noout -enddate)"
fi

cat <<EOF

Server settings:  cert_chain_file=$crt  key_file=$key
Trust the development CA ($ca_crt) in clients:
  python:   ctx = ssl.create_default_context(); ctx.load_verify_locations("$ca_crt")
  node:     NODE_EXTRA_CA_CERTS=$ca_crt node client.js
  curl:     curl --cacert $ca_crt https://localhost:PORT/
  browsers: chromium --ignore-certificate-errors-spki-list=$(openssl x509 -in "$crt" -pubkey -noout \
              | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl base64)
            WebDriver: set the capability acceptInsecureCerts=true
EOF
