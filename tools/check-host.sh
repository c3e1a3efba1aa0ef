#!/usr/bin/env bash
# Make sure the host has the tools the build and QEMU runs need; install the
# missing ones from Debian's packages (only those; nothing when all are there).
# Prints nothing when there is nothing to do.
set -u
cd "$(dirname "$0")/.."
. tools/fail.sh

DEFAULT_QEMU=qemu-system-i386
QEMU=${QEMU:-$DEFAULT_QEMU}
missing=()
# Only the default tools are installed; a QEMU= the user chose is theirs to have.
if [ "$QEMU" != "$DEFAULT_QEMU" ]; then
    command -v "$QEMU" >/dev/null 2>&1 \
        || fail "QEMU=$QEMU: no such program on PATH" "check the name (the default is $DEFAULT_QEMU)"
else
    command -v "$QEMU" >/dev/null 2>&1 || missing+=(qemu-system-x86)
fi
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
# gcc -m32 needs the 32-bit libgcc and C headers (gcc-multilib).
have_multilib() {
    command -v gcc >/dev/null 2>&1 || return 1
    [ -f "$(gcc -m32 -print-libgcc-file-name 2>/dev/null)" ] || return 1
    [ -f /usr/include/i386-linux-gnu/gnu/stubs-32.h ] || [ -f /usr/include/gnu/stubs-32.h ]
}
have_multilib || missing+=(gcc-multilib)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v sha256sum >/dev/null 2>&1 || missing+=(coreutils)
command -v tar >/dev/null 2>&1 || missing+=(tar)
# The host end of the virtio console in README.md (socat - UNIX-CONNECT:...).
command -v socat >/dev/null 2>&1 || missing+=(socat)
# FAT disk images: make run formats its scratch disk (mformat), the tests
# build and check images (mcopy, fsck.fat).
command -v mformat >/dev/null 2>&1 || missing+=(mtools)
command -v fsck.fat >/dev/null 2>&1 || [ -x /usr/sbin/fsck.fat ] || [ -x /sbin/fsck.fat ] || missing+=(dosfstools)
# Headless Chromium draws the guest's status page in tests/qemu/test_tcp.py.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    fail "missing ${missing[*]}" "install them (Debian: apt-get install --no-install-recommends ${missing[*]}) and run make again"
fi
echo "setup: installing ${missing[*]} (apt-get, log in build/logs/apt.log)"
export DEBIAN_FRONTEND=noninteractive
quietly build/logs/apt.log apt-get update \
    || fail "apt-get update failed (see build/logs/apt.log)" "check the network and the apt sources, then run make again"
quietly build/logs/apt.log apt-get install -y --no-install-recommends "${missing[@]}" \
    || fail "apt-get install ${missing[*]} failed (see build/logs/apt.log)" "check the network and the apt sources, then run make again"
