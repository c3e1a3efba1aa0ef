#!/usr/bin/env bash
# (Re)build the project virtualenv .venv from requirements.txt (pinned).
# Called by make only when requirements.txt is newer than the venv's stamp.
set -u
cd "$(dirname "$0")/.."
. tools/fail.sh

STAMP=$1
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv (log in build/logs/venv.log)"
    quietly build/logs/venv.log python3 -m venv .venv \
        || fail "python3 -m venv .venv failed (see build/logs/venv.log)" "install python3-venv, then run make again"
else
    echo "setup: updating .venv from requirements.txt (log in build/logs/venv.log)"
fi
quietly build/logs/venv.log .venv/bin/pip install --disable-pip-version-check -q -r requirements.txt \
    || fail "pip install -r requirements.txt failed (see build/logs/venv.log)" "check the network (PyPI) and the pins in requirements.txt, then run make again"
touch "$STAMP"
