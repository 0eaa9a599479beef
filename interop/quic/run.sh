#!/usr/bin/env bash
# The local QUIC interop harness: the interop runner's server-side cases on loopback, with two
# independent clients, aioquic (python, interop/quic/aioquic_client.py) and ngtcp2's gtlsclient.
#
#   bash interop/quic/run.sh [aioquic] [ngtcp2]        # default: both
#   CASES="handshake retry" bash interop/quic/run.sh   # a subset
#
# Cases: handshake (one handshake, no Retry), transfer (2 + 3 + 5 MB on one connection with small
# client flow-control windows), multiplexing (1999 files of 32 bytes on one connection),
# chacha20, retry, resumption (second handshake without a Certificate), zerortt (request sent
# and accepted as early data; a POST in early data is answered 425), http3, keyupdate
# (client-initiated; the server follows), ipv6 (::1), v2, and through the UDP impairment
# proxy (interop/quic/impair.py): transferloss (2 % loss each way), handshakeloss (30 % loss,
# many short connections), transfercorruption (2 % of datagrams with a flipped byte) and
# blackhole (1.5 s of total loss mid-transfer); hostile (malformed hq and h3 requests, each
# refused on its own stream while the connection serves the next); h3conformance (RFC 9114 /
# RFC 9204 frame, stream and QPACK violations written byte by byte over aioquic's QUIC,
# interop/quic/h3_conformance.py, each with its exact error code, and RFC 9218 priorities over
# two 1 MiB downloads); drain (SIGTERM to a server
# of its own during a 64 MiB download with small client windows, hq-interop with aioquic and
# HTTP/3 with gtlsclient: the download completes, then the server exits 0); certreload (renewed
# certificate files and SIGHUP: aioquic, trusting only the new certificate, verifies on the next
# handshake; a half-renewed pair is refused). Every download is compared byte for byte with
# the served file. aioquic speaks hq-interop (HTTP/0.9) as the runner does, except in http3;
# gtlsclient speaks h3 only. A case is skipped only with a printed reason.
#
# The server is the release binary: one instance with Retry off, qlog and SSLKEYLOGFILE on
# (checked in the `artifacts` case), one with Retry always. The venv is target/venv, made from
# Debian's python3 as the HTTP/2 conformance suite does; aioquic is installed into it unless
# SKIP_INSTALL=1. Ends with one summary line per client and `N passed, N failed, N skipped`.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}
VENV=$ROOT/target/venv
PY=$VENV/bin/python
AIOQUIC_VERSION=1.7.2
CLIENTS=("$@")
((${#CLIENTS[@]})) || CLIENTS=(aioquic ngtcp2)
ALL_CASES="handshake transfer multiplexing chacha20 retry resumption zerortt http3 keyupdate ipv6 v2
transferloss handshakeloss transfercorruption blackhole hostile h3conformance drain certreload
endpoint artifacts"
CASES=${CASES:-$ALL_CASES}
HANDSHAKES=${HANDSHAKES:-20}

# ---- prerequisites ----------------------------------------------------------------------------
if [[ ! -x $PY ]]; then
    /usr/bin/python3 -m venv --system-site-packages "$VENV" || exit 1
fi
# The version the cases were written against (1.3.0's HTTP/3 client never finishes a request
# to this server).
if [[ $("$PY" -c 'import aioquic; print(aioquic.__version__)' 2>/dev/null) != "$AIOQUIC_VERSION" ]]; then
    if [[ ${SKIP_INSTALL:-0} == 1 ]]; then
        echo "aioquic $AIOQUIC_VERSION missing in $VENV and SKIP_INSTALL=1" >&2
        exit 1
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check "aioquic==$AIOQUIC_VERSION" || exit 1
fi
command -v gtlsclient >/dev/null || { echo "gtlsclient missing (apt: ngtcp2-client)" >&2; exit 1; }
[[ -x $BIN ]] || { echo "no $BIN: cargo build --release -p switchyard" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    [[ -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

# ---- the served files -------------------------------------------------------------------------
WWW=$WORK/www
mkdir -p "$WWW/multi"
head -c 1024 /dev/urandom >"$WWW/small"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$WWW/f2m"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$WWW/f3m"
head -c $((5 * 1024 * 1024)) /dev/urandom >"$WWW/f5m"
head -c $((1024 * 1024)) /dev/urandom >"$WWW/f1m"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$WWW/f64m"
"$PY" - "$WWW/multi" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(1999):
    with open(os.path.join(d, f"m{i:04d}"), "wb") as f:
        f.write(os.urandom(32))
PY

# ---- servers ----------------------------------------------------------------------------------
# start_server NAME ARGS...: sets NAME_PORT (IPv4) and NAME_PORT6 (IPv6 when listened on).
start_server() {
    local name=$1
    shift
    local out=$WORK/$name.out
    "$BIN" serve "$WWW" --workers 2 "$@" >"$out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q "listening on" "$out" 2>/dev/null && break
        sleep 0.1
    done
    sleep 0.1
    local v4 v6
    v4=$(grep -m1 'listening on 127' "$out" | sed 's/.*://')
    v6=$(grep -m1 'listening on \[' "$out" | sed 's/.*://')
    [[ -n $v4 ]] || { echo "server $name did not start:"; cat "$WORK/$name.err"; exit 1; }
    printf -v "${name}_PORT" '%s' "$v4"
    printf -v "${name}_PORT6" '%s' "$v6"
}
mkdir -p "$WORK/qlog"
# MAIN's idle timeout outlasts the clients' 110 s in handshakeloss (see there).
SSLKEYLOGFILE=$WORK/server.keys start_server MAIN --listen 127.0.0.1:0 --listen '[::1]:0' \
    --quic-retry never --qlog-dir "$WORK/qlog" --quic-idle-timeout 120s
start_server RETRY --listen 127.0.0.1:0 --quic-retry always
echo "servers: main udp/tcp 127.0.0.1:$MAIN_PORT and [::1]:$MAIN_PORT6, retry 127.0.0.1:$RETRY_PORT"

# start_proxy ARGS...: an impairment proxy in front of MAIN; sets PROXY_PORT and PROXY_PID.
start_proxy() {
    local out=$WORK/proxy.out
    : >"$out"
    "$PY" "$HERE/impair.py" --server "127.0.0.1:$MAIN_PORT" "$@" >"$out" 2>>"$WORK/proxy.err" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    local i
    for ((i = 0; i < 50; i++)); do
        grep -q "proxy on" "$out" && break
        sleep 0.1
    done
    PROXY_PORT=$(sed -n 's/proxy on .*:\([0-9]*\)$/\1/p' "$out")
}
stop_proxy() {
    kill "$PROXY_PID" 2>/dev/null
    wait "$PROXY_PID" 2>/dev/null
}

# ---- clients ----------------------------------------------------------------------------------
# aq PORT ARGS... -- PATHS...: aioquic against 127.0.0.1:PORT; report JSON in $WORK/aq.json.
aq() {
    local port=$1
    shift
    local args=() paths=() seen=0
    for a in "$@"; do
        if [[ $a == -- ]]; then seen=1
        elif ((seen)); then paths+=("https://127.0.0.1:$port$a")
        else args+=("$a"); fi
    done
    timeout "${AQ_TIMEOUT:-120}" "$PY" "$HERE/aioquic_client.py" --keylog "$WORK/aq.keys" \
        "${args[@]}" "${paths[@]}" >"$WORK/aq.json" 2>"$WORK/aq.err"
}
# jq-free access to the report: aqv KEY → value as text.
aqv() {
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); v=r
for k in sys.argv[2].split("."): v=v.get(k) if isinstance(v, dict) else None
print(json.dumps(v) if isinstance(v,(dict,list)) else v)' "$WORK/aq.json" "$1" 2>/dev/null
}
# ng HOST PORT ARGS... -- PATHS...: gtlsclient (h3); debug output in $WORK/ng.out.
ng() {
    local host=$1 port=$2
    shift 2
    local args=() paths=() h=$host seen=0
    [[ $host == *:* ]] && h="[$host]"
    for a in "$@"; do
        if [[ $a == -- ]]; then seen=1
        elif ((seen)); then paths+=("https://$h:$port$a")
        else args+=("$a"); fi
    done
    timeout "${NG_TIMEOUT:-120}" gtlsclient --exit-on-all-streams-close --no-quic-dump \
        --no-http-dump --timeout=10s "${args[@]}" "$host" "$port" "${paths[@]}" >"$WORK/ng.out" 2>&1
}

# same_files DIR NAME...: each downloaded file equals the served one.
same_files() {
    local dir=$1
    shift
    local name
    for name in "$@"; do
        if ! cmp -s "$dir/$name" "$WWW/$name"; then
            # What a rare failure needs to be told apart: a short file (the stream ended
            # early) or different bytes, and what the client said last.
            echo "$name differs from the served file: $(stat -c %s "$dir/$name" 2>/dev/null || echo no) of $(stat -c %s "$WWW/$name") bytes; $(cmp "$dir/$name" "$WWW/$name" 2>&1 | head -n 1)"
            [[ -f $WORK/ng.out ]] && grep -v '^\s*$' "$WORK/ng.out" | tail -n 5 | sed 's/^/    client: /'
            return 1
        fi
    done
}
fresh_dir() {
    rm -rf "$WORK/dl" "$WORK/ng.out" "$WORK/aq.json" "$WORK/aq.err"
    mkdir -p "$WORK/dl"
}
# wait_listening OUT PID TENTHS WHERE: the port of the first "listening on WHERE..." line in OUT,
# waiting for it up to TENTHS × 0.1 s and no longer than PID lives; empty if none came.
wait_listening() {
    local out=$1 pid=$2 tenths=$3 where=$4 i
    for ((i = 0; i < tenths; i++)); do
        grep -q "listening on $where" "$out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -m1 "listening on $where" "$out" 2>/dev/null | sed 's/.*://'
}
ng_status_count() { grep -c ':status: 200' "$WORK/ng.out"; }
ng_retry_seen() { grep -q 'type=Retry' "$WORK/ng.out"; }
# Bytes of Handshake CRYPTO the client received: a full TLS 1.3 handshake carries the
# Certificate and CertificateVerify, a resumed one only EncryptedExtensions and Finished.
ng_handshake_bytes() {
    grep 'frm rx .* Handshake CRYPTO' "$WORK/ng.out" | sed 's/.*len=//' | awk '{s+=$1} END {print s+0}'
}

# ---- the cases: each prints why it failed and returns 1, or returns 2 after printing a skip ---

case_handshake() {
    fresh_dir
    if [[ $1 == aioquic ]]; then
        aq "$MAIN_PORT" --alpn hq-interop --out "$WORK/dl" -- /small || { cat "$WORK/aq.json"; return 1; }
        [[ $(aqv retry) == False ]] || { echo "unexpected Retry"; return 1; }
    else
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" -- /small || { tail -3 "$WORK/ng.out"; return 1; }
        ! ng_retry_seen || { echo "unexpected Retry"; return 1; }
        [[ $(grep -c 'Negotiated ALPN is h3' "$WORK/ng.out") == 1 ]] || { echo "not one handshake"; return 1; }
    fi
    same_files "$WORK/dl" small
}

case_transfer() {
    fresh_dir
    if [[ $1 == aioquic ]]; then
        aq "$MAIN_PORT" --alpn hq-interop --window 65536 --out "$WORK/dl" -- /f2m /f3m /f5m ||
            { cat "$WORK/aq.json"; return 1; }
    else
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" --max-data=64K \
            --max-stream-data-bidi-local=32K --max-window=64K --max-stream-window=32K \
            -- /f2m /f3m /f5m || { tail -3 "$WORK/ng.out"; return 1; }
    fi
    same_files "$WORK/dl" f2m f3m f5m
}

case_multiplexing() {
    fresh_dir
    local paths=()
    local f
    for f in "$WWW"/multi/*; do paths+=("/multi/${f##*/}"); done
    if [[ $1 == aioquic ]]; then
        aq "$MAIN_PORT" --alpn hq-interop --out "$WORK/dl" -- "${paths[@]}" ||
            { cut -c1-300 "$WORK/aq.json"; return 1; }
    else
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" -- "${paths[@]}" ||
            { tail -3 "$WORK/ng.out"; return 1; }
        [[ $(grep -c 'Negotiated ALPN is h3' "$WORK/ng.out") == 1 ]] || { echo "more than one connection"; return 1; }
    fi
    local got
    got=$(find "$WORK/dl" -type f | wc -l)
    [[ $got == 1999 ]] || { echo "$got of 1999 files"; return 1; }
    for f in "$WWW"/multi/*; do
        cmp -s "$f" "$WORK/dl/${f##*/}" || { echo "${f##*/} differs"; return 1; }
    done
}

case_chacha20() {
    fresh_dir
    if [[ $1 == aioquic ]]; then
        aq "$MAIN_PORT" --alpn hq-interop --chacha20 --out "$WORK/dl" -- /small /f1m ||
            { cat "$WORK/aq.json"; return 1; }
        [[ $(aqv cipher) == CHACHA20_POLY1305_SHA256 ]] || { echo "cipher $(aqv cipher)"; return 1; }
    else
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" \
            --ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305 -- /small /f1m ||
            { tail -3 "$WORK/ng.out"; return 1; }
        grep -q 'Negotiated cipher suite is CHACHA20-POLY1305' "$WORK/ng.out" ||
            { grep 'cipher suite' "$WORK/ng.out"; return 1; }
    fi
    same_files "$WORK/dl" small f1m
}

case_retry() {
    fresh_dir
    if [[ $1 == aioquic ]]; then
        aq "$RETRY_PORT" --alpn hq-interop --out "$WORK/dl" -- /small /f1m || { cat "$WORK/aq.json"; return 1; }
        [[ $(aqv retry) == True ]] || { echo "no Retry seen"; return 1; }
    else
        ng 127.0.0.1 "$RETRY_PORT" --download "$WORK/dl" -- /small /f1m || { tail -3 "$WORK/ng.out"; return 1; }
        ng_retry_seen || { echo "no Retry seen"; return 1; }
        grep -q 'retry_source_connection_id=' "$WORK/ng.out" ||
            { echo "no retry_source_connection_id transport parameter"; return 1; }
    fi
    same_files "$WORK/dl" small f1m
}

case_resumption() {
    fresh_dir
    local session=$WORK/session.$1
    rm -f "$session"
    if [[ $1 == aioquic ]]; then
        aq "$MAIN_PORT" --alpn hq-interop --session "$session" --out "$WORK/dl" -- /small ||
            { cat "$WORK/aq.json"; return 1; }
        [[ $(aqv resumed) == False ]] || { echo "first handshake resumed?"; return 1; }
        aq "$MAIN_PORT" --alpn hq-interop --session "$session" --out "$WORK/dl" -- /f1m ||
            { cat "$WORK/aq.json"; return 1; }
        [[ $(aqv resumed) == True ]] || { echo "second handshake not resumed"; return 1; }
    else
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" --session-file="$session" \
            --disable-early-data -- /small || { tail -3 "$WORK/ng.out"; return 1; }
        local full resumed
        full=$(ng_handshake_bytes)
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" --session-file="$session" \
            --disable-early-data -- /f1m || { tail -3 "$WORK/ng.out"; return 1; }
        resumed=$(ng_handshake_bytes)
        # The self-signed certificate and its signature are several hundred bytes.
        ((resumed + 300 < full)) ||
            { echo "second handshake carried $resumed bytes, the first $full: not resumed"; return 1; }
    fi
    same_files "$WORK/dl" small f1m
}

case_zerortt() {
    fresh_dir
    local session=$WORK/zsession.$1
    rm -f "$session" "$session.h3" "$WORK/tp"
    if [[ $1 == aioquic ]]; then
        aq "$MAIN_PORT" --alpn hq-interop --session "$session" -- /small || { cat "$WORK/aq.json"; return 1; }
        aq "$MAIN_PORT" --alpn hq-interop --session "$session" --zero-rtt --out "$WORK/dl" -- /small /f1m ||
            { cat "$WORK/aq.json"; return 1; }
        [[ $(aqv early_data) == True ]] || { echo "early data not accepted"; return 1; }
        same_files "$WORK/dl" small f1m || return 1
        # RFC 8470: a request that is not safe is refused from early data. Over h3 (early data
        # needs a ticket from a connection with the same ALPN).
        aq "$MAIN_PORT" --session "$session.h3" -- /small || { cat "$WORK/aq.json"; return 1; }
        aq "$MAIN_PORT" --session "$session.h3" --zero-rtt --method POST -- /small || { cat "$WORK/aq.json"; return 1; }
        [[ $(aqv early_data) == True && $(aqv statuses.425) == 1 ]] ||
            { echo "early POST: $(aqv statuses), early data $(aqv early_data)"; return 1; }
    else
        ng 127.0.0.1 "$MAIN_PORT" --session-file="$session" --tp-file="$WORK/tp" -- /small ||
            { tail -3 "$WORK/ng.out"; return 1; }
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" --session-file="$session" \
            --tp-file="$WORK/tp" -- /small /f1m || { tail -3 "$WORK/ng.out"; return 1; }
        grep -q 'tx .* 0RTT STREAM(0x0b) id=0x0' "$WORK/ng.out" || { echo "request not sent in 0-RTT"; return 1; }
        ! grep -q 'Early data was rejected' "$WORK/ng.out" || { echo "early data rejected"; return 1; }
        same_files "$WORK/dl" small f1m
    fi
}

case_http3() {
    fresh_dir
    if [[ $1 == aioquic ]]; then
        aq "$MAIN_PORT" --alpn h3 --out "$WORK/dl" -- /small /f1m /f2m || { cat "$WORK/aq.json"; return 1; }
        [[ $(aqv alpn) == h3 && $(aqv statuses.200) == 3 ]] || { cat "$WORK/aq.json"; return 1; }
    else
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" -- /small /f1m /f2m || { tail -3 "$WORK/ng.out"; return 1; }
        [[ $(ng_status_count) == 3 ]] || { echo "$(ng_status_count) of 3 answered 200"; return 1; }
    fi
    same_files "$WORK/dl" small f1m f2m
}

case_keyupdate() {
    fresh_dir
    if [[ $1 == aioquic ]]; then
        aq "$MAIN_PORT" --alpn hq-interop --key-update --out "$WORK/dl" -- /f1m /f2m || { cat "$WORK/aq.json"; return 1; }
        # Our packets carry the new key phase; the server's must follow or they fail to decrypt.
        [[ $(aqv key_updates.local) -ge 1 ]] || { echo "no key update: $(aqv key_updates)"; return 1; }
    else
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" --key-update=1ms -- /f1m /f2m ||
            { tail -3 "$WORK/ng.out"; return 1; }
        grep -q 'key update confirmed' "$WORK/ng.out" || { echo "key update not confirmed"; return 1; }
    fi
    same_files "$WORK/dl" f1m f2m
}

case_ipv6() {
    fresh_dir
    if [[ $1 == aioquic ]]; then
        timeout 60 "$PY" "$HERE/aioquic_client.py" --alpn hq-interop --out "$WORK/dl" \
            "https://[::1]:$MAIN_PORT6/small" "https://[::1]:$MAIN_PORT6/f1m" >"$WORK/aq.json" 2>&1 ||
            { cat "$WORK/aq.json"; return 1; }
    else
        ng ::1 "$MAIN_PORT6" --download "$WORK/dl" -- /small /f1m || { tail -3 "$WORK/ng.out"; return 1; }
    fi
    same_files "$WORK/dl" small f1m
}

case_v2() {
    # quinn 0.11 implements QUIC v1 (and drafts 29-34) only. What can be checked: a client
    # offering v2 first gets a Version Negotiation and completes over v1.
    fresh_dir
    if [[ $1 == aioquic ]]; then
        aq "$MAIN_PORT" --alpn hq-interop --v2 --out "$WORK/dl" -- /small || { cat "$WORK/aq.json"; return 1; }
        [[ $(aqv version) == 0x1 ]] || { echo "version $(aqv version)"; return 1; }
    else
        ng 127.0.0.1 "$MAIN_PORT" --download "$WORK/dl" -v v2draft --preferred-versions=v2draft,v1 -- /small ||
            { tail -3 "$WORK/ng.out"; return 1; }
        grep -q 'the negotiated version is 0x00000001' "$WORK/ng.out" || { echo "not v1"; return 1; }
    fi
    same_files "$WORK/dl" small || return 1
    echo "server speaks QUIC v1 only (quinn 0.11 has no v2); checked: a v2-first client falls back to v1"
    return 2
}

case_transferloss() {
    fresh_dir
    start_proxy --loss 0.02 --seed 7
    local rc=0
    if [[ $1 == aioquic ]]; then
        aq "$PROXY_PORT" --alpn hq-interop --out "$WORK/dl" -- /f2m /f3m || { cat "$WORK/aq.json"; rc=1; }
    else
        ng 127.0.0.1 "$PROXY_PORT" --download "$WORK/dl" -- /f2m /f3m || { tail -3 "$WORK/ng.out"; rc=1; }
    fi
    stop_proxy
    ((rc == 0)) && same_files "$WORK/dl" f2m f3m
}

# 30 % loss each way: a connection can stall for tens of seconds. When the server's flight is
# lost, it may send nothing until a client probe arrives (RFC 9000 §8.1: three times the bytes
# received); once the client has the flight, it alone must deliver its Finished (RFC 9002
# §6.2.1: no PTO for application data before the handshake is confirmed); and the client's
# probes back off exponentially (1, 3, 7, 15, 31, 63 s). The clients get 110 s and the server
# 120 s of idle time; one connection in the run may still time out (about 0.5 % each at this
# loss) and is retried once. Any other failure, a second timeout, or a wrong byte fails.
case_handshakeloss() {
    fresh_dir
    start_proxy --loss 0.30 --seed 11
    local i rc=0 retried=0 ok why
    for ((i = 0; i < HANDSHAKES; i++)); do
        rm -f "$WORK/dl/small"
        ok=1
        if [[ $1 == aioquic ]]; then
            AQ_TIMEOUT=120 aq "$PROXY_PORT" --alpn hq-interop --idle-timeout 110 --timeout 110 \
                --out "$WORK/dl" -- /small || ok=0
        else
            NG_TIMEOUT=120 ng 127.0.0.1 "$PROXY_PORT" --download "$WORK/dl" --handshake-timeout=110s \
                --timeout=110s -- /small || ok=0
        fi
        # gtlsclient exits 0 after an idle close: the file decides.
        ((ok)) && ! same_files "$WORK/dl" small >/dev/null && ok=0
        ((ok)) && continue
        if ((!retried)) && client_timed_out "$1"; then
            retried=1
            echo "connection $i timed out under loss; retried once" >&2
            ((i--))
            continue
        fi
        if [[ $1 == aioquic ]]; then
            why=$(cat "$WORK/aq.json")
        else
            why=$(grep -v 'frm\|pkt\|Sent packet\|Received packet' "$WORK/ng.out" | tail -4)
        fi
        echo "connection $i failed: $why"
        rc=1
        break
    done
    stop_proxy
    return $rc
}
# Whether the client's last connection ended by its own handshake or idle timeout.
client_timed_out() {
    if [[ $1 == aioquic ]]; then
        grep -qi 'timeout' "$WORK/aq.json" "$WORK/aq.err" 2>/dev/null
    else
        grep -q 'ERR_HANDSHAKE_TIMEOUT\|ERR_IDLE_CLOSE' "$WORK/ng.out"
    fi
}

case_transfercorruption() {
    fresh_dir
    start_proxy --corrupt 0.02 --seed 5
    local rc=0
    if [[ $1 == aioquic ]]; then
        aq "$PROXY_PORT" --alpn hq-interop --out "$WORK/dl" -- /f2m || { cat "$WORK/aq.json"; rc=1; }
    else
        ng 127.0.0.1 "$PROXY_PORT" --download "$WORK/dl" -- /f2m || { tail -3 "$WORK/ng.out"; rc=1; }
    fi
    stop_proxy
    ((rc == 0)) && same_files "$WORK/dl" f2m
}

case_blackhole() {
    fresh_dir
    start_proxy --blackhole 1000000:1.5
    local rc=0
    if [[ $1 == aioquic ]]; then
        aq "$PROXY_PORT" --alpn hq-interop --out "$WORK/dl" -- /f5m || { cat "$WORK/aq.json"; rc=1; }
    else
        ng 127.0.0.1 "$PROXY_PORT" --download "$WORK/dl" -- /f5m || { tail -3 "$WORK/ng.out"; rc=1; }
    fi
    stop_proxy
    grep -q 'blackholed=[1-9]' "$WORK/proxy.err" || { echo "the blackhole dropped nothing"; rc=1; }
    ((rc == 0)) && same_files "$WORK/dl" f5m
}

case_hostile() {
    # Malformed requests (hq: other methods, overlong or control-byte lines, empty streams; h3: no
    # :path, uppercase field names, Host differing from :authority, a body shorter than its
    # content-length) are refused on their own stream; a GET on the same connection still works.
    [[ $1 == aioquic ]] || { echo "gtlsclient sends only well-formed requests"; return 2; }
    local alpn
    for alpn in hq-interop h3; do
        timeout 60 "$PY" "$HERE/hostile.py" --alpn "$alpn" "https://127.0.0.1:$MAIN_PORT/small" \
            "$WWW/small" >"$WORK/hostile.json" 2>&1 || { echo "$alpn: $(cat "$WORK/hostile.json")"; return 1; }
    done
}

case_h3conformance() {
    # Every HTTP/3 byte written by the case: each violation must get its RFC error code (a
    # connection error, or a stream error after which the connection still serves a GET).
    [[ $1 == aioquic ]] || { echo "gtlsclient sends only well-formed frames"; return 2; }
    timeout 300 "$PY" "$HERE/h3_conformance.py" "https://127.0.0.1:$MAIN_PORT/small" "$WWW/small" --large /f1m \
        >"$WORK/h3conf.out" 2>&1 || { grep -v '^PASS' "$WORK/h3conf.out"; return 1; }
    tail -1 "$WORK/h3conf.out"
}

case_drain() {
    # SIGTERM during a download: the answer is finished and acknowledged before the connection
    # closes (closing discards what QUIC has not delivered), then the server exits 0.
    fresh_dir
    local name=DRAIN_$1 pid port client status
    start_server "$name" --listen 127.0.0.1:0
    pid=${PIDS[-1]}
    port=$(eval echo "\$${name}_PORT")
    if [[ $1 == aioquic ]]; then
        aq "$port" --alpn hq-interop --window 131072 --out "$WORK/dl" -- /f64m &
    else
        ng 127.0.0.1 "$port" --max-data=128K --max-stream-data-bidi-local=128K --max-window=128K \
            --max-stream-window=128K --download "$WORK/dl" -- /f64m &
    fi
    client=$!
    # Signalled once 1 MiB has arrived: gtlsclient writes the file as it receives, aioquic
    # says so on stderr.
    local i
    received() {
        if [[ $1 == aioquic ]]; then grep -q '^progress: 1 MiB' "$WORK/aq.err" 2>/dev/null
        else (($(stat -c %s "$WORK/dl/f64m" 2>/dev/null || echo 0) >= 1048576)); fi
    }
    # What a failure needs to be understood: the client's and the server's last words.
    say_why() {
        echo "$1"
        [[ -s $WORK/aq.err ]] && tail -n 3 "$WORK/aq.err" | sed 's/^/    client: /'
        [[ -s $WORK/aq.json ]] && sed 's/^/    client: /' "$WORK/aq.json"
        [[ -s $WORK/ng.out ]] && grep -v '^\s*$' "$WORK/ng.out" | tail -n 3 | sed 's/^/    client: /'
        tail -n 4 "$WORK/$name.err" | sed 's/^/    server: /'
    }
    for ((i = 0; i < 1000; i++)); do
        received "$1" && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.01
    done
    if ! received "$1"; then
        say_why "no 1 MiB received after ${i}0 ms"
        kill "$client" "$pid" 2>/dev/null
        return 1
    fi
    if ! kill -0 "$client" 2>/dev/null || [[ -f $WORK/dl/f64m && $1 == aioquic ]] ||
        (($(stat -c %s "$WORK/dl/f64m" 2>/dev/null || echo 0) >= 64 * 1048576)); then
        echo "the download ended before the signal: nothing was drained"
        kill "$pid"
        return 1
    fi
    kill -TERM "$pid"
    wait "$client" || { say_why "client failed"; return 1; }
    wait "$pid"
    status=$?
    ((status == 0)) || { echo "server exited $status after SIGTERM"; return 1; }
    same_files "$WORK/dl" f64m
}

case_certreload() {
    # Renewed certificate files and SIGHUP: the next QUIC handshake shows the new certificate
    # (a client trusting only it verifies, one trusting only the old one no longer does); a
    # half-renewed pair is refused whole and the old certificate keeps answering.
    [[ $1 == aioquic ]] || { echo "gtlsclient verifies no certificate (aioquic column)"; return 2; }
    fresh_dir
    local dir=$WORK/certreload n pid port i
    mkdir -p "$dir"
    for n in old new; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=localhost -addext subjectAltName=DNS:localhost \
            -keyout "$dir/$n.key" -out "$dir/$n.pem" >/dev/null 2>&1 ||
            { echo "openssl could not make a certificate"; return 1; }
    done
    cp "$dir/old.pem" "$dir/live.pem"
    cp "$dir/old.key" "$dir/live.key"
    printf '%s\n' '[[listen]]' 'address = "127.0.0.1:0"' '[tls]' "cert = \"$dir/live.pem\"" \
        "key = \"$dir/live.key\"" '[torrent]' 'enabled = false' '[[vhost]]' '[[vhost.location]]' \
        'path = "/"' "root = \"$WWW\"" >"$dir/sy.toml"
    "$BIN" run -c "$dir/sy.toml" >"$dir/out" 2>"$dir/err" &
    pid=$!
    PIDS+=("$pid")
    port=$(wait_listening "$dir/out" "$pid" 100 127.0.0.1:)
    [[ -n $port ]] || { echo "server did not start: $(tail -n 3 "$dir/err")"; return 1; }
    # verifies NAME: a client trusting only NAME.pem is served /small over QUIC.
    verifies() { aq "$port" --alpn hq-interop --cafile "$dir/$1.pem" -- /small; }
    verifies old || { echo "old certificate not shown at start: $(cat "$WORK/aq.json")"; return 1; }
    ! verifies new || { echo "a client trusting only the new certificate verified at start"; return 1; }
    # Half a renewal: the new certificate beside the old key.
    cp "$dir/new.pem" "$dir/live.pem"
    kill -HUP "$pid"
    for ((i = 0; i < 100; i++)); do
        grep -q 'reload failed' "$dir/err" && break
        sleep 0.1
    done
    grep -q 'reload failed' "$dir/err" || { echo "the mismatched pair was not refused"; return 1; }
    verifies old || { echo "a refused reload changed the certificate"; return 1; }
    cp "$dir/new.key" "$dir/live.key"
    kill -HUP "$pid"
    for ((i = 0; i < 50; i++)); do
        verifies new && break
        sleep 0.1
    done
    verifies new || { echo "the renewed certificate is not shown: $(cat "$WORK/aq.json")"; return 1; }
    ! verifies old || { echo "the old certificate is still shown after the reload"; return 1; }
    kill "$pid"
    wait "$pid"
    echo "old certificate, a half renewal refused, then the new one on the next handshake"
}

case_endpoint() {
    # interop/run_endpoint.sh, the interop runner's server contract, run outside a container
    # (WWW, CERTS, PORT and SWITCHYARD point it at ours): a case it does not support and a
    # client role exit 127; TESTCASE=retry starts a server that asks every client to retry and
    # writes the key log and qlog where SSLKEYLOGFILE and QLOGDIR say.
    fresh_dir
    local script=$ROOT/interop/run_endpoint.sh certs=$WORK/certs
    if [[ ! -f $certs/priv.key ]]; then
        mkdir -p "$certs"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=server -keyout "$certs/priv.key" -out "$certs/cert.pem" >/dev/null 2>&1 ||
            { echo "openssl could not make a certificate"; return 1; }
    fi
    local bad rc
    for bad in "server v2" "server connectionmigration" "server nonsense" "client handshake"; do
        read -r role testcase <<<"$bad"
        # A case wrongly accepted would start a server: the timeout ends it (exit 124).
        ROLE=$role TESTCASE=$testcase WWW=$WWW CERTS=$certs PORT=0 SWITCHYARD=$BIN \
            timeout 10 bash "$script" >/dev/null 2>&1 </dev/null
        rc=$?
        ((rc == 127)) || { echo "ROLE=$role TESTCASE=$testcase: exit $rc, not 127"; return 1; }
    done
    local out=$WORK/endpoint.out qlog=$WORK/endpoint-qlog keys=$WORK/endpoint.keys pid port
    rm -rf "$qlog" "$keys"
    ROLE=server TESTCASE=retry WWW=$WWW CERTS=$certs PORT=0 SWITCHYARD=$BIN QLOGDIR=$qlog \
        SSLKEYLOGFILE=$keys bash "$script" >"$out" 2>"$WORK/endpoint.err" </dev/null &
    pid=$! # the server itself: the script execs it
    # Up to 30 s (it hashes ~2,000 files for seeding first, slow on a loaded machine), and no
    # longer than the server lives.
    port=$(wait_listening "$out" "$pid" 300 0.0.0.0:)
    if [[ -z $port ]]; then
        echo "the endpoint did not start: $(tail -n 3 "$WORK/endpoint.err")"
        kill "$pid" 2>/dev/null
        return 1
    fi
    local served=0 retried=False
    if [[ $1 == aioquic ]]; then
        aq "$port" --alpn hq-interop --out "$WORK/dl" -- /small && served=1
        retried=$(aqv retry)
    else
        ng 127.0.0.1 "$port" --download "$WORK/dl" -- /small && served=1
        ng_retry_seen && retried=True
    fi
    kill "$pid"
    wait "$pid"
    ((served)) || { echo "not served: $(tail -n 3 "$WORK/endpoint.err")"; return 1; }
    [[ $retried == True ]] || { echo "TESTCASE=retry did not ask for a Retry"; return 1; }
    same_files "$WORK/dl" small || return 1
    grep -q '^CLIENT_HANDSHAKE_TRAFFIC_SECRET ' "$keys" 2>/dev/null ||
        { echo "no secrets in \$SSLKEYLOGFILE"; return 1; }
    [[ -n $(find "$qlog" -name '*.sqlog' -size +0 2>/dev/null) ]] || { echo "no qlog in \$QLOGDIR"; return 1; }
    echo "127 for v2, connectionmigration, an unknown case and ROLE=client; retry served with key log and qlog"
}

case_artifacts() {
    # The server's own SSLKEYLOGFILE and qlog output, after the cases above ran against it.
    [[ $1 == aioquic ]] || { echo "checked once (aioquic column)"; return 2; }
    grep -q '^CLIENT_HANDSHAKE_TRAFFIC_SECRET ' "$WORK/server.keys" 2>/dev/null ||
        { echo "no QUIC secrets in the server's SSLKEYLOGFILE"; return 1; }
    local n
    n=$(find "$WORK/qlog" -name '*.sqlog' -size +0 | wc -l)
    ((n > 0)) || { echo "no qlog files"; return 1; }
    grep -q '"packet_received"\|packet_received' "$(find "$WORK/qlog" -name '*.sqlog' | head -1)" ||
        { echo "qlog without packet events"; return 1; }
    echo "server key log has secrets; $n qlog files"
}

# ---- run --------------------------------------------------------------------------------------
declare -A PASS FAIL SKIP
TOTAL_PASS=0 TOTAL_FAIL=0 TOTAL_SKIP=0
for client in "${CLIENTS[@]}"; do
    PASS[$client]=0 FAIL[$client]=0 SKIP[$client]=0
    for name in $CASES; do
        started=$(date +%s%N)
        msg=$(case_$name "$client" 2>&1)
        rc=$?
        took=$(awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
        case $rc in
            0) verdict=PASS; PASS[$client]=$((PASS[$client] + 1)); TOTAL_PASS=$((TOTAL_PASS + 1)) ;;
            2) verdict=SKIP; SKIP[$client]=$((SKIP[$client] + 1)); TOTAL_SKIP=$((TOTAL_SKIP + 1)) ;;
            *) verdict=FAIL; FAIL[$client]=$((FAIL[$client] + 1)); TOTAL_FAIL=$((TOTAL_FAIL + 1)) ;;
        esac
        printf '%-7s %-8s %-20s %5ss %s\n' "$verdict" "$client" "$name" "$took" "${msg//$'\n'/ | }"
    done
done
if ((TOTAL_FAIL)); then
    echo "--- server stderr (last lines) ---"
    tail -n 20 "$WORK/MAIN.err"
fi
echo
for client in "${CLIENTS[@]}"; do
    echo "quic interop $client: ${PASS[$client]} passed, ${FAIL[$client]} failed, ${SKIP[$client]} skipped"
done
echo "quic-interop: $TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"
((TOTAL_FAIL == 0))
