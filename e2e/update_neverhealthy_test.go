package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

// updVerifyTimeout is TestUpdate's pith.update.verify_timeout: short, so
// its step 6 adds little time; the other steps' trials are healthy well
// within it.
const updVerifyTimeout = "90s"

// neverHealthyUnit is scheduled on the node in TestUpdate's step 6: it
// fails at once, on every release.
const neverHealthyUnit = `[Unit]
Description=Never healthy (TestUpdate step 6)

[Service]
ExecStart=/bin/false
`

// checkNeverHealthyRollsBack is TestUpdate's step 6, on a node running
// release running from slot B: release version (the same USR, kernel and
// initrd: it boots) is tried on slot A while a unit scheduled on the node
// never becomes healthy. After the verify timeout the node goes back to
// slot B, says why, the reboot lock it took is free, and a later check
// does not try version again.
func (n *Node) checkNeverHealthyRollsBack(repo string, img *channels.ImageRelease, key ed25519.PrivateKey, version, running string) {
	t := n.t
	t.Helper()
	esp := func(name string) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return img.OpenESPFile(name) }
	}
	// A signed image's nodes refuse a release without its boot files'
	// signatures, as pith release publishes them.
	sigs, err := img.BootSigSources()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := channels.Publish(repo, channels.Release{
		Channel: "stable", Version: version, Platform: img.Platform, USRVerityHash: img.USRVerityHash,
		Payloads: append([]channels.PayloadSource{
			{Name: channels.PayloadUSR, File: "usr", Open: img.OpenUSR},
			{Name: channels.PayloadKernel, File: "vmlinuz", Open: esp("pith/vmlinuz-a")},
			{Name: channels.PayloadInitrd, File: "initrd", Open: esp("pith/initrd-a")},
		}, sigs...),
	}, []ed25519.PrivateKey{key}, t.Logf); err != nil {
		t.Fatal(err)
	}
	n.Run("cat > /tmp/never-healthy.service <<'EOF'\n" + neverHealthyUnit + "EOF\nsudo pithctl start --no-block /tmp/never-healthy.service")
	n.MarkConsole()
	n.Run("pithctl update check")
	n.WaitConsole("Loading Pith slot A")
	trial := time.Now()
	n.WaitConsole("Loading Pith slot B")
	t.Logf("MEASURE never-healthy %s: trial boot of slot A to the boot back on slot B: %s (verify timeout %s)", version, time.Since(trial).Round(time.Second), updVerifyTimeout)
	n.WaitSSH()
	st := n.updWaitStatus("the rollback of "+version, func(s node.UpdateStatus) bool { return updHasEvent(s, "rollback", version) })
	if cl := n.Run("cat /proc/cmdline"); !strings.Contains(cl, "pith.slot=b") {
		// Say why it left slot b: what the boot before this one did.
		t.Logf("the boot before this one (journal):\n%s\nslot status:\n%s\npithctl update status:\n%s",
			n.Run("sudo journalctl --no-pager -b -1 -o short-monotonic | grep -v -e 'raft:' -e kernel: | tail -n 150"),
			n.Run("sudo pithctl slot status"), n.Run("pithctl update status"))
		t.Fatalf("after the never-healthy %s the node runs %s, want slot b", version, cl)
	}
	if st.Running != running || st.Pending != nil {
		t.Errorf("after the rollback of %s: running %s, pending %+v; want %s, nothing pending", version, st.Running, st.Pending, running)
	}
	d, _ := time.ParseDuration(updVerifyTimeout)
	why := "slot a was not healthy within " + d.String()
	ust := n.Run("pithctl update status")
	hist := n.Run("pithctl update history")
	t.Logf("after the never-healthy %s:\npithctl update status:\n%s\npithctl update history:\n%s", version, ust, hist)
	if !strings.Contains(ust, "Rollback:  "+version) || !strings.Contains(ust, why) || !strings.Contains(ust, "never-healthy.service") {
		t.Errorf("pithctl update status does not say %s was rolled back because never-healthy.service was not healthy within %s", version, d)
	}
	found := false
	for _, line := range strings.Split(hist, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == version && f[2] == "rollback" && strings.Contains(line, why) {
			found = true
		}
	}
	if !found {
		t.Errorf("pithctl update history has no rollback of %s saying %q", version, why)
	}
	if v := n.updOSVersion(); !strings.HasPrefix(v, running+" ") {
		t.Errorf("os-release VERSION %q after the rollback, want %s", v, running)
	}
	if ss := n.slots(); ss.Saved != "b" || ss.Next != "" || ss.Slots[0].Successful || ss.Slots[0].Tries != 0 || !ss.Slots[1].Running {
		t.Errorf("slot status after the rollback: %+v", ss)
	}
	// The lock the node took to reboot (etcd-lock) is free for the rest
	// of the cluster.
	kv, err := rebootlock.NewEtcdKV([]string{fmt.Sprintf("http://127.0.0.1:%d", n.M.Ports[2379])})
	if err != nil {
		t.Fatal(err)
	}
	// AfterBoot records the rollback, then releases the lock (retried
	// after 250 ms doubling to 4 s while the node's KV has no leader yet).
	took := n.Poll("the reboot lock free after the rollback of "+version, 3*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sem, err := (&rebootlock.Semaphore{KV: kv}).Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(sem.Holders) == 0, fmt.Sprintf("held by %v", sem.Holders)
	})
	t.Logf("MEASURE reboot lock free %s after the rollback was recorded", took.Round(time.Second))

	// Not retried: another check sees the release on the channel and
	// leaves it.
	checked := st.LastCheck
	n.Run("pithctl update check")
	st = n.updWaitStatus("a check after the rollback", func(s node.UpdateStatus) bool {
		return s.LastCheck.After(checked) && s.Phase == node.PhaseIdle
	})
	if st.Available != version || st.Pending != nil || updCountEvents(st, "applied", version) != 1 {
		t.Errorf("after the rollback a check retried %s: available %q pending %+v history %+v", version, st.Available, st.Pending, st.History)
	}
	if ss := n.slots(); ss.Next != "" || ss.Saved != "b" {
		t.Errorf("a trial was set again after the rollback: %+v", ss)
	}
}
