#!/usr/bin/env bash
# The test command: everything CI runs, runnable by hand from any directory.
#
#   bash interop/test.sh
#
# On a fresh Debian 12 machine (as root) it first installs what the tests need: the Rust toolchain
# (rustup, stable, with clippy and rustfmt) when cargo is missing, build tools, and the independent
# clients the integration tests drive (curl, openssl, nghttp2-client, ngtcp2-client, python3-venv,
# aria2 and python3-libtorrent; aioquic is pip-installed into target/venv by the QUIC harness).
# It then builds the release binary, runs every
# test of the workspace in the release profile (so the workspace is compiled once), the HTTP/2
# conformance suite (interop/conformance/h2), clippy, rustfmt,
# and the fuzz smoke run when a fuzz crate provides one. Every step runs even after an earlier one
# failed (a failed build excepted), and the script then exits non-zero naming the failed steps.
#
# Environment:
#   SKIP_INSTALL=1   never install anything (fail later if something is missing)
#   SKIP_FUZZ=1      skip the fuzz smoke run
#   FUZZ_SECONDS=N   run each fuzz target N seconds (default 20)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

section() {
    printf '\n==== %s ====\n' "$*"
}

# ---- prerequisites ----------------------------------------------------------------------------

# Commands the tests need, and the Debian package that provides each.
declare -A NEED=(
    [curl]=curl
    [nghttp]=nghttp2-client
    [openssl]=openssl
    [gtlsclient]=ngtcp2-client
    [sha256sum]=coreutils
    [cc]=build-essential
    [pkg-config]=pkg-config
    [aria2c]=aria2
    [redis-server]=redis-server
    [nginx]=nginx
    [nghttpd]=nghttp2-server
)

install_prerequisites() {
    local missing=()
    for cmd in "${!NEED[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
    done
    # librqbit-core's default sha1 backend links OpenSSL.
    if ! pkg-config --exists openssl 2>/dev/null; then
        missing+=(libssl-dev)
    fi
    # The BitTorrent tests drive python3-libtorrent, which only Debian's python3 imports.
    if ! /usr/bin/python3 -c 'import libtorrent' >/dev/null 2>&1; then
        missing+=(python3-libtorrent)
    fi
    # The conformance suites run in a venv made from Debian's python3 (interop/conformance/).
    if ! /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    if ((${#missing[@]})); then
        section "installing: ${missing[*]}"
        if [[ $(id -u) -ne 0 ]]; then
            echo "missing packages (${missing[*]}) and not root: install them and re-run" >&2
            exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends ca-certificates "${missing[@]}"
    fi

    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        section "installing the Rust toolchain (rustup, stable)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --default-toolchain stable --component clippy,rustfmt
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if command -v rustup >/dev/null 2>&1; then
        for component in clippy rustfmt; do
            if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
                section "installing rustup component $component"
                rustup component add "$component"
            fi
        done
    fi
}

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
    install_prerequisites
fi

section "toolchain"
cargo --version
rustc --version
curl --version | head -n 1

# ---- build, tests, lints, fuzz smoke ----------------------------------------------------------

# Later steps still run after a failed one (so one run shows every problem); the script exits
# non-zero at the end if any step failed. Only a failed build stops at once: nothing can be tested.
# Each step's output is also kept in target/ci-logs, so that the closing summary can repeat the
# lines that say why a step failed: a CI log is often read from its tail.
FAILED=()
FAILED_LOGS=()
LOGS=$ROOT/target/ci-logs
mkdir -p "$LOGS"
rm -f "$LOGS"/step-*.log
STEP_NO=0
step() {
    local name=$1
    shift
    section "$name"
    STEP_NO=$((STEP_NO + 1))
    local log=$LOGS/step-$STEP_NO.log
    if ! "$@" 2>&1 | tee "$log"; then
        FAILED+=("$name")
        FAILED_LOGS+=("$log")
        printf '\n**** FAILED: %s\n' "$name"
    fi
}
# why LOG: the lines of a failed step that name what failed (harness verdicts, failed tests,
# panics with the three lines of message after them, compiler errors), then its last lines.
why() {
    awk '/^thread .* panicked/ { more = 4 }
         more > 0 { print substr($0, 1, 300); more--; next }
         /^(FAIL |---- |test .* FAILED|error(\[|:)|FAILED)|differs from/ { print substr($0, 1, 300) }' "$1" |
        tail -n 50 | sed 's/^/    /'
    echo "    ... last lines:"
    tail -n 15 "$1" | sed 's/^/    /'
}

section "build: cargo build --release -p switchyard"
cargo build --release -p switchyard

step "tests: cargo test --release --workspace" cargo test --release --workspace --no-fail-fast
# RFC 9113 / RFC 7541 conformance and flood protections, over h2c and TLS, driven by python
# hyperframe/hpack; every case must pass.
step "conformance: HTTP/2 over h2c and TLS" bash interop/conformance/h2/run_suite.sh --tls
# The QUIC interop runner's server cases on loopback with aioquic and ngtcp2's gtlsclient,
# plus loss, corruption and blackhole through a user-space UDP impairment proxy.
step "interop: QUIC/HTTP/3 harness (aioquic, ngtcp2)" bash interop/quic/run.sh
step "lint: cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
step "format: cargo fmt --all -- --check" cargo fmt --all -- --check

FUZZ_SMOKE=protocols/wire/fuzz/smoke.sh
fuzz_smoke() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        section "installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    fi
    # cargo-fuzz needs nightly flags (-Z sanitizer); RUSTC_BOOTSTRAP lets the stable toolchain
    # accept them, so CI needs no second toolchain.
    RUSTC_BOOTSTRAP=1 bash "$FUZZ_SMOKE" "${FUZZ_SECONDS:-20}"
}
if [[ "${SKIP_FUZZ:-0}" == 1 ]]; then
    section "fuzz smoke: skipped (SKIP_FUZZ=1)"
elif [[ -f "$FUZZ_SMOKE" ]]; then
    step "fuzz smoke: $FUZZ_SMOKE, ${FUZZ_SECONDS:-20} s per target" fuzz_smoke
else
    section "fuzz smoke: $FUZZ_SMOKE not present, skipped"
fi

if ((${#FAILED[@]})); then
    section "FAILED (${#FAILED[@]}):"
    for i in "${!FAILED[@]}"; do
        printf '  %s\n' "${FAILED[$i]}"
        why "${FAILED_LOGS[$i]}"
    done
    exit 1
fi
section "all checks passed ($ROOT)"
