# Sourced by run_suite.sh and reference_h2o.sh: make_docroot DIR writes the two resources the
# cases ask for: /index.html (a small non-empty body) and /large.bin (1 MiB, larger than the
# 65535-octet initial flow-control window).
make_docroot() {
    mkdir -p "$1"
    printf '<!doctype html><title>h2 conformance</title><p>index of the conformance docroot</p>\n' \
        >"$1/index.html"
    head -c 1048576 /dev/zero | tr '\0' 'L' >"$1/large.bin"
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    "${PYTHON:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
