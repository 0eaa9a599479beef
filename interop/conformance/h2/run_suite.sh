#!/usr/bin/env bash
# The HTTP/2 conformance step of interop/test.sh: run the suite against the release binary.
#
#   bash interop/conformance/h2/run_suite.sh [--tls] [run.py args, e.g. --filter 6.5]
#
# 1. Makes target/venv from Debian's /usr/bin/python3 (--system-site-packages, so that Debian's
#    python3-libtorrent stays importable for the other interop tests) and installs the pinned
#    hyperframe, hpack and h2 into it when they are missing (not with SKIP_INSTALL=1).
# 2. Starts `target/release/switchyard serve DOCROOT --listen 127.0.0.1:0` on a generated docroot
#    and reads the address from its `listening on ADDR` line.
# 3. Runs run.py over h2c (prior knowledge) and, with --tls, over TLS (ALPN h2) on the same port.
#    Cases listed in known_failures.txt are XFAIL (see run.py); the run fails on any other failure.
# 4. Stops the server by its PID.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
VENV=$ROOT/target/venv
PYTHON=$VENV/bin/python
BIN=$ROOT/target/release/switchyard
PINS=(hyperframe==6.1.0 hpack==4.2.0 h2==4.4.1 httpx==0.28.1)
source "$HERE/docroot.sh"

TLS=0
ARGS=()
for arg in "$@"; do
    if [[ $arg == --tls ]]; then TLS=1; else ARGS+=("$arg"); fi
done

# ---- the venv ---------------------------------------------------------------------------------
if [[ ! -x $PYTHON ]]; then
    if [[ ${SKIP_INSTALL:-0} == 1 ]]; then
        echo "no $VENV and SKIP_INSTALL=1" >&2
        exit 1
    fi
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
if ! "$PYTHON" - "${PINS[@]}" <<'PY'; then
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
    if [[ ${SKIP_INSTALL:-0} == 1 ]]; then
        echo "$VENV lacks ${PINS[*]} and SKIP_INSTALL=1" >&2
        exit 1
    fi
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
fi

# ---- the server -------------------------------------------------------------------------------
WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
    rm -rf "$WORK"
}
trap stop_server EXIT

make_docroot "$WORK/www"
"$BIN" serve "$WORK/www" --listen 127.0.0.1:0 >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER_PID=$!
ADDR=
for _ in $(seq 100); do
    ADDR=$(sed -n 's/^.*listening on \([^ ]*\).*$/\1/p' "$WORK/stdout" | head -n 1)
    [[ -n $ADDR ]] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
done
if [[ -z $ADDR ]]; then
    echo "switchyard did not print 'listening on ADDR' within 10 s; its stderr:" >&2
    cat "$WORK/stderr" >&2
    exit 1
fi
PORT=${ADDR##*:}
HOST=${ADDR%:*}
echo "switchyard listening on $ADDR (pid $SERVER_PID)"

KNOWN=()
if [[ -f $HERE/known_failures.txt ]]; then
    KNOWN=(--known-failures "$HERE/known_failures.txt")
fi

status=0
"$PYTHON" "$HERE/run.py" --host "$HOST" --port "$PORT" "${KNOWN[@]}" "${ARGS[@]}" || status=1
if [[ $TLS == 1 ]]; then
    "$PYTHON" "$HERE/run.py" --host "$HOST" --port "$PORT" --tls "${KNOWN[@]}" "${ARGS[@]}" || status=1
fi
# The same files semantics through an independent high-level client (python httpx on h2).
"$PYTHON" "$HERE/httpx_check.py" --host "$HOST" --port "$PORT" || status=1
if [[ $TLS == 1 ]]; then
    "$PYTHON" "$HERE/httpx_check.py" --host "$HOST" --port "$PORT" --tls || status=1
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "switchyard exited during the suite; its stderr:" >&2
    tail -n 50 "$WORK/stderr" >&2
    status=1
fi
exit $status
