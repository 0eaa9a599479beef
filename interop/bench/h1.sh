#!/usr/bin/env bash
# HTTP/1.1 benchmark: Switchyard against nginx and h2o, same machine, same files, same run.
#
#   bash interop/bench/h1.sh            (from anywhere; builds the release binary first)
#
# Serves one directory (a 1 KiB file and a 64 MiB file) with
#   nginx       2 workers, sendfile, open_file_cache, access_log off
#   h2o         2 threads, max-connections 16384 (default 1024 would queue the idle test), no access log
#   switchyard  `serve --workers 2`, release build, RUST_LOG=warn
# then, interleaved so drift hits every server alike (nginx, h2o, switchyard, nginx, ...):
#   ROUNDS x  wrk -t2 -c256 -d10s on the 1 KiB file      (requests/s)
#   ROUNDS x DOWNLOADS x  curl download of the 64 MiB file (bytes/s)
# (the order of servers rotates each round) and prints medians, the ratios switchyard/nginx and
# switchyard/h2o (of the medians, and the median of the per-round ratios), each server's CPU time
# per request during the wrk runs and per download (scheduler run time of all its threads), Switchyard's idle RSS, and
# each server's RSS while 10,000 keep-alive connections sit idle (interop/bench/idle_conns.py).
#
# Not a CI test: numbers depend on the machine. Results go to stdout and interop/bench/out/.
# Every server is started by this script as a foreground process and stopped by its PID.
#
# Environment: ROUNDS (3), DOWNLOADS (5), DURATION (10s), CONNS (256), IDLE_CONNS (10000), SKIP_BUILD=1,
#   SERVERS ("nginx h2o switchyard": a subset runs only those).
set -euo pipefail

source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
DOWNLOADS=${DOWNLOADS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-256}
IDLE_CONNS=${IDLE_CONNS:-10000}
read -r -a SERVERS <<<"${SERVERS:-nginx h2o switchyard}"
OUT_DIR="$ROOT/interop/bench/out"
STAMP=$(date +%Y%m%d-%H%M%S)
RUN_DIR="$OUT_DIR/h1-$STAMP"
SUMMARY="$RUN_DIR/summary.txt"


# ---- prerequisites ----------------------------------------------------------------------------

need nginx=nginx-light h2o=h2o wrk=wrk curl=curl python3=python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
has switchyard && build_switchyard

mkdir -p "$RUN_DIR"
TMP=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
WWW="$TMP/www"
mkdir -p "$WWW"
# nginx workers and h2o drop root privileges to `nobody`: they must be able to read the files.
chmod 755 "$TMP" "$WWW"
head -c 1024 /dev/urandom >"$WWW/1k.bin"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$WWW/64m.bin"

# ---- process control (by PID only) ------------------------------------------------------------



rss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# Sum of VmRSS over a process and its children (nginx master + workers).
tree_rss_kb() {
    local total=0 pid
    for pid in $1 $(pgrep -P "$1" || true); do
        total=$((total + $(rss_kb "$pid")))
    done
    echo "$total"
}

# ---- servers ----------------------------------------------------------------------------------

declare -A PORT=()
NGINX_PID="" H2O_PID="" SY_PID=""

start_nginx() {
    NGINX_PORT=$(free_port)
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
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WWW;
    }
}
EOF
    "$NGINX" -c "$TMP/nginx.conf" -p "$TMP" -e "$TMP/nginx-error.log" >"$RUN_DIR/nginx.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    PORT[nginx]=$NGINX_PORT
}

start_h2o() {
    H2O_PORT=$(free_port)
    cat >"$TMP/h2o.conf" <<EOF
num-threads: 2
max-connections: 16384
listen:
  host: 127.0.0.1
  port: $H2O_PORT
hosts:
  default:
    paths:
      /:
        file.dir: $WWW
EOF
    h2o -c "$TMP/h2o.conf" >"$RUN_DIR/h2o.log" 2>&1 &
    H2O_PID=$!
    PIDS+=("$H2O_PID")
    PORT[h2o]=$H2O_PORT
}

start_switchyard() {
    start_switchyard_process "$RUN_DIR/switchyard" serve "$WWW" --listen 127.0.0.1:0 --workers 2
    PORT[switchyard]=$SY_PORT
}

for s in "${SERVERS[@]}"; do
    "start_$s"
done
for s in "${SERVERS[@]}"; do
    wait_url "http://127.0.0.1:${PORT[$s]}/1k.bin"
done
SY_IDLE_RSS=0
has switchyard && SY_IDLE_RSS=$(rss_kb "$SY_PID")

# Every server must serve the same bytes before being timed.
for s in "${SERVERS[@]}"; do
    got=$(curl -s "http://127.0.0.1:${PORT[$s]}/1k.bin" | sha256sum | cut -d' ' -f1)
    want=$(sha256sum <"$WWW/1k.bin" | cut -d' ' -f1)
    [[ "$got" == "$want" ]] || { log "$s serves wrong bytes for /1k.bin"; exit 1; }
done

# ---- wrk on 1 KiB -----------------------------------------------------------------------------

declare -A RPS=() CPU=() MBPS=() DL_CPU=() ERRS=()
for s in "${SERVERS[@]}"; do RPS[$s]=""; CPU[$s]=""; MBPS[$s]=""; DL_CPU[$s]=""; ERRS[$s]=""; done

for round in $(seq 1 "$ROUNDS"); do
    for s in $(in_turn "$round"); do
        out="$RUN_DIR/wrk-$s-$round.txt"
        log "round $round/$ROUNDS: wrk -t2 -c$CONNS -d$DURATION $s"
        cpu=$(cpu_us "$(server_pid "$s")")
        wrk -t2 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:${PORT[$s]}/1k.bin" >"$out" 2>&1 || true
        cpu=$(($(cpu_us "$(server_pid "$s")") - cpu))
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        [[ -n "$rps" ]] || { log "wrk gave no Requests/sec for $s:"; cat "$out" >&2; rps=0; }
        RPS[$s]+="$rps "
        CPU[$s]+="$(per_request "$cpu" "$(awk '/ requests in / {print $1}' "$out")") "
        non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
        sockerr=$(grep -o 'Socket errors:.*' "$out" || true)
        if [[ -n "$non2xx" || -n "$sockerr" ]]; then
            ERRS[$s]+="[round $round: ${non2xx:+non-2xx=$non2xx }${sockerr}] "
        fi
    done
done

# ---- curl on 64 MiB ---------------------------------------------------------------------------

# One download takes tens of milliseconds and varies a lot from one to the next on a shared
# machine, so each round downloads DOWNLOADS times per server (interleaved) for a steadier median.
for round in $(seq 1 $((ROUNDS * DOWNLOADS))); do
    for s in $(in_turn "$round"); do
        log "download $round/$((ROUNDS * DOWNLOADS)): curl 64 MiB from $s"
        cpu=$(cpu_us "$(server_pid "$s")")
        read -r speed size code < <(curl -s -o /dev/null -w '%{speed_download} %{size_download} %{http_code}\n' \
            "http://127.0.0.1:${PORT[$s]}/64m.bin")
        if [[ "$code" != 200 || "$size" != $((64 * 1024 * 1024)) ]]; then
            ERRS[$s]+="[64 MiB round $round: status $code, $size bytes] "
        fi
        MBPS[$s]+="$(awk -v b="$speed" 'BEGIN {printf "%.1f", b / 1048576}') "
        DL_CPU[$s]+="$(per_request $(($(cpu_us "$(server_pid "$s")") - cpu)) 1000) "
    done
done

# ---- RSS with idle keep-alive connections -----------------------------------------------------

# RSS of server $1 (the whole process tree for nginx: master + workers).
server_rss_kb() {
    case $1 in
    nginx) tree_rss_kb "$NGINX_PID" ;;
    h2o) rss_kb "$H2O_PID" ;;
    switchyard) rss_kb "$SY_PID" ;;
    esac
}

# Hold $IDLE_CONNS idle keep-alive connections to server $1; record its peak RSS meanwhile in
# CONN_RSS[$1] and the client's report in IDLE_REPORT[$1].
declare -A LOADED_RSS=() CONN_RSS=() IDLE_REPORT=()
measure_idle_connections() {
    local s=$1 out="$RUN_DIR/idle_conns-$1.txt" pid peak=0 r
    LOADED_RSS[$s]=$(server_rss_kb "$s")
    log "holding $IDLE_CONNS idle keep-alive connections to $s"
    python3 "$ROOT/interop/bench/idle_conns.py" --port "${PORT[$s]}" --count "$IDLE_CONNS" --hold 4 \
        >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 1200); do # bounded wait for the client's READY line
        grep -q '^READY' "$out" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    for _ in $(seq 1 10); do # sample while the connections are held, keep the peak
        r=$(server_rss_kb "$s")
        if ((r > peak)); then peak=$r; fi
        sleep 0.2
    done
    wait "$pid" || true
    CONN_RSS[$s]=$peak
    IDLE_REPORT[$s]="$(grep '^READY' "$out" || echo "no READY line: $(tail -n 3 "$out")"); $(grep '^DONE' "$out" || echo "no DONE line")"
    if ! grep -q '^READY ok=[0-9]* errors=0 ' "$out"; then
        ERRS[$s]+="[idle connections: ${IDLE_REPORT[$s]}] "
    fi
}

for s in "${SERVERS[@]}"; do
    measure_idle_connections "$s"
done

# ---- summary ----------------------------------------------------------------------------------

mb() { awk -v k="$1" 'BEGIN {printf "%.1f MB", k * 1024 / 1e6}'; }

summary() {
    echo "Switchyard HTTP/1.1 benchmark, $STAMP, $(nproc) cores, kernel $(uname -r)"
    echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), $(h2o --version | head -n 1), $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "switchyard $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
    echo "load: wrk -t2 -c$CONNS -d$DURATION on /1k.bin, curl on /64m.bin, $ROUNDS rounds interleaved"
    echo
    printf '%-12s %15s  %-30s %15s  %s\n' server "1KiB req/s" "(runs)" "64MiB MiB/s" "(runs)"
    local s
    for s in "${SERVERS[@]}"; do
        printf '%-12s %15s  %-30s %15s  %s\n' "$s" "$(median <<<"${RPS[$s]}")" "(${RPS[$s]% })" \
            "$(median <<<"${MBPS[$s]}")" "(${MBPS[$s]% })"
    done
    echo
    if has switchyard; then
        local sy_rps sy_mbps other
        sy_rps=$(median <<<"${RPS[switchyard]}")
        sy_mbps=$(median <<<"${MBPS[switchyard]}")
        for other in nginx h2o; do
            has "$other" || continue
            echo "switchyard/$other: 1KiB req/s $(ratio "$sy_rps" "$(median <<<"${RPS[$other]}")") (median of per-round ratios $(paired_ratio "${RPS[switchyard]}" "${RPS[$other]}")), 64MiB $(ratio "$sy_mbps" "$(median <<<"${MBPS[$other]}")") (per-round $(paired_ratio "${MBPS[switchyard]}" "${MBPS[$other]}"))"
        done
        echo "server CPU per 1 KiB request (on-CPU time of all its threads; wrk runs beside it):"
        cpu_table CPU "${SERVERS[@]}"
        echo "server CPU per 64 MiB download:"
        CPU_UNIT="ms/download" cpu_table DL_CPU "${SERVERS[@]}"
        echo "targets: 1KiB req/s >= 1.00 x h2o; 64MiB >= 1.00 x nginx; idle RSS <= 15 MB; $IDLE_CONNS connections, no errors"
        echo
        echo "switchyard RSS idle at start: $(mb "$SY_IDLE_RSS")"
    fi
    printf '%-12s %22s %28s\n' server "RSS idle after load" "RSS + $IDLE_CONNS idle conns"
    for s in "${SERVERS[@]}"; do
        printf '%-12s %22s %28s\n' "$s" "$(mb "${LOADED_RSS[$s]}")" "$(mb "${CONN_RSS[$s]}")"
    done
    for s in "${SERVERS[@]}"; do
        echo "idle-connection client vs $s: ${IDLE_REPORT[$s]}"
    done
    echo
    local any=0
    for s in "${SERVERS[@]}"; do
        if [[ -n "${ERRS[$s]}" ]]; then
            echo "ERRORS $s: ${ERRS[$s]}"
            any=1
        fi
    done
    if ((any == 0)); then
        echo "errors: none (no non-2xx responses, no socket errors, every 64 MiB download complete)"
    fi
    echo "raw outputs: $RUN_DIR"
}

summary | tee "$SUMMARY"
