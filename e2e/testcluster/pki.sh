# Certificate helpers shared by start.sh and start-node.sh; source it, then call the functions
# from inside the PKI directory. EC P-256 keys: generated instantly, accepted by Go, rustls and
# OpenSSL.

# pki_key FILE: a new private key.
pki_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# pki_ca NAME SUBJECT: a self-signed CA, NAME.key and NAME.crt.
pki_ca() {
    pki_key "$1.key"
    openssl req -x509 -new -key "$1.key" -out "$1.crt" -days 3650 -subj "$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
}

# pki_sign CA NAME SUBJECT EXTENSIONS: NAME.key and NAME.crt, signed by CA.key.
pki_sign() {
    pki_key "$2.key"
    openssl req -new -key "$2.key" -subj "$3" -out "$2.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "$4" >"$2.ext"
    openssl x509 -req -in "$2.csr" -CA "$1.crt" -CAkey "$1.key" -CAcreateserial \
        -days 3650 -extfile "$2.ext" -out "$2.crt" 2>/dev/null
    rm -f "$2.csr" "$2.ext"
}

# pki_admin_token: a bearer token for the superuser, in admin.token and tokens.csv.
pki_admin_token() {
    openssl rand -hex 32 >admin.token
    echo "$(cat admin.token),ragplane-admin,ragplane-admin,system:masters" >tokens.csv
}
