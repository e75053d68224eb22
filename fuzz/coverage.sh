#!/usr/bin/env bash
# Source coverage of the engine's crates by the fuzz corpus: builds every target with
# `-Cinstrument-coverage` (release, no sanitizer), runs each over its corpus and regressions
# once, merges the profiles and prints an llvm-cov report per crate.
#   fuzz/coverage.sh [CORPUS_ROOT ...]     (default: corpus regressions)
# Needs llvm-profdata and llvm-cov no older than LLVM 19: rustup's llvm-tools-preview, or
# Debian's llvm-19 (`apt-get install llvm-19`); LLVM_PROFDATA / LLVM_COV override the choice.
set -euo pipefail
cd "$(dirname "$0")"
roots=("$@")
if [[ ${#roots[@]} -eq 0 ]]; then
    roots=(corpus regressions)
fi
find_tool() {
    local name="$1" sysroot_tool
    sysroot_tool="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/$name"
    if [[ -x "$sysroot_tool" ]]; then
        echo "$sysroot_tool"
        return
    fi
    for version in 22 21 20 19; do
        if command -v "$name-$version" >/dev/null 2>&1; then
            command -v "$name-$version"
            return
        fi
    done
    echo "fuzz coverage: no $name found (rustup component add llvm-tools-preview, or apt-get install llvm-19)" >&2
    exit 1
}
profdata="${LLVM_PROFDATA:-$(find_tool llvm-profdata)}"
llvm_cov="${LLVM_COV:-$(find_tool llvm-cov)}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
target_dir="${FUZZ_TARGET_DIR:-target/coverage-build}"
RUSTFLAGS="-Cinstrument-coverage" cargo fuzz build -s none -O --target-dir "$target_dir"
binaries="$target_dir/x86_64-unknown-linux-gnu/release"
profiles="$(mktemp -d)"
objects=()
for target in $(cargo fuzz list); do
    inputs=()
    for root in "${roots[@]}"; do
        if [[ -d "$root/$target" ]] && [[ -n "$(ls -A "$root/$target")" ]]; then
            inputs+=("$root/$target")
        fi
    done
    objects+=(-object "$binaries/$target")
    if [[ ${#inputs[@]} -eq 0 ]]; then
        continue
    fi
    count=$(find "${inputs[@]}" -type f | wc -l)
    # -runs=0 runs each input of the directories once and exits.
    LLVM_PROFILE_FILE="$profiles/$target-%m.profraw" \
        "$binaries/$target" -runs=0 -rss_limit_mb=4096 "${inputs[@]}" >/dev/null 2>&1
    echo "fuzz coverage: $target ran $count inputs"
done
"$profdata" merge -sparse "$profiles"/*.profraw -o "$profiles/merged.profdata"
workspace="$(cd .. && pwd)"
for crate in quiver-kernels quiver-ingest quiver-sql quiver-exec; do
    echo
    echo "== $crate (regions, functions, lines, branches) =="
    # The first object is the binary argument; sources restrict the report to the crate's own.
    report="$("$llvm_cov" report "${objects[@]:1}" -instr-profile="$profiles/merged.profdata" \
        "$workspace/crates/$crate/src")"
    if [[ "$crate" == quiver-kernels ]]; then
        echo "$report" | sed "s|$workspace/crates/$crate/src/||"
    else
        echo "$report" | tail -n 1
    fi
done
rm -rf "$profiles"
