#!/usr/bin/env bash
# Instructions per request: Switchyard against nginx and h2o, counted by valgrind's callgrind.
#
#   bash interop/bench/instructions.sh      (from anywhere; builds the release binary first)
#
# Requests per second on a shared two-core machine move by tens of per cent from run to run;
# the user-space instructions a server executes per request do not. Each server runs alone under
# callgrind with one worker (switchyard `serve --workers 1`, h2o `num-threads: 1`, nginx in one
# process with sendfile and open_file_cache) and counts only while `wrk -t1 -c16` fetches a
# 1 KiB file, for two request heads:
#   minimal   wrk's own: the request line and Host
#   browser   twelve fields, as a browser sends them (User-Agent, Accept, Sec-Fetch-*, Cookie, ...)
# It prints instructions per request and the ratios nginx/switchyard and h2o/switchyard (above 1:
# Switchyard executes fewer). Kernel work (system calls, TCP, scheduling) is not counted: this is
# the measure of our own code, not of throughput.
#
# Not a CI test. Results go to stdout and interop/bench/out/.
# Environment: DURATION (5s), SKIP_BUILD=1, SERVERS ("nginx h2o switchyard").
set -euo pipefail

source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DURATION=${DURATION:-5s}
read -r -a SERVERS <<<"${SERVERS:-nginx h2o switchyard}"
RUN_DIR="$ROOT/interop/bench/out/instructions-$(date +%Y%m%d-%H%M%S)"

need valgrind=valgrind callgrind_control=valgrind nginx=nginx-light h2o=h2o wrk=wrk curl=curl \
    python3=python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
has switchyard && build_switchyard

mkdir -p "$RUN_DIR"
TMP=$(mktemp -d /tmp/switchyard-instructions.XXXXXX)
WWW="$TMP/www"
mkdir -p "$WWW"
# nginx and h2o drop root privileges to `nobody`: they must be able to read the file.
chmod 755 "$TMP" "$WWW"
head -c 1024 /dev/urandom >"$WWW/1k.bin"

cat >"$TMP/browser.lua" <<'EOF'
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
wrk.headers["Accept-Language"] = "en-US,en;q=0.5"
wrk.headers["Accept-Encoding"] = "gzip, deflate, br, zstd"
wrk.headers["Upgrade-Insecure-Requests"] = "1"
wrk.headers["Sec-Fetch-Dest"] = "document"
wrk.headers["Sec-Fetch-Mode"] = "navigate"
wrk.headers["Sec-Fetch-Site"] = "none"
wrk.headers["Sec-Fetch-User"] = "?1"
wrk.headers["Priority"] = "u=0, i"
wrk.headers["Cookie"] = "session=0123456789abcdef0123456789abcdef; theme=dark"
EOF

# The command line that runs server $1 on port $2 in the foreground, one worker.
server_command() {
    case $1 in
    nginx)
        cat >"$TMP/nginx.conf" <<EOF
master_process off;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events {
    worker_connections 1024;
}
http {
$(nginx_static_http)
    server {
        listen 127.0.0.1:$2;
        root $WWW;
    }
}
EOF
        echo "$NGINX -c $TMP/nginx.conf -p $TMP -e $TMP/nginx-error.log"
        ;;
    h2o)
        # As the user running this script: h2o started by root otherwise turns into `nobody`,
        # and callgrind_control can no longer reach it.
        cat >"$TMP/h2o.conf" <<EOF
user: $(id -un)
num-threads: 1
listen:
  host: 127.0.0.1
  port: $2
hosts:
  default:
    paths:
      /:
        file.dir: $WWW
EOF
        echo "h2o -c $TMP/h2o.conf"
        ;;
    switchyard)
        echo "$SWITCHYARD serve $WWW --listen 127.0.0.1:$2 --workers 1"
        ;;
    esac
}

declare -A IR=()

# Instructions per request of server $1 for the head $2 (minimal or browser), into IR[$1.$2].
measure() {
    local server=$1 head=$2 port out pid requests total
    local -a script=()
    [[ $head == browser ]] && script=(-s "$TMP/browser.lua")
    port=$(free_port)
    out="$RUN_DIR/callgrind.$server.$head"
    # shellcheck disable=SC2046 # the command line is split into words on purpose
    RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
        $(server_command "$server" "$port") >"$out.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # Under valgrind a server starts in seconds, not tenths.
    local i
    for i in $(seq 1 300); do
        curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/1k.bin" && break
        kill -0 "$pid" 2>/dev/null || { log "$server exited"; cat "$out.log" >&2; exit 1; }
        sleep 0.1
    done
    # Warm up (caches, connection set-up), then count only the measured run.
    wrk -t1 -c16 -d2s "${script[@]}" "http://127.0.0.1:$port/1k.bin" >/dev/null
    callgrind_control -i on "$pid" >/dev/null 2>&1
    requests=$(wrk -t1 -c16 -d"$DURATION" "${script[@]}" "http://127.0.0.1:$port/1k.bin" |
        tee "$out.wrk" | awk '/requests in/ {print $1}')
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
    # A signal that lands while valgrind serves callgrind_control can be lost: repeat it.
    for i in $(seq 1 20); do
        kill -TERM "$pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    total=$(awk '/^totals:/ {print $2}' "$out.1")
    IR[$server.$head]=$(awk -v t="$total" -v n="$requests" \
        'BEGIN {if (n > 0) printf "%d", t / n; else print 0}')
}

for head in minimal browser; do
    for s in "${SERVERS[@]}"; do
        log "callgrind: $s, $head head"
        measure "$s" "$head"
    done
done

{
    echo "Switchyard instructions per request, $(date +%Y%m%d-%H%M%S), valgrind $(valgrind --version | sed 's/valgrind-//')"
    echo "switchyard $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo ' + uncommitted changes')"
    echo "one worker each; wrk -t1 -c16 -d$DURATION on /1k.bin; user-space instructions only"
    echo
    printf '%-12s %16s %16s\n' server "minimal head" "browser head"
    for s in "${SERVERS[@]}"; do
        printf '%-12s %16s %16s\n' "$s" "${IR[$s.minimal]}" "${IR[$s.browser]}"
    done
    if has switchyard; then
        echo
        for other in nginx h2o; do
            has "$other" || continue
            echo "$other/switchyard: minimal $(ratio "${IR[$other.minimal]}" "${IR[switchyard.minimal]}"), browser $(ratio "${IR[$other.browser]}" "${IR[switchyard.browser]}")"
        done
    fi
    echo "raw outputs: $RUN_DIR"
} | tee "$RUN_DIR/summary.txt"
