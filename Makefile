# One obvious way to build, test, benchmark and install contid.
# `make help` lists the targets.

GO        ?= go
PREFIX    ?= /usr
DESTDIR   ?=
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0)
# -bindnow: resolve libc's symbols at start, so the relocations become
# read-only (full RELRO), as Debian's hardening asks of a root daemon.
LDFLAGS   := -bindnow -X github.com/contid/contid/config.Version=$(VERSION)
# Debian packages the build, the tests and every tier need.
DEB_DEPS  := clang llvm libbpf-dev bpftool dbus systemd systemd-container \
             systemd-journal-remote jq \
             auditd polkitd qemu-system-x86 debootstrap e2fsprogs zstd \
             lintian dpkg-dev debhelper fakeroot util-linux procps iproute2 \
             stress-ng linux-perf libc6-dev \
             tmux zsh fish bash-completion

.PHONY: check check-generate fuzz fuzz-check
.PHONY: all help deps build generate lint test test-unprivileged test-privileged \
        test-systemd test-vm bench demo deb deb-lint install clean

all: build

help:
	@echo "make deps               install the Debian packages (root)"
	@echo "make build              bin/contidd and bin/contidctl"
	@echo "make generate           rebuild the bpf2go output from kernel/bpf (needs clang)"
	@echo "make lint               gofmt, go vet, staticcheck"
	@echo "make check              the whole CI job: generate check, lint, every test tier"
	@echo "make test               every tier this machine can run (privileged ones need root)"
	@echo "make test-unprivileged  go test ./... as user nobody: privileged tests skip with reasons"
	@echo "make test-systemd       systemd as PID 1 in nspawn, with the .deb installed"
	@echo "make test-vm            a qemu guest with the BPF LSM: enforcing mode and the tamper suite"
	@echo "make bench              benchmarks: prints a table, writes bench/results.json"
	@echo "make fuzz               each fuzz target for FUZZTIME (default 60s)"
	@echo "make demo               the main job on an embedded default: a tagged container and its journal"
	@echo "make deb                the Debian package in packaging/out/ (dpkg-buildpackage)"
	@echo "make deb-lint           lintian --pedantic on it: fails on unjustified tags"
	@echo "make install            install everything under DESTDIR/PREFIX"

# The whole CI job, as root on a fresh machine after `make deps`.
# test-vm boots a Debian guest under qemu (TCG here): about 17 min warm,
# plus the guest image build (debootstrap) on a fresh machine.
check: check-generate lint build fuzz-check test-unprivileged test deb-lint test-systemd test-vm

# Under make check a privileged test that would skip (no root, a program
# or kernel feature missing) fails instead, naming what is missing: CI's
# machine has all of them. Prerequisites inherit the setting; only the
# test recipe passes it on.
check: REQUIRE_ALL = 1

# The committed bpf2go output must be what the committed C sources give.
check-generate:
	$(GO) generate ./kernel/...
	git diff --exit-code --stat -- kernel/ || \
	  { echo "kernel/: bpf2go output differs from the committed files: run make generate and commit"; exit 1; }

deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEB_DEPS)
	$(GO) mod download

build:
	$(GO) build -trimpath -buildmode=pie -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/contidd ./cmd/contidctl ./cmd/contid-oci-hook

generate:
	$(GO) generate ./kernel/...

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# As root this runs the privileged tests for real (host integration tier);
# as any other user they skip with their reasons.
test:
	CONTID_TEST_REQUIRE_ALL=$(REQUIRE_ALL) $(GO) test -count=1 -p 1 -timeout 30m ./...

# The test binaries are built as the caller and run as nobody, from a
# world-readable copy of the tree (a checkout under /root is not).
test-unprivileged:
	test/unprivileged.sh

test-systemd: deb
	CONTID_TEST_REQUIRE_ALL=$(REQUIRE_ALL) test/systemd/run.sh

test-vm: deb
	test/vm/run.sh

bench: build
	test/bench/run.sh

# Go's fuzzing runs one target of one package at a time. Each target's
# seed corpus is committed under its package's testdata/fuzz/; an input
# that fails is added there by go test, to be committed with its fix.
FUZZTIME     ?= 60s
FUZZ_TARGETS := ./dbus/internal/p2p:FuzzSASL ./dbus/internal/p2p:FuzzMessage ./dbus:FuzzDispatch ./dbus:FuzzArguments ./dbus:FuzzHeaderSender

fuzz:
	@for t in $(FUZZ_TARGETS); do 	  pkg=$${t%%:*}; name=$${t##*:}; 	  echo "fuzz: $$pkg $$name for $(FUZZTIME)"; 	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; 	done

# A short run of every target, part of make check. A count of runs, not
# a duration: at the end of a timed run Go's fuzzing coordinator now and
# then fails the target with "context deadline exceeded" when a worker is
# slow to stop (a loaded machine), with no input to blame.
fuzz-check:
	$(MAKE) fuzz FUZZTIME=20000x

demo: build
	test/demo/run.sh

# dpkg-buildpackage compiles in a staged copy of the tree (debian/rules
# runs `make build` and `make install` there): no bin/ needed first.
deb:
	packaging/build-deb.sh

# lintian --pedantic on the .deb; fails on any tag not overridden, with a
# reason, in packaging/debian/contid.lintian-overrides.
deb-lint: deb
	packaging/lint-deb.sh

install: build

-include packaging/install.mk

clean:
	rm -rf $(BIN) packaging/out test/vm/out
