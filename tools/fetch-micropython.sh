#!/usr/bin/env bash
# Fetch the MicroPython source we build from: the PyPI sdist of
# mpy-cross-v6.3 (a MicroPython 1.23.0 tree), checked against a pinned
# sha256, unpacked into build/micropython. Never committed.
#   fetch-micropython.sh VERSION SHA256 DEST STAMP
set -u
cd "$(dirname "$0")/.."
. tools/fail.sh

VERSION=$1 SHA256=$2 DEST=$3 STAMP=$4
NAME=mpy-cross-v6.3
TARBALL=build/dl/mpy_cross_v6_3-$VERSION.tar.gz

if [ ! -f "$TARBALL" ]; then
    echo "setup: fetching the MicroPython source ($NAME==$VERSION from PyPI, log in build/logs/fetch.log)"
    quietly build/logs/fetch.log .venv/bin/pip download --disable-pip-version-check --no-deps \
            --no-binary :all: "$NAME==$VERSION" -d build/dl \
        || fail "downloading $NAME==$VERSION failed (see build/logs/fetch.log)" "check the network (PyPI), then run make again"
    [ -f "$TARBALL" ] || fail "pip did not produce $TARBALL" "check build/logs/fetch.log"
fi
got=$(sha256sum "$TARBALL" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
    rm -f "$TARBALL"
    fail "$TARBALL has sha256 $got, expected $SHA256" "it was deleted; run make again to re-download, or check the pin in the Makefile"
fi
rm -rf "$DEST" "$DEST.tmp"
mkdir -p "$DEST.tmp"
tar -xzf "$TARBALL" -C "$DEST.tmp" --strip-components=1 "mpy_cross_v6_3-$VERSION/micropython" \
    || fail "unpacking $TARBALL failed" "delete build/dl and run make again"
mv "$DEST.tmp/micropython" "$DEST" && rm -rf "$DEST.tmp"
[ -f "$DEST/py/mkrules.mk" ] || fail "$DEST has no py/mkrules.mk" "delete build/ and run make again"
touch "$STAMP"
