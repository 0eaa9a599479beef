#!/usr/bin/env bash
# Reverse-proxy benchmark: Switchyard against nginx as a proxy, to the same member, same run.
#
#   bash interop/bench/proxy.sh         (from anywhere; builds the release binary first)
#
# The member is an nginx (1 worker, access_log off) serving a 1 KiB file, with stub_status on
# /status so its accepted-connection counter can be read. In front of it:
#   nginx-proxy  2 workers, `proxy_pass` to an upstream with `keepalive 256`, HTTP/1.1 to the member
#   switchyard   `proxy --to MEMBER --workers 2`, release build, RUST_LOG=warn
#   sy-cache-hit / sy-static  one more Switchyard (`run -c`, 2 workers) with a `cache = true`
#                proxy location /cached/ to the member (which sends `Cache-Control: max-age`)
#                and a files location / on the same directory: cache hits against its own
#                static-file rate, same process, same run
# then, interleaved and rotated each round, ROUNDS x `wrk -t2 -cCONNS -dDURATION` on the 1 KiB
# file through each proxy. For every run the member's accepted connections and requests are read
# before and after, giving the upstream connection reuse (1 - new connections / requests).
# Prints medians, the ratio switchyard/nginx-proxy, reuse, and each proxy's CPU time per request
# (scheduler run time of its threads: what the proxy itself spends, whatever share of the machine wrk and the member get).
#
# Not a CI test: numbers depend on the machine. Results go to stdout and interop/bench/out/.
# Every server is started by this script and stopped by its PID.
#
# Environment: ROUNDS (3), DURATION (10s), CONNS (64), SKIP_BUILD=1, SERVERS (a subset of
# "nginx-proxy switchyard sy-cache-hit sy-static").
set -euo pipefail

source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
read -r -a SERVERS <<<"${SERVERS:-nginx-proxy switchyard sy-cache-hit sy-static}"
OUT_DIR="$ROOT/interop/bench/out"
STAMP=$(date +%Y%m%d-%H%M%S)
RUN_DIR="$OUT_DIR/proxy-$STAMP"
SUMMARY="$RUN_DIR/summary.txt"

need nginx=nginx wrk=wrk curl=curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
build_switchyard

mkdir -p "$RUN_DIR"
TMP=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
WWW="$TMP/www"
mkdir -p "$WWW"
chmod 755 "$TMP" "$WWW"
head -c 1024 /dev/urandom >"$WWW/1k.bin"

nginx_conf() { # NAME WORKERS BODY
    cat >"$TMP/$1.conf" <<EOF
worker_processes $2;
daemon off;
pid $TMP/$1.pid;
error_log $TMP/$1-error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $TMP/$1-body;
    proxy_temp_path $TMP/$1-proxy;
    fastcgi_temp_path $TMP/$1-fastcgi;
    uwsgi_temp_path $TMP/$1-uwsgi;
    scgi_temp_path $TMP/$1-scgi;
$3
}
EOF
}

# ---- the member ------------------------------------------------------------------------------

MEMBER_PORT=$(free_port)
nginx_conf member 1 "
    open_file_cache max=100 inactive=60s;
    server {
        listen 127.0.0.1:$MEMBER_PORT;
        root $WWW;
        expires 1h;
        location = /status { stub_status; }
    }"
"$NGINX" -c "$TMP/member.conf" -p "$TMP" -e "$TMP/member-error.log" >"$RUN_DIR/member.log" 2>&1 &
PIDS+=($!)
wait_url "http://127.0.0.1:$MEMBER_PORT/1k.bin"

# "accepts requests" of the member, minus the status request itself.
member_counts() {
    curl -s "http://127.0.0.1:$MEMBER_PORT/status" | awk 'NR == 3 {print $1, $3}'
}

# ---- the proxies -----------------------------------------------------------------------------

declare -A PORT=()
PORT[nginx-proxy]=$(free_port)
nginx_conf nginx-proxy 2 "
    upstream member {
        server 127.0.0.1:$MEMBER_PORT;
        keepalive 256;
    }
    server {
        listen 127.0.0.1:${PORT[nginx-proxy]};
        location / {
            proxy_pass http://member;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
"$NGINX" -c "$TMP/nginx-proxy.conf" -p "$TMP" -e "$TMP/nginx-proxy-error.log" >"$RUN_DIR/nginx-proxy.log" 2>&1 &
PIDS+=($!)
declare -A SERVER_PID=([nginx-proxy]=$!)

start_switchyard_process "$RUN_DIR/switchyard" proxy --listen 127.0.0.1:0 --workers 2 \
    --to "127.0.0.1:$MEMBER_PORT"
PORT[switchyard]=$SY_PORT
SERVER_PID[switchyard]=$SY_PID

# The cache and static-file comparison: one process, two locations on the same file.
SYC_PORT=$(free_port)
cat >"$TMP/cache.toml" <<EOF
workers = 2

[[listen]]
address = "127.0.0.1:$SYC_PORT"

[cache]
memory_size = "64MiB"

[[vhost]]

[[vhost.location]]
path = "/cached/"
proxy = "member"
strip_prefix = true
cache = true

[[vhost.location]]
path = "/"
root = "$WWW"

[[upstream]]
name = "member"
members = ["127.0.0.1:$MEMBER_PORT"]
EOF
RUST_LOG=warn "$SWITCHYARD" run -c "$TMP/cache.toml" >"$TMP/switchyard-cache.stdout" 2>"$RUN_DIR/switchyard-cache.stderr" &
PIDS+=($!)
SERVER_PID[sy-cache-hit]=$!
SERVER_PID[sy-static]=$!
PORT[sy-cache-hit]=$SYC_PORT
PORT[sy-static]=$SYC_PORT
declare -A URLPATH=([nginx-proxy]=/1k.bin [switchyard]=/1k.bin [sy-cache-hit]=/cached/1k.bin [sy-static]=/1k.bin)
wait_url "http://127.0.0.1:$SYC_PORT/cached/1k.bin"
curl -s -D - -o /dev/null "http://127.0.0.1:$SYC_PORT/cached/1k.bin" | grep -qi '^cache-status:.*hit' ||
    { log "the cached location does not answer from the cache"; exit 1; }

want=$(sha256sum <"$WWW/1k.bin" | cut -d' ' -f1)
for s in "${SERVERS[@]}"; do
    wait_url "http://127.0.0.1:${PORT[$s]}${URLPATH[$s]}"
    got=$(curl -s "http://127.0.0.1:${PORT[$s]}${URLPATH[$s]}" | sha256sum | cut -d' ' -f1)
    [[ "$got" == "$want" ]] || { log "$s serves wrong bytes for ${URLPATH[$s]}"; exit 1; }
done

# ---- runs ------------------------------------------------------------------------------------

declare -A RPS=() CPU=() REUSE=() ERRS=()
for s in "${SERVERS[@]}"; do RPS[$s]=""; CPU[$s]=""; REUSE[$s]=""; ERRS[$s]=""; done

for round in $(seq 1 "$ROUNDS"); do
    while read -r s; do
        read -r a0 r0 < <(member_counts)
        out="$RUN_DIR/wrk-$s-$round.txt"
        cpu=$(cpu_us "${SERVER_PID[$s]}")
        wrk -t2 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:${PORT[$s]}${URLPATH[$s]}" >"$out"
        cpu=$(($(cpu_us "${SERVER_PID[$s]}") - cpu))
        read -r a1 r1 < <(member_counts)
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        errs=$(awk '/Non-2xx|Socket errors/ {print}' "$out" | tr '\n' ' ')
        # The status request between the two readings is one connection and one request.
        conns=$((a1 - a0 - 1))
        reqs=$((r1 - r0 - 1))
        reuse=$(awk -v c="$conns" -v r="$reqs" 'BEGIN {if (r > 0) printf "%.4f", 100 * (1 - c / r); else print 0}')
        RPS[$s]+="$rps "
        CPU[$s]+="$(per_request "$cpu" "$(awk '/ requests in / {print $1}' "$out")") "
        REUSE[$s]+="$reuse "
        [[ -n "$errs" ]] && ERRS[$s]+="round $round: $errs; "
        log "round $round $s: $rps req/s, member: $conns new connections for $reqs requests (reuse $reuse %)"
    done < <(in_turn "$round")
done

{
    echo "proxy benchmark $STAMP: wrk -t2 -c$CONNS -d$DURATION, 1 KiB file, $ROUNDS rounds (medians)"
    echo "machine: $(nproc) cores; $(uptime | sed 's/.*load/load/')"
    for s in "${SERVERS[@]}"; do
        printf '%-12s %10s req/s   upstream reuse %s %%   %s\n' "$s" \
            "$(median <<<"${RPS[$s]}")" "$(median <<<"${REUSE[$s]}")" "${ERRS[$s]}"
    done
    echo "switchyard / nginx-proxy: $(ratio "$(median <<<"${RPS[switchyard]:-}")" "$(median <<<"${RPS[nginx-proxy]:-}")")"
    echo "cache hits / switchyard static files: $(ratio "$(median <<<"${RPS[sy-cache-hit]:-}")" "$(median <<<"${RPS[sy-static]:-}")") (upstream reuse does not apply to these two: hits never reach the member)"
    echo "proxy CPU per request (on-CPU time of all its threads; wrk and the member run beside it):"
    cpu_table CPU "${SERVERS[@]}"
    echo "  CPU per request, cache hit / static file: $(ratio "$(median <<<"${CPU[sy-cache-hit]:-}")" "$(median <<<"${CPU[sy-static]:-}")")"
} | tee "$SUMMARY"
