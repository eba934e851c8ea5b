package update

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/node"
)

// ErrNoTrustedKey: the node has no release key, so it cannot tell a real
// release from anyone's; it refuses to look rather than trust anything.
var ErrNoTrustedKey = errors.New("update: this node trusts no release key, so every release is refused; build the image with pith build --release-key FILE, or add pith.update.public_keys to user-data")

func (a *Agent) fetchAndApply(ctx context.Context) (bool, error) {
	if a.cfg.Keys.Len() == 0 {
		return false, ErrNoTrustedKey
	}
	a.setPhase(node.PhaseChecking)
	c, err := channels.NewClient(a.channelURL(), channels.Policy{
		Keys: a.cfg.Keys, Channel: a.cfg.Channel, Platform: a.cfg.Platform, Running: a.cfg.Running,
	})
	if err != nil {
		return false, err
	}
	c.Progress = func(p channels.Progress) {
		a.mu.Lock()
		a.status.Progress = &p
		a.mu.Unlock()
	}
	if a.cfg.Client != nil {
		a.cfg.Client(c)
	}
	m, err := c.Manifest(ctx, "")
	if errors.Is(err, channels.ErrNotNewer) {
		a.setPhase(node.PhaseIdle)
		return false, nil // up to date
	}
	if errors.Is(err, channels.ErrWrongPlatform) {
		return false, fmt.Errorf("update: refused: %w: publish this architecture's release there (pith release of an image built with --arch %s)", err, a.arch())
	}
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	a.status.Available = m.Version
	a.status.SecurityUpgrades = m.SecurityUpgrades
	bad := slices.Contains(a.st.Bad, m.Version)
	a.mu.Unlock()
	if bad {
		a.setPhase(node.PhaseIdle)
		return false, nil // rolled back before: wait for a newer release
	}
	if a.holds(m.Version) {
		a.setPhase(node.PhaseIdle)
		return false, nil
	}
	return true, a.apply(ctx, c, m)
}

// holds reports whether the running slot is the one version was marked
// good on. The channel compares releases with the running version, read
// from the slot's own os-release; a release whose /usr says another
// version (built from another image) would otherwise look newer than
// itself, and be written to the other slot and booted again, back and
// forth on every check.
func (a *Agent) holds(version string) bool {
	a.mu.Lock()
	g := a.st.Good
	a.mu.Unlock()
	if g == nil || g.Version != version || version == a.cfg.Running {
		return false
	}
	if running, err := a.slots.Running(); err != nil || running != g.Slot {
		return false
	}
	a.log.Warn("update: the running slot holds this release, but its /usr says another version: not applying it again", "release", version, "os_release_version", a.cfg.Running, "slot", g.Slot)
	return true
}

// apply downloads and verifies every payload, then writes the other slot.
// Nothing touches a partition before all payloads are verified.
func (a *Agent) apply(ctx context.Context, c *channels.Client, m *channels.Manifest) error {
	timing := map[string]float64{}
	running, err := a.slots.Running()
	if err != nil {
		return err
	}
	target := "b"
	if running == "b" {
		target = "a"
	}
	a.setPhase(node.PhaseDownloading)
	dl := filepath.Join(a.cfg.StateDir, "downloads")
	pruneDownloads(dl, m)
	// A delta against the running release saves most of the download; it
	// is used only if the running slot really holds its base.
	base, closeBase, delta := a.deltaBase(m, running)
	defer closeBase()
	files, err := a.download(ctx, c, m, dl, delta != nil, timing)
	if err != nil {
		return err
	}

	a.setPhase(node.PhaseWriting)
	if err := a.slots.Invalidate(target); err != nil {
		return fmt.Errorf("update: invalidate slot %s: %w", target, err)
	}
	if err := a.writeUSR(ctx, c, m, target, dl, files, base, delta, timing); err != nil {
		return err
	}
	if err := a.installBoot(m, target, files, timing); err != nil {
		return err
	}
	if err := a.hook("written"); err != nil {
		return err
	}
	// The record first, then the trial: a cut in between boots the old
	// slot with a record saying the trial was never armed (AfterBoot arms
	// it again), never the new slot with no record (never marked good).
	a.mu.Lock()
	a.st.Pending = &node.UpdatePending{Version: m.Version, Slot: target, From: a.cfg.Running, Applied: a.now().UTC()}
	how := ""
	if timing["delta"] == 1 {
		how = " (delta from " + a.cfg.Running + ")"
	}
	a.event(m.Version, "applied", fmt.Sprintf("slot %s; download%s %.1fs, write %.1fs, read-back %.1fs", target, how, timing["download"], timing["write"], timing["readback"]))
	a.status.Timing = timing
	err = a.setStage(node.StageWritten, "")
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if err := a.hook("pending-saved"); err != nil {
		return err
	}
	if err := a.arm(target); err != nil {
		return err
	}
	// The payloads are on the slot now; keep the disk free.
	for _, f := range files {
		os.Remove(f)
	}
	return nil
}

// download fetches and verifies the release's payloads into dl (the USR
// delta in place of the whole USR when useDelta) and returns their paths
// by payload name. The kernel and initrd come first: on a machine with a
// signed boot chain their signatures are checked (downloadBootSigs, and
// the kernel's Authenticode signature against db: checkKernelDB) before
// the USR, by far the largest, is fetched, so a release this
// machine refuses costs a few MiB and not the USR, nor its hashing again
// on every retry.
func (a *Agent) download(ctx context.Context, c *channels.Client, m *channels.Manifest, dl string, useDelta bool, timing map[string]float64) (map[string]string, error) {
	files := map[string]string{}
	start := time.Now()
	usr := channels.PayloadUSR
	if useDelta {
		usr = channels.PayloadUSRDelta
	}
	for _, name := range []string{channels.PayloadKernel, channels.PayloadInitrd, usr} {
		if name == usr {
			pl := newBootPayloads(m, files)
			if err := a.downloadBootSigs(ctx, c, m, dl, files, pl); err != nil {
				return nil, err
			}
			if err := a.checkKernelDB(m, pl); err != nil {
				return nil, err
			}
		}
		p, ok := m.Payload(name)
		if !ok {
			return nil, fmt.Errorf("update: release %s has no %s payload", m.Version, name)
		}
		path, err := c.Download(ctx, p, dl)
		if err != nil {
			return nil, fmt.Errorf("update: %s: %w", m.Version, err)
		}
		files[name] = path
	}
	timing["download"] = time.Since(start).Seconds()
	return files, nil
}

// writeUSR writes the release's USR to the target slot: from the delta
// against base when there is one (falling back to downloading the whole
// USR if the delta fails), else from the whole payload, and reads it back.
func (a *Agent) writeUSR(ctx context.Context, c *channels.Client, m *channels.Manifest, target, dl string, files map[string]string, base io.ReaderAt, delta *channels.Payload, timing map[string]float64) error {
	usr, _ := m.Payload(channels.PayloadUSR)
	t, err := a.slots.USRTarget(target)
	if err != nil {
		return err
	}
	var ws channels.WriteStats
	// Progress of the slot write, for pithctl update status (and tests
	// that must act in the middle of it).
	what := "usr -> slot " + target
	wstart := time.Now()
	wprog := func(done, total int64) {
		p := channels.Progress{Payload: what, Done: done, Total: total, Final: done == total}
		if s := time.Since(wstart).Seconds(); s > 0 {
			p.BytesPerSec = float64(done) / s
		}
		a.mu.Lock()
		a.status.Progress = &p
		a.mu.Unlock()
	}
	if delta != nil {
		ws, err = channels.ApplyDelta(ctx, files[channels.PayloadUSRDelta], *delta, base, t, wprog)
		if err != nil && ctx.Err() == nil {
			// The slot is invalid anyway; fetch the whole USR instead.
			a.log.Warn("update: delta failed; downloading the full USR", "base", a.cfg.Running, "err", err)
			start := time.Now()
			path, derr := c.Download(ctx, usr, dl)
			if derr != nil {
				return fmt.Errorf("update: %s: %w", m.Version, derr)
			}
			timing["download"] += time.Since(start).Seconds()
			files[channels.PayloadUSR] = path
			delta = nil
		}
	}
	if delta == nil {
		wstart = time.Now()
		ws, err = channels.WritePayload(ctx, files[channels.PayloadUSR], usr, t, wprog)
	}
	if err != nil {
		return fmt.Errorf("update: write slot %s: %w", target, err)
	}
	timing["write"], timing["readback"] = ws.Write, ws.ReadBack
	if ws.Direct {
		timing["direct"] = 1
	}
	if delta != nil {
		timing["delta"] = 1
	}
	return nil
}

// installBoot puts the release's kernel and initrd on the ESP for the
// target slot and records the slot's verity root hash.
func (a *Agent) installBoot(m *channels.Manifest, target string, files map[string]string, timing map[string]float64) error {
	start := time.Now()
	for name, dst := range map[string]string{channels.PayloadKernel: a.slots.KernelPath(target), channels.PayloadInitrd: a.slots.InitrdPath(target)} {
		p, _ := m.Payload(name)
		if err := channels.InstallFile(files[name], p, dst); err != nil {
			return fmt.Errorf("update: install %s: %w", name, err)
		}
	}
	if err := a.installBootSigs(m, target, files); err != nil {
		return err
	}
	timing["esp"] = time.Since(start).Seconds()
	start = time.Now()
	if err := a.slots.SetVerity(target, m.USRVerityHash); err != nil {
		return fmt.Errorf("update: slot %s: %w", target, err)
	}
	timing["verity"] = time.Since(start).Seconds()
	return nil
}

// deltaBase returns the running slot's USR as a delta base when the release
// has a usr-delta made against exactly that content.
func (a *Agent) deltaBase(m *channels.Manifest, running string) (io.ReaderAt, func(), *channels.Payload) {
	nop := func() {}
	d, ok := m.Payload(channels.PayloadUSRDelta)
	if !ok {
		return nil, nop, nil
	}
	src, err := a.slots.USRTarget(running)
	if err != nil {
		a.log.Info("update: no delta: running slot", "err", err)
		return nil, nop, nil
	}
	f, err := os.Open(src.Path)
	if err != nil {
		a.log.Info("update: no delta", "err", err)
		return nil, nop, nil
	}
	base := io.NewSectionReader(f, src.Offset, d.BaseSize)
	if err := channels.VerifyBase(base, d); err != nil {
		f.Close()
		a.log.Info("update: no delta", "err", err)
		return nil, nop, nil
	}
	return base, func() { f.Close() }, &d
}

// pruneDownloads removes files of other releases (a superseded release's
// partial download, say) so they do not pile up on ROOT.
func pruneDownloads(dir string, m *channels.Manifest) {
	keep := map[string]bool{}
	for _, p := range m.Payloads {
		keep[p.SHA256], keep[p.SHA256+".part"] = true, true
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !keep[e.Name()] {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}
