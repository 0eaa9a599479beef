#!/usr/bin/env bash
# Builds every fuzz target of switchyard-wire and runs each for SECONDS
# (default 30), starting from the committed seeds. Exits non-zero when a
# target crashes, leaks or times out; libFuzzer leaves the input in
# artifacts/<target>/.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Works on a stable
# toolchain through RUSTC_BOOTSTRAP=1, which lets cargo-fuzz pass its
# sanitizer flags.
set -euo pipefail

seconds="${1:-30}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

targets=$(cargo fuzz list)
cargo fuzz build

for target in $targets; do
    mkdir -p "corpus/$target" "artifacts/$target"
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    if [[ -f "$target.dict" ]]; then
        args+=(-dict="$target.dict")
    fi
    seeds=()
    if [[ -d "seeds/$target" ]]; then
        seeds=("seeds/$target")
    fi
    echo "== fuzz $target for ${seconds}s"
    # The corpus directory is written, the seeds only read.
    cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- "${args[@]}"
done
echo "fuzz smoke: all targets ran ${seconds}s without a crash"
