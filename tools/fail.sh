# Sourced by the set-up scripts: one readable line on failure, not a wall of output.
#   fail "what failed" "what to do"      -> prints "setup: what failed: what to do", exits 1
#   quietly LOG cmd args...              -> runs cmd with output to LOG; returns its status
fail() {
    echo "setup: $1: $2" >&2
    exit 1
}

quietly() {
    local log=$1
    shift
    mkdir -p "$(dirname "$log")"
    "$@" >"$log" 2>&1
}
