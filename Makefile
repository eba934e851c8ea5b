# Pith's entry points. `make demo` and `make test` are the README's two
# commands: each installs what it needs first.
SHELL := /bin/bash
GO ?= go
OUT ?= _out
BIN := $(OUT)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS := -s -w -X github.com/pith-os/pith/version.Version=$(VERSION)
# Static, reproducible binaries: they are copied into the image.
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)'
STATICCHECK_VERSION := v0.8.2
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pith

.PHONY: soak soak-node all deps deps-vagrant deps-arm64 bin bin-arm64 release-key secure-boot-keys image image-arm64 demo demo-stop test unit lint e2e release-check bench-build bench-schedule fuzz-userdata bench-userdata bench-ami vagrant-cluster vagrant-cluster-destroy clean

all: bin

deps:
	@bash hack/install-deps.sh

# The suite also runs the Vagrant test (and vagrant/'s Vagrantfile tests need Ruby).
deps-vagrant:
	@bash hack/install-deps.sh vagrant

bin:
	@mkdir -p $(BIN)
	$(GOBUILD) -o $(BIN)/ ./cmd/...
	$(GOBUILD) -o $(BIN)/pith-init ./initramfs/cmd/pith-init
	$(GOBUILD) -o $(BIN)/pith-hello ./e2e/testdata/hello

# arm64 (issue 19): what pith build --arch arm64 puts into the image,
# cross-compiled (static, CGO off) into $(BIN)/linux_arm64, where pith build
# looks for another architecture's binaries; the arm64 image, booted under
# TCG by make e2e's TestARM64 (one guest), or alone by make e2e-arm64.
ARM64_BIN := $(BIN)/linux_arm64
ARM64_OUT ?= $(OUT)/arm64
# After deps: two apt-get installs at once would fight over dpkg's lock.
deps-arm64: deps
	@bash hack/install-deps.sh arm64

bin-arm64:
	@mkdir -p $(ARM64_BIN)
	GOARCH=arm64 $(GOBUILD) -o $(ARM64_BIN)/ ./cmd/pithd ./cmd/pithctl
	GOARCH=arm64 $(GOBUILD) -o $(ARM64_BIN)/pith-init ./initramfs/cmd/pith-init
	GOARCH=arm64 $(GOBUILD) -o $(ARM64_BIN)/pith-hello ./e2e/testdata/hello

image-arm64: deps deps-arm64 bin bin-arm64 release-key
	$(BIN)/pith build --arch arm64 --out $(ARM64_OUT) --cache $(CACHE) --release-key $(RELEASE_KEY_DIR)/pith-release.pub

e2e-arm64: image-arm64
	PITH_E2E_ARM64_IMAGE_DIR=$(abspath $(ARM64_OUT)) PITH_E2E_BIN_DIR=$(abspath $(BIN)) PITH_E2E_CACHE_DIR=$(CACHE) \
		$(GO) test -count=1 -timeout 40m -run '^TestARM64$$' -v ./e2e/

# The development release key, made once per cache: make image bakes its
# public half into the image, so releases signed with its private half (the
# e2e update test, demos) are trusted without user-data. Real images take
# their own key: pith build --release-key FILE.
RELEASE_KEY_DIR ?= $(CACHE)/release-key
# One target, so images built side by side (make test) never make two keys.
release-key: bin
	@test -f $(RELEASE_KEY_DIR)/pith-release.pub || $(BIN)/pith keygen --out $(RELEASE_KEY_DIR)

# The development Secure Boot keys (PK, KEK, db, GRUB's), made once per
# cache: make image signs the default image's boot chain with them, pith
# boot and the walkthrough enroll them in the VMs' firmware, and releases of
# the image are signed with them too. They sit unprotected in the cache:
# never enroll them in a real machine's firmware; real images take the
# operator's own (pith keygen --secure-boot, pith build --secure-boot-keys).
# Made aside and renamed, so an interrupted keygen leaves no half set;
# an existing directory (SB_KEY_DIR=yours) is used as it is.
SB_KEY_DIR ?= $(CACHE)/secure-boot-keys
secure-boot-keys: bin
	@test -d $(SB_KEY_DIR) || { rm -rf $(SB_KEY_DIR).new && \
		$(BIN)/pith keygen --secure-boot --name "Pith development (VMs only)" --out $(SB_KEY_DIR).new && \
		mv $(SB_KEY_DIR).new $(SB_KEY_DIR); }

# The default image, built from the built-in config (cached under $(CACHE)),
# its boot chain signed for Secure Boot.
image: deps bin release-key secure-boot-keys
	$(BIN)/pith build --out $(OUT) --cache $(CACHE) --release-key $(RELEASE_KEY_DIR)/pith-release.pub --secure-boot-keys $(SB_KEY_DIR)

# The walkthrough (README "The walkthrough"): a discovery token, three nodes
# (KVM when usable, TCG otherwise), the KV, the mongo@ template, failover,
# and an update published to the nodes' channel. The cluster, the discovery
# service and the channel server keep running until demo-stop.
# pith-hello is the container the nodes run (loaded offline).
demo: image
	@$(BIN)/pith boot stop --state $(OUT)/demo >/dev/null 2>&1 || true
	$(BIN)/pith demo --image-dir $(OUT) --state $(OUT)/demo --cache $(CACHE) --release-key $(RELEASE_KEY_DIR)/pith-release.key --secure-boot-keys $(SB_KEY_DIR)

demo-stop:
	$(BIN)/pith boot stop --state $(OUT)/demo

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@GOBIN=$(CACHE)/tools $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(CACHE)/tools/staticcheck ./...

# Unit and multi-process tests: no VM, no image.
# -timeout: image/rootfs builds a real Debian tree (minutes when the cache is cold).
# Amazon's EC2 metadata emulator is what the EC2 datasource is tested against;
# fleet's own fleetctl (v1.0.0, pinned in hack/fleetctl) what /fleet/v1 is.
AEMM_VERSION := v1.13.0
# Test binaries run at once. go test's default, one per core, left about a
# quarter of two cores idle over `make test`'s first 7 minutes (vmstat every
# 10 s): the long packages mostly wait, on raft timers and on QEMU.
UNIT_PARALLEL ?= 4
# The longest packages (1.5-2.5 minutes each) start first, so that none of
# them runs alone at the end (go test runs the packages in the order given,
# a package named twice once).
UNIT_FIRST := ./initramfs ./cmd/pithd ./image/rootfs ./agent/cluster
unit: bin
	@GOBIN=$(CACHE)/tools $(GO) install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$(AEMM_VERSION)
	@cd hack/fleetctl && $(GO) build -o $(CACHE)/tools/fleetctl -ldflags '-X github.com/coreos/fleet/version.Version=1.0.0' github.com/coreos/fleet/fleetctl
	PITH_AEMM=$(CACHE)/tools/ec2-metadata-mock PITH_FLEETCTL=$(CACHE)/tools/fleetctl $(GO) test -count=1 -p $(UNIT_PARALLEL) -timeout 30m $(UNIT_FIRST) $$($(GO) list ./... | grep -v /e2e)

# VM tests: boot the default image under QEMU (KVM when usable, TCG otherwise).
# They run side by side within VM slots, one guest per core (e2e/vmslots.go;
# PITH_E2E_VM_SLOTS overrides): -parallel only has to exceed the number of
# tests, so that one waiting for slots never keeps a runnable one waiting.
E2E_RUN = PITH_E2E_IMAGE_DIR=$(abspath $(OUT)) PITH_E2E_ARM64_IMAGE_DIR=$(abspath $(ARM64_OUT)) \
		PITH_E2E_BIN_DIR=$(abspath $(BIN)) PITH_E2E_CACHE_DIR=$(CACHE) \
		PITH_E2E_RELEASE_KEY=$(RELEASE_KEY_DIR)/pith-release.key PITH_E2E_SECURE_BOOT_KEYS=$(SB_KEY_DIR) \
		$(GO) test -count=1 -timeout 80m -parallel 64 -v ./e2e/...
e2e: image image-arm64
	$(E2E_RUN)

# The whole suite. The unit tests alone left about half of two cores idle
# (raft timers, QEMU boots of the initramfs): lint and the two images the
# VM tests boot run beside them (lint and the builds one after another,
# about as long as the unit tests), each target's output printed whole
# when it ends. A failure in any of them stops the suite before the VM tests.
test: deps deps-vagrant deps-arm64
	$(MAKE) --no-print-directory -j2 --output-sync=target lint unit image image-arm64
	$(E2E_RUN)

# Scheduler: engine simulation (in-memory store), then a real 3-node raft.
bench-schedule:
	$(GO) test -run XXX -bench . -benchtime 3x ./agent/schedule/
	$(GO) test -run XXX -bench ScheduleRaft -benchtime 1x ./cmd/pithd/

# Fuzz the user-data entry points briefly (their seed corpora also run in `unit`).
FUZZTIME ?= 30s
fuzz-userdata:
	$(GO) test -run '^$$' -fuzz '^FuzzCloudConfig$$' -fuzztime $(FUZZTIME) ./cloudconfig/
	$(GO) test -run '^$$' -fuzz '^FuzzIgnition$$' -fuzztime $(FUZZTIME) ./cloudconfig/

# Validation throughput (MB/s) on an 8 MiB generated cloud-config.
bench-userdata:
	$(GO) test -run '^$$' -bench Validate -benchtime 5x ./cloudconfig/

# pith ami: multipart upload to the in-memory S3 server on 127.0.0.1 (MB/s),
# and the GPT check + SHA-256 of a 4 GiB sparse image done before uploading.
bench-ami:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./image/ami/

# Power cuts of a whole 3-node cluster under load (README "Cluster key-value
# store"): SOAK_CUTS cuts at random moments on one walkthrough cluster, each
# checked (acknowledged writes, porcupine, time to serve again). Not in the
# suite; needs the image (make image) and three TCG/KVM guests.
SOAK_CUTS ?= 5
soak: image
	SOAK_CUTS=$(SOAK_CUTS) PITH_E2E_IMAGE_DIR=$(abspath $(OUT)) PITH_E2E_BIN_DIR=$(abspath $(BIN)) PITH_E2E_CACHE_DIR=$(CACHE) \
		PITH_E2E_RELEASE_KEY=$(RELEASE_KEY_DIR)/pith-release.key PITH_E2E_SECURE_BOOT_KEYS=$(SB_KEY_DIR) \
		$(GO) test -tags soak -count=1 -timeout 0 -run '^TestSoak$$' -v ./e2e/

# Node-state crash points (issue 14): outside the suite, see e2e/soak_node_test.go.
soak-node: image
	PITH_E2E_IMAGE_DIR=$(abspath $(OUT)) PITH_E2E_BIN_DIR=$(abspath $(BIN)) PITH_E2E_CACHE_DIR=$(CACHE) \
		PITH_E2E_RELEASE_KEY=$(RELEASE_KEY_DIR)/pith-release.key PITH_E2E_SECURE_BOOT_KEYS=$(SB_KEY_DIR) \
		$(GO) test -tags soak -count=1 -timeout 0 -run '^TestSoakNode$$' -v ./e2e/

# The KV's fault tests again and again (KV_COUNT runs; `unit` runs each once):
# porcupine histories and per-member sessions through kill -9, SIGSTOP and a
# partition (root, in a network namespace), and read-your-writes.
KV_COUNT ?= 20
kv-check:
	$(GO) test -count=$(KV_COUNT) -timeout 0 -run '^(TestClusterFaults|TestPartition|TestReadYourWrites)$$' -v ./agent/cluster/

# A Vagrant cluster of VAGRANT_NODES Pith machines (libvirt in its own
# network namespace; README "Vagrant"). vagrant/cluster.sh ssh core-01 logs in.
VAGRANT_NODES ?= 3
vagrant-cluster: deps bin
	@bash hack/install-vagrant-deps.sh
	OUT=$(abspath $(OUT)) CACHE=$(CACHE) bash vagrant/cluster.sh up $(VAGRANT_NODES)

vagrant-cluster-destroy:
	OUT=$(abspath $(OUT)) CACHE=$(CACHE) bash vagrant/cluster.sh destroy

# The live PXE artifacts booted as a PXE machine would (iPXE ROM, QEMU's
# own TFTP; FIRMWARE=uefi: OVMF and pith-pxe.efi), up to SSH; a VM job: not
# in the suite (issue 18).
.PHONY: pxe-boot
pxe-boot: deps bin
	OUT=$(OUT) FIRMWARE=$(FIRMWARE) bash hack/pxe-boot.sh

# pith install against dd of the same image onto the same virtual disk, on
# the PXE live system (issue 18's benchmark; the suite runs its refusals).
.PHONY: bench-install
bench-install: image
	PITH_E2E_BENCH_INSTALL=1 PITH_E2E_IMAGE_DIR=$(abspath $(OUT)) PITH_E2E_BIN_DIR=$(abspath $(BIN)) PITH_E2E_CACHE_DIR=$(CACHE) \
		PITH_E2E_RELEASE_KEY=$(RELEASE_KEY_DIR)/pith-release.key PITH_E2E_SECURE_BOOT_KEYS=$(SB_KEY_DIR) \
		$(GO) test -count=1 -timeout 40m -run 'TestInstallFromISO/pxe-live$$' -v ./e2e/

bench-build: deps bin
	@bash hack/bench-build.sh

# Rebuild from today's Debian archives, check with pith outdated, and release
# on CHANNEL (default stable) only when the content changed: for a timer on
# the release machine (README "Keeping a channel patched").
release-check: deps bin
	@REPO=$(REPO) KEY=$(KEY) SB_KEYS=$(SB_KEYS) CHANNEL=$(or $(CHANNEL),stable) OUT=$(OUT)/release-check BIN=$(BIN) CACHE=$(CACHE) bash hack/release-check.sh

clean:
	rm -rf $(OUT)
