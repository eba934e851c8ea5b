package walkthrough

// Step 6, continued: a broken release halts its own rollout.

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/image/secureboot"
	"github.com/pith-os/pith/node"
)

// HaltResult is what the broken release did.
type HaltResult struct {
	Version string  // the broken release (N+2)
	Percent float64 // its rollout's first wave
	First   int     // the node that wave admitted
	// Rollback is the first node's rollback event as its history says;
	// Halt is the channel server's reason for halting the rollout.
	Rollback string
	Halt     string
	// Status is each node's update status at the end; Reported its last
	// report to the channel server.
	Status   []node.UpdateStatus
	Reported []channels.MachineView
	// Raise is the refused `pith release rollout --percent 100`, RaiseErr
	// its error (nil would mean the halt was lifted).
	Raise    string
	RaiseErr error
	Rollout  string              // pith release rollout status
	Fleet    channels.FleetView  // the server's view at the end
	Took     time.Duration       // publish -> halted and every node checked in
	Shown    map[string][]string // commands run on nodes and their output, by node name
}

// brokenKernel stands in for a kernel a bad build produced: GRUB cannot
// load it, so the slot that carries it never boots.
var brokenKernel = bytes.Repeat([]byte("this is not a Linux kernel image\n"), 128<<10)

// brokenInitrd is a Secure Boot image's bad build: its kernel is signed
// and fine, its initramfs is not one, so the kernel finds no init, panics
// and restarts (panic=10), and the slot never comes up. A broken kernel
// would not do there: nodes check the kernel's signatures before writing
// anything, and a build signs only a kernel that is one.
var brokenInitrd = bytes.Repeat([]byte("this is not an initramfs\n"), 128<<10)

// BadRelease publishes release N+2 whose kernel does not boot, phased like
// N+1 with a first wave of one node and a halt rule that stops at the
// first failure: that node writes it, reboots into it, falls back to N+1
// and reports the rollback; the channel server halts the rollout, and the
// two other nodes, checking in, are held back and never download it.
func (d *Demo) BadRelease() (HaltResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	bad, err := nextVersion(d.Next)
	if err != nil {
		return HaltResult{}, err
	}
	res := HaltResult{Version: bad, Status: make([]node.UpdateStatus, d.cfg.Nodes), Reported: make([]channels.MachineView, d.cfg.Nodes), Shown: map[string][]string{}}
	d.say("\n--- 6b. A broken release halts its own rollout ---")
	broken, failed := "kernel", "GRUB could not load the kernel"
	if d.secureBoot != nil {
		broken, failed = "initramfs", "the kernel, signed and checked, found no init in the initramfs\nand restarted, and GRUB"
	}
	d.say(`Release %s is broken: its %s is not one (a build gone wrong), yet it is
signed and published like any other. Its rollout starts with one node again,
and a halt rule for a fleet this small: more than 0 of the first 5 machines
that install it failing stops it.`, bad, broken)
	if res.Percent, res.First, err = d.firstWave(ctx, bad, "--halt-max-first", "0"); err != nil {
		return res, err
	}
	if err := d.publishBroken(bad); err != nil {
		return res, err
	}
	published := time.Now()
	first := d.NodeName(res.First)
	phase := make([]string, d.cfg.Nodes)
	asked := make([]time.Time, d.cfg.Nodes)
	halted := false
	_, err = waitFor(ctx, first+" back on "+d.Next+" after "+bad+", the rollout halted, every node checked in", 2*time.Second, func() (bool, string) {
		fv, ferr := d.Fleet(ctx)
		if ro := channelRollout(fv, "stable"); ferr == nil && ro != nil && ro.Version == bad && ro.State == channels.RolloutHalted && !halted {
			halted, res.Halt = true, ro.Reason
			d.say("  [%s] the channel server halted the rollout of %s: %s", time.Since(published).Round(time.Second), bad, ro.Reason)
		}
		done := 0
		d.updateStatuses(ctx, func(i int, s nodeStatus) bool {
			st, ok := s.st, s.ok
			p := "not answering"
			if ok {
				p = string(st.Phase)
				res.Status[i] = st
			}
			if p != phase[i] {
				d.say("  [%s] %s: %s", time.Since(published).Round(time.Second), d.NodeName(i), p)
				phase[i] = p
			}
			m, reported := lastReport(fv, d.MachineIDs[i])
			if reported && m != res.Reported[i] {
				if m.Event != res.Reported[i].Event || m.Reason != res.Reported[i].Reason {
					d.say("  [%s] %s reports %s %s %s", time.Since(published).Round(time.Second), d.NodeName(i), m.Event, m.Version, m.Reason)
				}
				res.Reported[i] = m
			}
			switch {
			case !ok:
			case i == res.First:
				if ev, back := eventOf(st, "rollback", bad); back && st.Running == d.Next {
					res.Rollback = ev.Detail
					done++
				}
			case halted && reported && m.Event == channels.EventChecked && strings.Contains(m.Reason, "halted"):
				done++ // checked in after the halt, and held back by it
			}
			// Ask every node to check: at once, then each minute while
			// not done (after the halt the others must check again).
			if ok && time.Since(asked[i]) > time.Minute && (st.Phase == node.PhaseIdle || st.Phase == node.PhaseError) {
				if d.httpPost(ctx, d.apiURL(i)+"/pith/v1/update/check") == nil {
					asked[i] = time.Now()
				}
			}
			return true
		})
		sem, ok := d.semaphore(ctx)
		return done == d.cfg.Nodes && ok && len(sem.Holders) == 0, fmt.Sprintf("phases %v, halted %v, fleet %v", phase, halted, ferr)
	})
	if err != nil {
		return res, err
	}
	res.Took = time.Since(published)
	d.say(`
%s wrote %s to its other slot, took the reboot lock and rebooted into it;
%s booted the previous slot. pithd, back on
%s, recorded the rollback (it never tries %s again), released the lock and
reported it. One failure among the first machines was enough for the server
to halt the rollout; the other nodes were never admitted, and now the halt
holds them back.`, first, bad, failed, d.Next, bad)
	// An operator cannot push a halted release further by mistake.
	res.Raise, res.RaiseErr = d.rolloutCmd(ctx, false, "--version", bad, "--percent", "100")
	if res.RaiseErr == nil {
		return res, fmt.Errorf("raising the halted rollout of %s was not refused:\n%s", bad, res.Raise)
	}
	if res.Rollout, err = d.rolloutCmd(ctx, false, "status"); err != nil {
		return res, err
	}
	for _, i := range []int{res.First, (res.First + 1) % d.cfg.Nodes} {
		for _, c := range []string{"sudo pithctl update status", "sudo pithctl update history"} {
			out, err := d.show(ctx, i, c)
			if err != nil {
				return res, err
			}
			res.Shown[d.NodeName(i)] = append(res.Shown[d.NodeName(i)], out)
		}
	}
	if res.Fleet, err = d.Fleet(ctx); err != nil {
		return res, err
	}
	d.say("\nThe fleet dashboard shows the machines, their versions, the halted rollout and why: %s\n(its JSON: %sv1/fleet)", d.DashboardURL(), d.DashboardURL())
	d.timed("halted rollout", start)
	return res, nil
}

// publishBroken signs and publishes version on stable: N+1's /usr (with a
// delta against it) and initrd, and brokenKernel; for a Secure Boot image
// N+1's kernel and brokenInitrd, with the boot files' signatures as a
// build with its keys makes them.
func (d *Demo) publishBroken(version string) error {
	img, err := channels.OpenImage(filepath.Join(d.cfg.StateDir, "next"))
	if err != nil {
		return err
	}
	defer img.Close()
	key, err := channels.LoadPrivateKey(d.cfg.ReleaseKey)
	if err != nil {
		return err
	}
	esp := func(name string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return img.OpenESPFile(name) }
	}
	bytesOf := func(b []byte) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	payloads := []channels.PayloadSource{
		{Name: channels.PayloadUSR, File: "usr", Open: img.OpenUSR},
		{Name: channels.PayloadKernel, File: "vmlinuz", Open: bytesOf(brokenKernel)},
		{Name: channels.PayloadInitrd, File: "initrd", Open: esp("pith/initrd-a")},
	}
	if d.secureBoot != nil {
		sigs, err := img.BootSigSources()
		if err != nil {
			return err
		}
		keys, err := secureboot.Load(d.cfg.SecureBootKeys)
		if err != nil {
			return err
		}
		initrd := filepath.Join(d.cfg.StateDir, "broken-initrd")
		if err := os.WriteFile(initrd, brokenInitrd, 0o644); err != nil {
			return err
		}
		if err := keys.SignFile(initrd, time.Now()); err != nil {
			return err
		}
		sig, err := os.ReadFile(initrd + secureboot.SigSuffix)
		if err != nil {
			return err
		}
		for i := range sigs {
			if sigs[i].Name == channels.PayloadInitrdSig {
				sigs[i].Open = bytesOf(sig)
			}
		}
		payloads = append([]channels.PayloadSource{
			payloads[0],
			{Name: channels.PayloadKernel, File: "vmlinuz", Open: esp("pith/vmlinuz-a")},
			{Name: channels.PayloadInitrd, File: "initrd", Open: bytesOf(brokenInitrd)},
		}, sigs...)
	}
	m, err := channels.Publish(d.repo, channels.Release{
		Channel: "stable", Version: version, Platform: img.Platform, USRVerityHash: img.USRVerityHash, DeltaFrom: d.Next,
		Payloads: payloads,
	}, []ed25519.PrivateKey{key}, nil)
	if err != nil {
		return fmt.Errorf("publish the broken %s: %w", version, err)
	}
	d.say("(published %s on stable: %d payloads, signed with the release key)", m.Version, len(m.Payloads))
	return nil
}

// eventOf is the history event of kind for version.
func eventOf(st node.UpdateStatus, kind, version string) (node.UpdateEvent, bool) {
	for _, e := range st.History {
		if e.Kind == kind && e.Version == version {
			return e, true
		}
	}
	return node.UpdateEvent{}, false
}
