#!/usr/bin/env bash
# The QUIC interop runner's server endpoint (https://github.com/quic-interop/quic-interop-runner).
#
# Contract: ROLE=server; TESTCASE names the case; files are served from /www; the certificate
# and key are /certs/cert.pem and /certs/priv.key; UDP port 443 on every address; TLS secrets
# go to $SSLKEYLOGFILE and qlog files to $QLOGDIR when set. A case we do not support exits 127.
# /setup.sh (the network simulator's routing set-up) runs only when it exists, so the script
# also works outside the container:
#
#   ROLE=server TESTCASE=handshake WWW=/tmp/www CERTS=/tmp/certs PORT=4433 interop/run_endpoint.sh
#
# WWW, CERTS, PORT and SWITCHYARD (the binary) override the container's paths for local use.
set -euo pipefail

if [[ -f /setup.sh ]]; then
    bash /setup.sh
fi

ROLE=${ROLE:-server}
TESTCASE=${TESTCASE:-}
WWW=${WWW:-/www}
CERTS=${CERTS:-/certs}
PORT=${PORT:-443}
SWITCHYARD=${SWITCHYARD:-$(command -v switchyard || echo /usr/local/bin/switchyard)}

if [[ $ROLE != server ]]; then
    echo "switchyard is a server: ROLE=$ROLE is not supported" >&2
    exit 127
fi

# Per-case server settings. Cases that need nothing special still must be listed: anything
# else is refused with 127, as the runner expects.
ARGS=(--quic-retry never)
case "$TESTCASE" in
    handshake | transfer | multiplexing | http3 | multiconnect | chacha20 | resumption | zerortt | \
        keyupdate | ecn | transferloss | handshakeloss | transfercorruption | handshakecorruption | \
        blackhole | longrtt | goodput | crosstraffic | ipv6 | amplificationlimit)
        ;;
    retry)
        ARGS=(--quic-retry always)
        ;;
    # QUIC v2: quinn 0.11 implements QUIC v1 only.
    # connectionmigration, rebind-port, rebind-addr: a client's new path reaches another worker's
    # endpoint (SO_REUSEPORT), so migration is disabled.
    *)
        echo "unsupported test case: ${TESTCASE:-<none>}" >&2
        exit 127
        ;;
esac

if [[ -n ${QLOGDIR:-} ]]; then
    mkdir -p "$QLOGDIR"
    ARGS+=(--qlog-dir "$QLOGDIR")
fi
# SSLKEYLOGFILE is read by the server itself (rustls' KeyLogFile) when it is set.

echo "switchyard: TESTCASE=$TESTCASE serving $WWW on UDP/TCP port $PORT"
exec "$SWITCHYARD" serve "$WWW" \
    --listen "0.0.0.0:$PORT" --listen "[::]:$PORT" \
    --cert "$CERTS/cert.pem" --key "$CERTS/priv.key" \
    "${ARGS[@]}"
