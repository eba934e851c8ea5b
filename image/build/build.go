package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/layout"
	"github.com/pith-os/pith/image/manifest"
	"github.com/pith-os/pith/image/rootfs"
	"github.com/pith-os/pith/image/sbom"
	"github.com/pith-os/pith/image/secureboot"
	"github.com/pith-os/pith/initramfs"
)

// Options configure Build.
type Options struct {
	Config      config.Config
	OutDir      string // artifacts land here (default _out)
	CacheDir    string // downloads and cached trees
	AgentBinDir string // static pithd, pithctl, pith-init
	Log         func(format string, args ...any)
	Bars        io.Writer // progress bars (a terminal), or nil
	// DebugUnverifiedUSR builds an image whose initramfs accepts
	// pith.verity=off (typed at the boot menu) to mount USR without
	// dm-verity: for debugging only, recorded in the manifest.
	DebugUnverifiedUSR bool
	// SecureBoot signs the UEFI boot chain (secureboot.Load of a pith keygen
	// --secure-boot directory); nil: unsigned.
	SecureBoot *secureboot.Keys
}

// Result is a finished build.
type Result struct {
	Manifest  *manifest.Manifest
	Artifacts []ArtifactInfo
	Steps     []Step
	Total     time.Duration
}

// Build makes the image described by o.Config: rootfs, initramfs, then
// Assemble, and publishes the artifacts into o.OutDir only when all of them
// are complete. On error nothing new appears under a final name.
func Build(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	c := o.Config
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := CheckFormats(c.Formats); err != nil {
		return nil, err
	}
	if err := checkTarget(c, o.SecureBoot != nil); err != nil {
		return nil, err
	}
	// A disk too small for the fixed partitions fails before any work.
	if _, err := layout.New(c.DiskSize, Seed(c)); err != nil {
		return nil, err
	}
	keys, err := readReleaseKeys(c.ReleaseKeys)
	if err != nil {
		return nil, err
	}
	if o.OutDir == "" {
		o.OutDir = "_out"
	}
	work, err := PrepareOut(o.OutDir)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	r := &Reporter{Log: o.Log, Bars: o.Bars}

	var rfs *rootfs.Result
	err = r.Step("root filesystem (Debian "+c.Suite+")", func() (string, error) {
		var err error
		rfs, err = rootfs.Build(ctx, rootfs.Options{Config: c, CacheDir: o.CacheDir, WorkDir: work, AgentBinDir: o.AgentBinDir, Log: o.Log})
		if err != nil {
			return "", err
		}
		return "kernel " + rfs.KernelVersion, nil
	})
	if err != nil {
		return nil, explain(err, o.OutDir)
	}
	err = r.Step("release keys", func() (string, error) {
		ids, err := installReleaseKeys(rfs.UsrDir, keys, c.Epoch)
		if err != nil {
			return "", err
		}
		if len(ids) == 0 {
			return "none: nodes refuse every update unless user-data adds a key (pith build --release-key)", nil
		}
		return "trusted by the update agent: " + strings.Join(ids, ", "), nil
	})
	if err != nil {
		return nil, explain(err, o.OutDir)
	}
	initrd := filepath.Join(work, "initrd.img")
	err = r.Step("initramfs", func() (string, error) {
		opts := initramfs.Options{FsckFrom: rfs.UsrDir, KernelVersion: rfs.KernelVersion, ModulesDir: rfs.ModulesDir, Out: initrd, Log: o.Log, CacheDir: o.CacheDir,
			AllowUnverifiedUSR: o.DebugUnverifiedUSR, Arch: c.Arch}
		if p := filepath.Join(o.AgentBinDir, "pith-init"); o.AgentBinDir != "" && exists(p) {
			opts.InitBinary = p
		}
		res, err := initramfs.Build(ctx, opts)
		if err != nil {
			return "", err
		}
		if err := checkPlatformModules(c.Platform, c.Arch, rfs.KernelVersion, res.Absent); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d modules, %s", len(res.Modules), layout.Human(res.Size)), nil
	})
	if err != nil {
		return nil, explain(err, o.OutDir)
	}
	var inv *sbom.Inventory
	var sbomPath string
	err = r.Step("SBOM", func() (string, error) {
		var err error
		if inv, err = inventory(c, rfs, o.AgentBinDir); err != nil {
			return "", err
		}
		if sbomPath, err = writeSBOM(inv, rfs.UsrDir, work, c.Epoch); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d Debian packages, kernel %s %s, %d Pith binaries%s", len(inv.Packages), inv.Kernel.Name, inv.Kernel.Version, len(inv.Binaries), grubSummary(inv)), nil
	})
	if err != nil {
		return nil, explain(err, o.OutDir)
	}
	in := Inputs{Config: c, UsrDir: rfs.UsrDir, KernelPath: rfs.KernelPath, KernelVersion: rfs.KernelVersion, InitrdPath: initrd,
		DebugUnverifiedUSR: o.DebugUnverifiedUSR, SecureBoot: o.SecureBoot, Grub: rfs.Grub, BootLoaders: rfs.BootLoaders}
	in.AgentSHA256, err = agentHash(o.AgentBinDir)
	if err != nil {
		return nil, err
	}
	if o.CacheDir != "" {
		err = r.Step("/usr tree hash", func() (string, error) {
			var err error
			in.UsrHash, err = rootfs.TreeHash(rfs.UsrDir)
			in.CacheDir = o.CacheDir
			return in.UsrHash[:16], err
		})
		if err != nil {
			return nil, explain(err, o.OutDir)
		}
	}
	artifacts, m, err := Assemble(ctx, in, work, r)
	if err != nil {
		return nil, explain(err, o.OutDir)
	}
	if err := recordSBOM(m, c, inv, sbomPath, artifacts[manifest.FileName]); err != nil {
		return nil, explain(err, o.OutDir)
	}
	artifacts[sbom.FileName] = sbomPath
	infos, err := Publish(o.OutDir, artifacts, manifest.FileName)
	if err != nil {
		return nil, explain(err, o.OutDir)
	}
	return &Result{Manifest: m, Artifacts: infos, Steps: r.Steps, Total: time.Since(start)}, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// agentHash digests the agent binaries the image carries, for the manifest.
func agentHash(dir string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"pithd", "pithctl"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("%v: run make bin (it builds pithd and pithctl into _out/bin) or pass --agent-bin-dir", err)
		}
		fmt.Fprintf(h, "%s\x00", name)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
