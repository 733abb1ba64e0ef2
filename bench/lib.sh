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
