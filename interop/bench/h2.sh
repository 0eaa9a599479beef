#!/usr/bin/env bash
# HTTP/2 and TLS benchmark: Switchyard against nginx and h2o, same machine, same files, same run.
#
#   bash interop/bench/h2.sh            (from anywhere; builds the release binary first)
#
# Serves one directory (a 1 KiB file and a 64 MiB file) over TLS, with one self-signed ECDSA P-256
# certificate made by this script with openssl, from
#   nginx       2 workers, `listen ... ssl http2`, sendfile, open_file_cache, access_log off
#   h2o         2 threads, user root, max-connections 16384, TLS; a second, cleartext listener for h2c
#               (h2o serves TLS and cleartext on different ports)
#   switchyard  `serve --workers 2 --cert --key`, release build, RUST_LOG=warn; TLS, HTTP/1.1 and h2c
#               all on its one port
# then, interleaved so drift hits every server alike (nginx, h2o, switchyard, nginx, ...):
#   ROUNDS x  h2load -c64 -m10 -D10 https://.../1k.bin       HTTP/2 over TLS (ALPN h2), requests/s
#   ROUNDS x DOWNLOADS x  curl --http2 of /64m.bin over TLS    bytes/s
#   ROUNDS x  wrk -t2 -c256 -d10s https://.../1k.bin          HTTP/1.1 keep-alive over TLS, requests/s
#   ROUNDS x  h2load -c64 -m10 -D10 http://.../1k.bin         h2c with prior knowledge, requests/s
#             (h2o and switchyard only: nginx cannot speak h2c on a port that also takes TLS, so it
#             is skipped there)
# and prints medians, the ratios switchyard/h2o and switchyard/nginx (of the medians, and the
# median of the per-round ratios, which pairs runs made back to back), each server's CPU time per
# request and per download (scheduler run time of all its threads), h2load's own CPU per request
# and how busy its one thread was (near 100 %, the load generator sets the pace, not the server),
# the targets of issue 3 and every failed request, wrong protocol or short download.
#
# Not a CI test: numbers depend on the machine, and the load generators share its cores with the
# servers. Results go to stdout and interop/bench/out/. Every server is started by this script as a
# foreground process and stopped by its PID.
#
# Environment: ROUNDS (3), DOWNLOADS (5), DURATION (10s, for h2load and wrk), H2_CONNS (64),
#   H2_STREAMS (10), CONNS (256, wrk), SKIP_BUILD=1, SWITCHYARD_BIN,
#   SERVERS ("nginx h2o switchyard": a subset runs only those).
set -euo pipefail

source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
DOWNLOADS=${DOWNLOADS:-5}
DURATION=${DURATION:-10s}
H2_CONNS=${H2_CONNS:-64}
H2_STREAMS=${H2_STREAMS:-10}
CONNS=${CONNS:-256}
read -r -a SERVERS <<<"${SERVERS:-nginx h2o switchyard}"
# Servers that take h2c with prior knowledge (see the header: not nginx).
H2C_SERVERS=()
for s in "${SERVERS[@]}"; do
    [[ "$s" == nginx ]] || H2C_SERVERS+=("$s")
done
OUT_DIR="$ROOT/interop/bench/out"
STAMP=$(date +%Y%m%d-%H%M%S)
RUN_DIR="$OUT_DIR/h2-$STAMP"
SUMMARY="$RUN_DIR/summary.txt"
FILE_64M=$((64 * 1024 * 1024))


# ---- prerequisites ----------------------------------------------------------------------------

need nginx=nginx-light h2o=h2o h2load=nghttp2-client wrk=wrk curl=curl openssl=openssl python3=python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
curl --version | grep -q 'HTTP2' || { log "this curl has no HTTP/2 support"; exit 1; }

has switchyard && build_switchyard

mkdir -p "$RUN_DIR"
TMP=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
WWW="$TMP/www"
mkdir -p "$WWW"
# nginx workers drop root privileges to `nobody`: they must be able to read the files.
chmod 755 "$TMP" "$WWW"
head -c 1024 /dev/urandom >"$WWW/1k.bin"
head -c "$FILE_64M" /dev/urandom >"$WWW/64m.bin"

# One certificate for every server, so every handshake costs the same.
CERT="$TMP/cert.pem"
KEY="$TMP/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$KEY" -out "$CERT" 2>"$RUN_DIR/openssl.log"
chmod 644 "$CERT" "$KEY"

# ---- process control (by PID only) ------------------------------------------------------------



# ---- servers ----------------------------------------------------------------------------------

# PORT: the TLS port (also HTTP/1.1 over TLS); H2C_PORT: where h2c with prior knowledge is served.
declare -A PORT=() H2C_PORT=()
NGINX_PID="" H2O_PID="" SY_PID=""

start_nginx() {
    local port
    port=$(free_port)
    cat >"$TMP/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events {
    worker_connections 16384;
}
http {
$(nginx_static_http)
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:$port ssl http2;
        root $WWW;
    }
}
EOF
    "$NGINX" -c "$TMP/nginx.conf" -p "$TMP" -e "$TMP/nginx-error.log" >"$RUN_DIR/nginx.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    PORT[nginx]=$port
}

start_h2o() {
    local port h2c_port
    port=$(free_port)
    h2c_port=$(free_port)
    cat >"$TMP/h2o.conf" <<EOF
user: root
num-threads: 2
max-connections: 16384
listen:
  host: 127.0.0.1
  port: $port
  ssl:
    certificate-file: $CERT
    key-file: $KEY
    minimum-version: TLSv1.2
    ocsp-update-interval: 0
listen:
  host: 127.0.0.1
  port: $h2c_port
hosts:
  default:
    paths:
      /:
        file.dir: $WWW
EOF
    h2o -c "$TMP/h2o.conf" >"$RUN_DIR/h2o.log" 2>&1 &
    H2O_PID=$!
    PIDS+=("$H2O_PID")
    PORT[h2o]=$port
    H2C_PORT[h2o]=$h2c_port
}

start_switchyard() {
    start_switchyard_process "$RUN_DIR/switchyard" serve "$WWW" --listen 127.0.0.1:0 --workers 2 \
        --cert "$CERT" --key "$KEY"
    PORT[switchyard]=$SY_PORT
    H2C_PORT[switchyard]=$SY_PORT
}

for s in "${SERVERS[@]}"; do
    "start_$s"
done
for s in "${SERVERS[@]}"; do
    wait_url "https://127.0.0.1:${PORT[$s]}/1k.bin"
done

# Every server must serve the same bytes, with the protocol under test, before being timed.
WANT=$(sha256sum <"$WWW/1k.bin" | cut -d' ' -f1)
check_fetch() { # NAME WHAT EXPECTED-VERSION CURL-ARGS...
    local s=$1 what=$2 want_version=$3 body version
    shift 3
    body="$TMP/check.body"
    version=$(curl -sk -o "$body" -w '%{http_version}' "$@") || true
    if [[ "$version" != "$want_version" ]] || [[ "$(sha256sum <"$body" | cut -d' ' -f1)" != "$WANT" ]]; then
        log "$s: $what gives HTTP version '$version' (want $want_version) or wrong bytes for /1k.bin"
        exit 1
    fi
}
for s in "${SERVERS[@]}"; do
    check_fetch "$s" "TLS + ALPN h2" 2 --http2 "https://127.0.0.1:${PORT[$s]}/1k.bin"
    check_fetch "$s" "TLS + HTTP/1.1" 1.1 --http1.1 "https://127.0.0.1:${PORT[$s]}/1k.bin"
done
for s in "${H2C_SERVERS[@]}"; do
    check_fetch "$s" "h2c prior knowledge" 2 --http2-prior-knowledge "http://127.0.0.1:${H2C_PORT[$s]}/1k.bin"
done

# ---- measurements -----------------------------------------------------------------------------

# Per server, space-separated runs: H2 (h2load over TLS), H2C (h2load cleartext), H1 (wrk over TLS)
# in requests/s, DL (64 MiB over h2) in MiB/s; TLSINFO the negotiated TLS version and cipher.
# H2_CPU, H2C_CPU and H1_CPU the server's CPU microseconds per request in the same runs, DL_CPU
# its CPU milliseconds per download; H2_LOAD and H2C_LOAD h2load's own CPU microseconds per
# request, H2_BUSY and H2C_BUSY how busy h2load's one thread was (% of a core): near 100, the
# load generator, not the server, sets the pace.
declare -A H2=() H2C=() H1=() DL=() ERRS=() TLSINFO=() H2_CPU=() H2C_CPU=() H1_CPU=() DL_CPU=()
declare -A H2_LOAD=() H2C_LOAD=() H2_BUSY=() H2C_BUSY=()
for s in "${SERVERS[@]}"; do
    H2[$s]=""; H2C[$s]=""; H1[$s]=""; DL[$s]=""; ERRS[$s]=""; TLSINFO[$s]=""
    H2_CPU[$s]=""; H2C_CPU[$s]=""; H1_CPU[$s]=""; DL_CPU[$s]=""
    H2_LOAD[$s]=""; H2C_LOAD[$s]=""; H2_BUSY[$s]=""; H2C_BUSY[$s]=""
done

# h2load against URL $3 for server $1 in round $4, test label $2 ("h2" or "h2c", also the protocol
# h2load must report); appends requests/s to the array named $5, the server's CPU per request to
# the one named $6, h2load's CPU per request and busy share to ${5}_LOAD and ${5}_BUSY, and any
# failure to ERRS.
run_h2load() {
    local s=$1 label=$2 url=$3 round=$4 out rps proto counts codes f e t cpu done wall user sys
    local -n runs=$5 cpu_runs=$6 load_runs=${5}_LOAD busy_runs=${5}_BUSY
    out="$RUN_DIR/h2load-$label-$s-$round.txt"
    log "round $round/$ROUNDS: h2load -c$H2_CONNS -m$H2_STREAMS -D$DURATION $url ($s)"
    cpu=$(cpu_us "$(server_pid "$s")")
    local TIMEFORMAT='%3R %3U %3S'
    { time h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D"$DURATION" "$url" >"$out" 2>&1 || true; } 2>"$out.time"
    cpu=$(($(cpu_us "$(server_pid "$s")") - cpu))
    rps=$(awk '/^finished in/ {print $4}' "$out")
    [[ -n "$rps" ]] || { log "h2load gave no req/s for $s:"; tail -n 5 "$out" >&2; rps=0; }
    runs[$s]+="$rps "
    done=$(awk '/^requests:/ {print $8}' "$out")
    cpu_runs[$s]+="$(per_request "$cpu" "$done") "
    read -r wall user sys <"$out.time"
    load_runs[$s]+="$(per_request "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.0f", (u + s) * 1e6}')" "$done") "
    busy_runs[$s]+="$(awk -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN {printf "%.0f", (w > 0 ? 100 * (u + s) / w : 0)}') "
    proto=$(awk '/^Application protocol:/ {print $3}' "$out")
    # "requests: T total, S started, D done, OK succeeded, F failed, E errored, X timeout"
    counts=$(awk '/^requests:/ {print $10, $12, $14}' "$out")
    codes=$(awk '/^status codes:/ {print $5 + $7 + $9}' "$out")
    if [[ "$proto" != "$label" || "$counts" != "0 0 0" || "${codes:-0}" != 0 ]]; then
        read -r f e t <<<"${counts:-? ? ?}"
        ERRS[$s]+="[$label round $round: protocol ${proto:-none}, failed=$f errored=$e timeout=$t, non-2xx=${codes:-?}] "
    fi
    if [[ "$label" == h2 && -z "${TLSINFO[$s]}" ]]; then
        TLSINFO[$s]="$(awk '/^TLS Protocol:/ {print $3}' "$out") $(awk '/^Cipher:/ {print $2}' "$out")"
    fi
}

run_downloads() {
    local s=$1 round=$2 i speed version size code cpu
    for i in $(seq 1 "$DOWNLOADS"); do
        log "round $round/$ROUNDS: curl --http2 64 MiB $i/$DOWNLOADS from $s"
        cpu=$(cpu_us "$(server_pid "$s")")
        read -r speed version size code < <(curl -sk --http2 -o /dev/null \
            -w '%{speed_download} %{http_version} %{size_download} %{http_code}\n' \
            "https://127.0.0.1:${PORT[$s]}/64m.bin" || echo "0 none 0 000")
        echo "$speed $version $size $code" >>"$RUN_DIR/curl-64m-$s.txt"
        if [[ "$version" != 2 || "$size" != "$FILE_64M" || "$code" != 200 ]]; then
            ERRS[$s]+="[64 MiB round $round/$i: HTTP version $version, status $code, $size bytes] "
        fi
        DL[$s]+="$(awk -v b="$speed" 'BEGIN {printf "%.1f", b / 1048576}') "
        DL_CPU[$s]+="$(per_request $(($(cpu_us "$(server_pid "$s")") - cpu)) 1000) "
    done
}

run_wrk() {
    local s=$1 round=$2 out rps non2xx sockerr cpu
    out="$RUN_DIR/wrk-tls-$s-$round.txt"
    log "round $round/$ROUNDS: wrk -t2 -c$CONNS -d$DURATION https (HTTP/1.1) $s"
    cpu=$(cpu_us "$(server_pid "$s")")
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency "https://127.0.0.1:${PORT[$s]}/1k.bin" >"$out" 2>&1 || true
    cpu=$(($(cpu_us "$(server_pid "$s")") - cpu))
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    [[ -n "$rps" ]] || { log "wrk gave no Requests/sec for $s:"; cat "$out" >&2; rps=0; }
    H1[$s]+="$rps "
    H1_CPU[$s]+="$(per_request "$cpu" "$(awk '/ requests in / {print $1}' "$out")") "
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    sockerr=$(grep -o 'Socket errors:.*' "$out" || true)
    if [[ -n "$non2xx" || -n "$sockerr" ]]; then
        ERRS[$s]+="[TLS HTTP/1.1 round $round: ${non2xx:+non-2xx=$non2xx }${sockerr}] "
    fi
}

for round in $(seq 1 "$ROUNDS"); do
    for s in $(in_turn "$round"); do
        run_h2load "$s" h2 "https://127.0.0.1:${PORT[$s]}/1k.bin" "$round" H2 H2_CPU
    done
    for s in $(in_turn "$round"); do
        run_downloads "$s" "$round"
    done
    for s in $(in_turn "$round"); do
        run_wrk "$s" "$round"
    done
    for s in "${H2C_SERVERS[@]}"; do
        run_h2load "$s" h2c "http://127.0.0.1:${H2C_PORT[$s]}/1k.bin" "$round" H2C H2C_CPU
    done
done

# ---- summary ----------------------------------------------------------------------------------


# One table: title, the name of the runs array, unit, printf format of the median, servers...
table() {
    local title=$1 unit=$3 fmt=$4 s
    local -n runs=$2
    shift 4
    echo "$title"
    for s in "$@"; do
        printf "  %-12s %12s %-7s (%s)\n" "$s" "$(printf "$fmt" "$(median <<<"${runs[$s]}")")" "$unit" "${runs[$s]% }"
    done
    if has switchyard; then
        local sy line="" other
        sy=$(median <<<"${runs[switchyard]}")
        for other in h2o nginx; do
            [[ " $* " == *" $other "* ]] || continue
            line+="  switchyard/$other $(ratio "$sy" "$(median <<<"${runs[$other]}")") (per-round $(paired_ratio "${runs[switchyard]}" "${runs[$other]}"))"
        done
        [[ -n "$line" ]] && echo "$line"
    fi
    return 0
}

# target LABEL RUNS-ARRAY OTHER: "met" when the switchyard median is at least the other's.
target() {
    local label=$1 other=$3 r
    local -n runs=$2
    if ! has switchyard || ! has "$other"; then
        printf '  %-52s not measured (SERVERS)\n' "$label"
        return
    fi
    local sy theirs
    sy=$(median <<<"${runs[switchyard]}")
    theirs=$(median <<<"${runs[$other]}")
    r=$(ratio "$sy" "$theirs")
    # Judged on the exact medians: a ratio of 0.995 prints as 1.00 but is not met.
    printf '  %-52s %5s  %s\n' "$label" "$r" "$(awk -v a="$sy" -v b="$theirs" 'BEGIN {print (b > 0 && a >= b) ? "met" : "NOT met"}')"
}

# How busy h2load's one thread was, per server: the array named $1, then the servers.
busy_line() {
    local -n busy=$1
    shift
    local s line=""
    for s in "$@"; do
        line+="  $s $(median <<<"${busy[$s]}") %"
    done
    echo "  h2load busy (its CPU time over its run time, one thread):$line"
}

summary() {
    echo "Switchyard HTTP/2 and TLS benchmark, $STAMP, $(nproc) cores, kernel $(uname -r)"
    echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), $(h2o --version | head -n 1), $(h2load --version | head -n 1),"\
        "$(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2), curl $(curl --version | head -n 1 | cut -d' ' -f2)"
    echo "switchyard $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
    echo "certificate: self-signed ECDSA P-256 (openssl), the same for every server; $ROUNDS rounds interleaved"
    local s
    for s in "${SERVERS[@]}"; do
        echo "  $s negotiated: ${TLSINFO[$s]:-?} (h2load)"
    done
    echo
    table "h2load -c$H2_CONNS -m$H2_STREAMS -D$DURATION, /1k.bin, HTTP/2 over TLS (ALPN h2)" H2 req/s %.0f "${SERVERS[@]}"
    cpu_table H2_CPU "${SERVERS[@]}"
    CPU_OF=h2load cpu_table H2_LOAD "${SERVERS[@]}"
    busy_line H2_BUSY "${SERVERS[@]}"
    echo
    table "curl --http2, /64m.bin over TLS, $DOWNLOADS per round" DL MiB/s %.1f "${SERVERS[@]}"
    CPU_UNIT="ms/download" cpu_table DL_CPU "${SERVERS[@]}"
    echo
    table "wrk -t2 -c$CONNS -d$DURATION, /1k.bin, HTTP/1.1 keep-alive over TLS" H1 req/s %.0f "${SERVERS[@]}"
    cpu_table H1_CPU "${SERVERS[@]}"
    echo
    if ((${#H2C_SERVERS[@]})); then
        local title="h2load -c$H2_CONNS -m$H2_STREAMS -D$DURATION, /1k.bin, h2c prior knowledge (h2o on its cleartext port"
        has nginx && title+="; nginx skipped: no h2c on a port that takes TLS"
        table "$title)" H2C req/s %.0f "${H2C_SERVERS[@]}"
        cpu_table H2C_CPU "${H2C_SERVERS[@]}"
        CPU_OF=h2load cpu_table H2C_LOAD "${H2C_SERVERS[@]}"
        busy_line H2C_BUSY "${H2C_SERVERS[@]}"
        echo
    fi
    echo "targets (issue 3), switchyard median / other median:"
    target "h2load requests/s (HTTP/2 over TLS) >= 1.0 x h2o" H2 h2o
    target "64 MiB download over h2 >= 1.0 x h2o" DL h2o
    target "TLS HTTP/1.1 keep-alive requests/s >= 1.0 x nginx" H1 nginx
    echo
    local any=0
    for s in "${SERVERS[@]}"; do
        if [[ -n "${ERRS[$s]}" ]]; then
            echo "ERRORS $s: ${ERRS[$s]}"
            any=1
        fi
    done
    if ((any == 0)); then
        echo "errors: none (h2load: every request succeeded with the expected protocol; wrk: no non-2xx, no"\
            "socket errors; every 64 MiB download complete over HTTP/2)"
    fi
    echo "raw outputs: $RUN_DIR"
}

summary | tee "$SUMMARY"
