#!/usr/bin/env bash
# Runs every fuzz target for a few seconds (default 15 each) from an empty corpus, so that the
# targets keep building and running; a finding fails the run. Installs cargo-fuzz when
# it is missing. Unoptimised build without a sanitizer: it works on the stable toolchain and
# builds in about 2.5 minutes cold on 2 cores.
#   fuzz/smoke.sh [SECONDS_PER_TARGET]      (FUZZ_TARGET_DIR overrides the build directory)
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-15}"
target_dir=()
if [[ -n "${FUZZ_TARGET_DIR:-}" ]]; then
    target_dir=(--target-dir "$FUZZ_TARGET_DIR")
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
cargo fuzz build -s none --dev ${target_dir[@]+"${target_dir[@]}"}
for target in $(cargo fuzz list); do
    # An empty corpus directory: the committed seeds are replayed by `cargo test` (tests/
    # fuzz_replay.rs), and in this unoptimised build the larger seeds alone would take minutes.
    work="$(mktemp -d)"
    log="$(mktemp)"
    if ! cargo fuzz run -s none --dev ${target_dir[@]+"${target_dir[@]}"} "$target" "$work" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz smoke: $target FAILED (artifact under fuzz/artifacts/$target)"
        exit 1
    fi
    echo "fuzz smoke: $target ok: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" || tail -n 1 "$log")"
    rm -rf "$work" "$log"
done
