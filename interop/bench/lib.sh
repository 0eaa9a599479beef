# Helpers shared by the benchmark scripts (h1.sh, h2.sh). Sourced, not run.
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

# The servers of SERVERS in the order for round $1: rotated by one each round, so no server is
# always measured first (a position that measured 10-15 % slower on a shared machine).
in_turn() {
    local n=${#SERVERS[@]} i
    for ((i = 0; i < n; i++)); do
        printf '%s\n' "${SERVERS[$(((i + $1 - 1) % n))]}"
    done
}
