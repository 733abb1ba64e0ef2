# Shared by the bench scripts (sourced, from the repository root, after they define `log`).

# Prints the voxmail binary to measure: $BENCH_VOXMAIL when set, else this tree's release build
# (built first; CARGO_TARGET_DIR is honoured).
voxmail_binary() {
    if [[ -n ${BENCH_VOXMAIL:-} ]]; then
        printf '%s\n' "$BENCH_VOXMAIL"
        return
    fi
    log "cargo build --release"
    cargo build --release --quiet --bin voxmail >&2
    printf '%s\n' "${CARGO_TARGET_DIR:-$(pwd)/target}/release/voxmail"
}

# Builds the bench target NAME (bench/NAME.rs, `harness = false`) and prints its executable.
bench_binary() {
    log "cargo bench --bench $1 --no-run"
    local exe
    exe=$(cargo bench --bench "$1" --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
    [[ -n $exe && -x $exe ]] || exe=$(pwd)/$exe
    [[ -x $exe ]] || { log "could not find the $1 bench executable"; return 1; }
    printf '%s\n' "$exe"
}
