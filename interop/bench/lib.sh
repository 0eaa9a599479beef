# Helpers shared by the benchmark scripts (h1, h2, h3, bt, proxy). Sourced, not run.
# Servers are started by the scripts and stopped here by the PIDs they recorded, never by name.

# Whether server $1 is in the SERVERS list being measured.
has() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }

log() { printf '%s\n' "$*" >&2; }

# PIDs of the servers a script started; stopped (and TMP removed) on exit.
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "${TMP:-}"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Median of the whitespace-separated numbers on stdin (0 when there are none).
median() {
    tr ' ' '\n' | grep -v '^$' | sort -g |
        awk '{a[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }

# Median of the per-round ratios of two run lists ($1 / $2, both in round order). Each round runs
# the servers back to back, so drift of a shared machine (runs of one server here spread by up to
# 40 %) hits both terms of a round's ratio alike; the ratio of the medians does not pair them.
paired_ratio() {
    local -a a b
    read -r -a a <<<"$1"
    read -r -a b <<<"$2"
    local i out=""
    for ((i = 0; i < ${#a[@]} && i < ${#b[@]}; i++)); do
        out+="$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN {if (y > 0) printf "%.4f", x / y}') "
    done
    [[ -n "$out" ]] || { echo n/a; return; }
    awk -v m="$(median <<<"$out")" 'BEGIN {printf "%.2f", m}'
}

# CPU time that process $1 and its child processes (nginx's workers) have used so far, in
# microseconds: the sum over their threads of the scheduler's run time (nanosecond resolution,
# where /proc/PID/stat counts 10 ms ticks). Read around a load run, the difference over the
# requests served is what the server spent on each; unlike requests/s it does not depend on how
# much of the shared machine the load generator got.
cpu_us() {
    local pid ns=0 t
    for pid in $1 $(pgrep -P "$1" || true); do
        for t in /proc/"$pid"/task/*/schedstat; do
            ns=$((ns + $(cut -d' ' -f1 "$t" 2>/dev/null || echo 0)))
        done
    done
    echo $((ns / 1000))
}

# The PID a script recorded for server $1 (nginx, h2o or switchyard) in NGINX_PID, H2O_PID or
# SY_PID.
server_pid() {
    case $1 in
    nginx) echo "$NGINX_PID" ;;
    h2o) echo "$H2O_PID" ;;
    switchyard) echo "$SY_PID" ;;
    esac
}

# Microseconds of CPU per request: $1 microseconds over $2 requests.
per_request() { awk -v c="$1" -v n="$2" 'BEGIN {if (n > 0) printf "%.2f", c / n; else print 0}'; }

# CPU-per-request lines: the name of the runs array (space-separated, round order), then the
# servers; CPU_UNIT names the unit (default us/request), CPU_OF whose CPU it is (default server).
# Prints each server's median and runs, then nginx/switchyard, h2o/switchyard and
# nginx-proxy/switchyard for those present (above 1: Switchyard spends less per request).
cpu_table() {
    local -n cpu=$1
    shift
    local s line=""
    for s in "$@"; do
        printf "  %-12s %8s %s of %s CPU  (%s)\n" "$s" "$(median <<<"${cpu[$s]}")" "${CPU_UNIT:-us/request}" "${CPU_OF:-server}" "${cpu[$s]% }"
    done
    if [[ " $* " == *" switchyard "* ]]; then
        for s in "$@"; do
            [[ "$s" == nginx || "$s" == h2o || "$s" == nginx-proxy ]] || continue
            line+="  $s/switchyard $(ratio "$(median <<<"${cpu[$s]}")" "$(median <<<"${cpu[switchyard]}")") (per-round $(paired_ratio "${cpu[$s]}" "${cpu[switchyard]}"))"
        done
        [[ -n "$line" ]] && echo "  ${CPU_OF:-server} CPU,$line"
    fi
    return 0
}

# The servers of SERVERS in the order for round $1: rotated by one each round, so no server is
# always measured first (a position that measured 10-15 % slower on a shared machine).
in_turn() {
    local n=${#SERVERS[@]} i
    for ((i = 0; i < n; i++)); do
        printf '%s\n' "${SERVERS[$(((i + $1 - 1) % n))]}"
    done
}

# Install, with apt, the package of every command that is missing. Arguments: COMMAND=PACKAGE,
# or import:MODULE=PACKAGE for a module Debian's python3 must import.
need() {
    local pair cmd missing=()
    for pair in "$@"; do
        cmd=${pair%%=*}
        if [[ $cmd == import:* ]]; then
            /usr/bin/python3 -c "import ${cmd#import:}" 2>/dev/null || missing+=("${pair#*=}")
        else
            command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("${pair#*=}")
        fi
    done
    ((${#missing[@]})) || return 0
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

# The http-block directives of every nginx serving the benchmarks' static files (sendfile,
# tcp_nopush, open_file_cache, no access log), its temporary directories under $TMP. For the
# http block of an unquoted here-document.
nginx_static_http() {
    cat <<EOF
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    default_type application/octet-stream;
    client_body_temp_path $TMP/nginx-body;
    proxy_temp_path $TMP/nginx-proxy;
    fastcgi_temp_path $TMP/nginx-fastcgi;
    uwsgi_temp_path $TMP/nginx-uwsgi;
    scgi_temp_path $TMP/nginx-scgi;
EOF
}

# Build the release binary unless SKIP_BUILD=1; sets SWITCHYARD ($SWITCHYARD_BIN wins).
build_switchyard() {
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        log "building: cargo build --release -p switchyard"
        cargo build --release -p switchyard >&2
    fi
    SWITCHYARD=${SWITCHYARD_BIN:-$ROOT/target/release/switchyard}
    [[ -x "$SWITCHYARD" ]] || { log "no binary at $SWITCHYARD"; exit 1; }
}

# Wait (bounded: 10 s) until URL $1 answers (TLS certificates not checked).
wait_url() {
    local url=$1 i
    for i in $(seq 1 100); do
        curl -sk -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    log "nothing answers at $url"
    return 1
}

# Start `switchyard ARGS...` (RUST_LOG=warn) with stdout in $1.stdout and stderr in $1.stderr;
# returns once it printed its `listening on` line. Sets SY_PID and SY_PORT (its first listener).
start_switchyard_process() {
    local prefix=$1
    shift
    RUST_LOG=warn "$SWITCHYARD" "$@" >"$prefix.stdout" 2>"$prefix.stderr" &
    SY_PID=$!
    PIDS+=("$SY_PID")
    SY_PORT=""
    for _ in $(seq 1 100); do
        SY_PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$prefix.stdout" | head -n 1)
        [[ -n "$SY_PORT" ]] && return 0
        kill -0 "$SY_PID" 2>/dev/null || { log "switchyard exited"; cat "$prefix.stderr" >&2; exit 1; }
        sleep 0.1
    done
    log "switchyard printed no 'listening on' line"
    exit 1
}
