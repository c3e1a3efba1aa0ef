#!/usr/bin/env bash
# Fetch C sources we build from but never commit, from the PyPI sdist that
# ships them: pip download (source only), check the pinned sha256, unpack only
# the named members, flat, into DEST (under build/). Used for the file
# systems: FatFs from `fatfs`, littlefs from `littlefs-python`.
#   fetch-sdist-sources.sh NAME VERSION SHA256 DEST STAMP MEMBER...
# MEMBER is a path inside the sdist, below its top folder NAME-VERSION/.
set -u
cd "$(dirname "$0")/.."
. tools/fail.sh

NAME=$1 VERSION=$2 SHA256=$3 DEST=$4 STAMP=$5
shift 5
# The sdist file name: the project name normalised (PEP 625: - and . -> _).
BASE=$(echo "$NAME" | tr '.-' '__')-$VERSION
TARBALL=build/dl/$BASE.tar.gz
LOG=build/logs/fetch-$NAME.log

if [ ! -f "$TARBALL" ]; then
    echo "setup: fetching $NAME==$VERSION source from PyPI (log in $LOG)"
    quietly "$LOG" .venv/bin/pip download --disable-pip-version-check --no-deps \
            --no-binary :all: "$NAME==$VERSION" -d build/dl \
        || fail "downloading $NAME==$VERSION failed (see $LOG)" "check the network (PyPI), then run make again"
    [ -f "$TARBALL" ] || fail "pip did not produce $TARBALL" "check $LOG"
fi
got=$(sha256sum "$TARBALL" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
    rm -f "$TARBALL"
    fail "$TARBALL has sha256 $got, expected $SHA256" "it was deleted; run make again to re-download, or check the pin in the Makefile"
fi
rm -rf "$DEST" "$DEST.tmp"
mkdir -p "$DEST.tmp"
members=()
for m in "$@"; do members+=("$BASE/$m"); done
tar -xzf "$TARBALL" -C "$DEST.tmp" "${members[@]}" \
    || fail "unpacking ${members[*]} from $TARBALL failed" "delete build/dl and run make again"
mkdir -p "$DEST"
for m in "$@"; do mv "$DEST.tmp/$BASE/$m" "$DEST/"; done
rm -rf "$DEST.tmp"
touch "$STAMP"
