#!/usr/bin/env bash
# HTTP/3 benchmark: Switchyard against Caddy over QUIC, and Switchyard's own HTTP/2, same run.
#
#   bash interop/bench/h3.sh            (from anywhere; builds the release binary first)
#
# Serves one directory (a 1 KiB file and a 64 MiB file) with one self-signed ECDSA P-256
# certificate made here with openssl, from
#   caddy       Debian's caddy, `file_server`, protocols h1 h2 h3, admin and logs off, GOMAXPROCS=2
#   switchyard  `serve --workers 2 --cert --key`, release build, RUST_LOG=warn
# then, round by round, the order of the servers rotated each round:
#   gtlsclient -n REQUESTS (5000) GETs of /1k.bin over ONE HTTP/3 connection     wall time → req/s
#   gtlsclient download of /64m.bin over HTTP/3 (DOWNLOADS per round)            bytes/s
#   curl --http2 download of /64m.bin from switchyard (DOWNLOADS per round)      bytes/s
# and prints medians, the ratios switchyard/caddy for both HTTP/3 loads and switchyard H3/H2 bulk,
# and whether the targets hold (≥ 3× Caddy on the GETs, ≥ 2× Caddy on 64 MiB, H3 bulk ≥ 0.8× H2).
# Answers are checked: before timing, one run of the 5000 GETs per server with gtlsclient's debug
# output counts 5000 `:status: 200` lines; the timed runs are quiet (-q: the per-packet debug
# output would dominate the time) and must exit 0; every 64 MiB download is compared (SHA-256).
#
# Not a CI test: numbers belong to this machine and run, and the client shares the cores with the
# servers. Results go to stdout and interop/bench/out/. Servers are stopped by their PIDs.
#
# Environment: ROUNDS (3), DOWNLOADS (3), REQUESTS (5000), SKIP_BUILD=1, SWITCHYARD_BIN,
#   SERVERS ("caddy switchyard").
set -euo pipefail

source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
DOWNLOADS=${DOWNLOADS:-3}
REQUESTS=${REQUESTS:-5000}
read -r -a SERVERS <<<"${SERVERS:-caddy switchyard}"
OUT_DIR="$ROOT/interop/bench/out"
RUN_DIR="$OUT_DIR/h3-$(date +%Y%m%d-%H%M%S)"
SUMMARY="$RUN_DIR/summary.txt"
FILE_64M=$((64 * 1024 * 1024))

need gtlsclient=ngtcp2-client curl=curl openssl=openssl
has caddy && need caddy=caddy
build_switchyard

TMP=$(mktemp -d)
mkdir -p "$RUN_DIR" "$TMP/www"
head -c 1024 /dev/urandom >"$TMP/www/1k.bin"
head -c "$FILE_64M" /dev/urandom >"$TMP/www/64m.bin"
WANT_64M=$(sha256sum "$TMP/www/64m.bin" | cut -d' ' -f1)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null

# ---- servers ----------------------------------------------------------------------------------
declare -A PORT
start_switchyard() {
    start_switchyard_process "$TMP/sy" serve "$TMP/www" --listen 127.0.0.1:0 --workers 2 \
        --cert "$TMP/cert.pem" --key "$TMP/key.pem"
    PORT[switchyard]=$SY_PORT
}
start_caddy() {
    local port
    port=$(free_port)
    cat >"$TMP/Caddyfile" <<EOF
{
    admin off
    auto_https off
    servers {
        protocols h1 h2 h3
    }
}
https://127.0.0.1:$port {
    tls $TMP/cert.pem $TMP/key.pem
    root * $TMP/www
    file_server
}
EOF
    XDG_DATA_HOME=$TMP/caddy XDG_CONFIG_HOME=$TMP/caddy GOMAXPROCS=2 \
        caddy run --config "$TMP/Caddyfile" --adapter caddyfile >"$TMP/caddy.log" 2>&1 &
    PIDS+=($!)
    PORT[caddy]=$port
    wait_url "https://127.0.0.1:$port/1k.bin"
}
has caddy && start_caddy
has switchyard && start_switchyard
log "ports: $(for s in "${SERVERS[@]}"; do printf '%s=%s ' "$s" "${PORT[$s]}"; done)"

# ---- loads ------------------------------------------------------------------------------------
now_ns() { date +%s%N; }

# Before timing: the same 5000 GETs with gtlsclient's debug output, where every answer's
# `:status: 200` line is counted. Prints nothing; a shortfall is reported and fails the run.
check_gets() {
    local server=$1 port=${PORT[$1]} out=$TMP/check.$1 ok
    gtlsclient --exit-on-all-streams-close --no-quic-dump --no-http-dump --timeout=30s \
        -n "$REQUESTS" 127.0.0.1 "$port" "https://127.0.0.1:$port/1k.bin" >"$out" 2>&1 || true
    ok=$(grep -c ':status: 200' "$out" || true)
    if [[ $ok != "$REQUESTS" ]]; then
        log "$server: $ok of $REQUESTS GETs answered 200"
        exit 1
    fi
    log "$server: $REQUESTS of $REQUESTS GETs answered 200 on one connection"
}

# 5000 GETs over one connection, timed with the client quiet (-q: its per-packet debug output
# would otherwise be most of the time measured); prints requests/s, 0 if the client failed.
many_gets() {
    local server=$1 port=${PORT[$1]}
    local start end
    start=$(now_ns)
    if ! gtlsclient -q --exit-on-all-streams-close --timeout=30s -n "$REQUESTS" \
        127.0.0.1 "$port" "https://127.0.0.1:$port/1k.bin" >/dev/null 2>&1; then
        log "$server: gtlsclient failed"
        echo 0
        return
    fi
    end=$(now_ns)
    awk -v n="$REQUESTS" -v ns=$((end - start)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }'
}

# Wall time in ms of one GET on a fresh connection (client start, handshake, request, close):
# the fixed cost inside every `many_gets` figure, mostly the client's own (≈ 40 ms here for
# either server), reported so the per-request rate can be told apart from it.
one_get_ms() {
    local port=${PORT[$1]} start end
    start=$(now_ns)
    gtlsclient -q --exit-on-all-streams-close --timeout=30s 127.0.0.1 "$port" \
        "https://127.0.0.1:$port/1k.bin" >/dev/null 2>&1 || true
    end=$(now_ns)
    echo $(((end - start) / 1000000))
}

# One 64 MiB download over HTTP/3; prints bytes/s (0 when the bytes differ).
h3_download() {
    local server=$1 port=${PORT[$1]} dir=$TMP/dl.$1
    rm -rf "$dir"
    mkdir -p "$dir"
    local start end
    start=$(now_ns)
    gtlsclient -q --exit-on-all-streams-close --timeout=30s --download "$dir" \
        127.0.0.1 "$port" "https://127.0.0.1:$port/64m.bin" >/dev/null 2>&1 || true
    end=$(now_ns)
    if [[ $(sha256sum "$dir/64m.bin" 2>/dev/null | cut -d' ' -f1) != "$WANT_64M" ]]; then
        log "$server: HTTP/3 download incomplete or different"
        echo 0
        return
    fi
    awk -v b="$FILE_64M" -v ns=$((end - start)) 'BEGIN { printf "%.0f", b / (ns / 1e9) }'
}

# One 64 MiB download over HTTP/2 (curl); prints bytes/s.
h2_download() {
    local port=${PORT[$1]}
    local out
    out=$(curl -sk --http2 -o "$TMP/h2.bin" -w '%{http_version} %{size_download} %{time_total}' \
        "https://127.0.0.1:$port/64m.bin")
    read -r version size seconds <<<"$out"
    if [[ $version != 2 || $size != "$FILE_64M" ]]; then
        log "$1: HTTP/2 download: version $version, $size bytes"
        echo 0
        return
    fi
    awk -v b="$size" -v s="$seconds" 'BEGIN { printf "%.0f", b / s }'
}

for s in "${SERVERS[@]}"; do
    check_gets "$s"
done

declare -A GETS BULK H2BULK ONE
for ((round = 1; round <= ROUNDS; round++)); do
    while read -r server; do
        GETS[$server]+=" $(many_gets "$server")"
        ONE[$server]+=" $(one_get_ms "$server")"
        for ((d = 0; d < DOWNLOADS; d++)); do
            BULK[$server]+=" $(h3_download "$server")"
            if [[ $server == switchyard ]]; then
                H2BULK[$server]+=" $(h2_download "$server")"
            fi
        done
    done < <(in_turn "$round")
    log "round $round done"
done

# ---- report -----------------------------------------------------------------------------------
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
{
    echo "HTTP/3 benchmark, $(date -u +%FT%TZ), $(nproc) cores shared with the load generator"
    echo "rounds $ROUNDS, downloads per round $DOWNLOADS, GETs per connection $REQUESTS"
    echo
    printf '%-12s %16s %18s %18s\n' server "h3 GETs req/s" "h3 64MiB MiB/s" "h2 64MiB MiB/s"
    for s in "${SERVERS[@]}"; do
        g=$(echo "${GETS[$s]:-0}" | median)
        b=$(echo "${BULK[$s]:-0}" | median)
        h=$(echo "${H2BULK[$s]:-0}" | median)
        printf '%-12s %16s %18s %18s\n' "$s" "$g" "$(mib "$b")" "$([[ $s == switchyard ]] && mib "$h" || echo -)"
        printf -v "G_$s" '%s' "$g"
        printf -v "B_$s" '%s' "$b"
        printf -v "H_$s" '%s' "$h"
        o=$(echo "${ONE[$s]:-0}" | median)
        printf -v "O_$s" '%s' "$o"
    done
    echo
    for s in "${SERVERS[@]}"; do
        g=G_$s o=O_$s
        # Per-request rate once the connection is up: REQUESTS-1 GETs in (total - one GET).
        m=$(awk -v n="$REQUESTS" -v r="${!g}" -v o="${!o}" \
            'BEGIN { t = n / r - o / 1000; if (r > 0 && t > 0) printf "%.0f", (n - 1) / t; else print 0 }')
        printf -v "M_$s" '%s' "$m"
        echo "$s: one GET on a fresh connection ${!o} ms; GETs once connected: $m req/s"
    done
    echo
    if has caddy && has switchyard; then
        r_gets=$(ratio "$G_switchyard" "$G_caddy")
        r_bulk=$(ratio "$B_switchyard" "$B_caddy")
        echo "switchyard/caddy  5000 GETs on one connection: ${r_gets}x (target >= 3)"
        echo "switchyard/caddy  64 MiB download:            ${r_bulk}x (target >= 2)"
        echo "switchyard/caddy  GETs once connected:        $(ratio "$M_switchyard" "$M_caddy")x (connection set-up excluded)"
    fi
    if has switchyard; then
        echo "switchyard H3/H2  64 MiB download:            $(ratio "$B_switchyard" "$H_switchyard")x (target >= 0.8)"
    fi
    echo "raw: gets[${GETS[*]}] bulk[${BULK[*]}] h2bulk[${H2BULK[*]:-}]"
} | tee "$SUMMARY"
