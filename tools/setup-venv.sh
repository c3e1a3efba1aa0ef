#!/usr/bin/env bash
# (Re)build the project virtualenv .venv from a pinned requirements file
# (requirements.txt by default; bench/requirements.txt for make bench).
# Called by make only when that file is newer than its stamp.
set -u
cd "$(dirname "$0")/.."
. tools/fail.sh

STAMP=$1
REQ=${2:-requirements.txt}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv (log in build/logs/venv.log)"
    quietly build/logs/venv.log python3 -m venv .venv \
        || fail "python3 -m venv .venv failed (see build/logs/venv.log)" "install python3-venv, then run make again"
else
    echo "setup: updating .venv from $REQ (log in build/logs/venv.log)"
fi
quietly build/logs/venv.log .venv/bin/pip install --disable-pip-version-check -q -r "$REQ" \
    || fail "pip install -r $REQ failed (see build/logs/venv.log)" "check the network (PyPI) and the pins in $REQ, then run make again"
touch "$STAMP"
