#!/usr/bin/env bash
# Runs the suite against h2o (Debian's h2o package), the reference server used to validate the
# cases themselves: h2c and TLS, each on a free loopback port, with a self-signed certificate.
# Not part of CI; h2o's own failures are recorded in README.md.
#
#   bash interop/conformance/h2/reference_h2o.sh [run.py args, e.g. --filter 6.5]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-$HERE/../../../target/venv/bin/python}
source "$HERE/docroot.sh"

WORK=$(mktemp -d)
H2O_PID=
cleanup() {
    if [[ -n $H2O_PID ]]; then kill "$H2O_PID" 2>/dev/null || true; wait "$H2O_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

make_docroot "$WORK/www"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
PLAIN=$(free_port)
TLS=$(free_port)
cat >"$WORK/h2o.conf" <<CONF
user: root
error-log: $WORK/error.log
pid-file: $WORK/h2o.pid
listen:
  host: 127.0.0.1
  port: $PLAIN
listen:
  host: 127.0.0.1
  port: $TLS
  ssl:
    certificate-file: $WORK/cert.pem
    key-file: $WORK/key.pem
hosts:
  default:
    paths:
      /:
        file.dir: $WORK/www
CONF
h2o -c "$WORK/h2o.conf" &
H2O_PID=$!
for _ in $(seq 50); do
    curl -sf --http2-prior-knowledge "http://127.0.0.1:$PLAIN/" >/dev/null && break
    sleep 0.1
done
h2o --version | head -n 1

status=0
"$PYTHON" "$HERE/run.py" --host 127.0.0.1 --port "$PLAIN" "$@" || status=1
"$PYTHON" "$HERE/run.py" --host 127.0.0.1 --port "$TLS" --tls "$@" || status=1
exit $status
