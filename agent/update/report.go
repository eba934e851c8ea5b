package update

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pith-os/pith/atomicfile"
	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/pki"
)

// Reports to the channel server, and the phased rollout.
//
// The node reports each update event to the server it fetches from
// (POST /v1/report). A node with a cluster member certificate (pith cluster
// issue, /etc/pith/tls/member.crt) signs with it: a server given the
// cluster CA (pith channel serve --cluster-ca) checks the chain and role
// and lets one member name report for one machine ID. Otherwise reports
// are signed with a per-machine Ed25519 key kept in StateDir/report.key
// (0600, made on first use); the server binds the key to the machine ID
// the first time it sees it (trust on first use), so afterwards no other
// machine can report for this one. A reinstalled machine has a new key
// and is refused until the operator runs `pith channel forget`.
//
// Reports are best-effort: they are queued (a few dozen at most, the
// oldest dropped) and sent by one goroutine with a short timeout; a server
// that is down delays no update.

// reportTimeout bounds one report's POST.
const reportTimeout = 10 * time.Second

// flushTimeout bounds how long a reboot waits for queued reports (the
// last word of a node going down: rebooting, unhealthy) to be sent.
const flushTimeout = 5 * time.Second

// Reporter sends the agent's update events to the channel server.
type Reporter struct {
	a      *Agent
	key    ed25519.PrivateKey
	client *channels.Client
	q      chan channels.Report
	log    *slog.Logger
	// A node with a cluster member certificate signs with it instead of
	// key (the server then checks it against the cluster CA).
	certFile, certKeyFile string
	seqFile               string

	mu       sync.Mutex
	seq      uint64
	unsent   int    // queued or being sent
	running  int    // Run loops sending them
	offered  string // last release the channel offered
	taking   string // the release the rollout let this machine take
	checking bool   // a check is under way and no decision was reported yet
	failing  bool   // the last send failed (logged once until one succeeds)
}

// NewReporter attaches a reporter to the agent (before AfterBoot and Run)
// and applies the channel's rollout to its checks. keyFile holds the
// machine's report key ("": StateDir/report.key).
func NewReporter(a *Agent, keyFile string) (*Reporter, error) {
	if keyFile == "" {
		keyFile = filepath.Join(a.cfg.StateDir, "report.key")
	}
	key, err := loadOrMakeReportKey(keyFile)
	if err != nil {
		return nil, err
	}
	c, err := channels.NewClient(a.cfg.Server, channels.Policy{Channel: a.cfg.Channel})
	if err != nil {
		return nil, err
	}
	if a.cfg.Client != nil {
		a.cfg.Client(c)
	}
	r := &Reporter{a: a, key: key, client: c, q: make(chan channels.Report, 32), log: a.log,
		seq: uint64(time.Now().UnixNano()), certFile: pki.NodeCert, certKeyFile: pki.NodeCertKey,
		seqFile: filepath.Join(filepath.Dir(keyFile), "report.seq")}
	// The server refuses a sequence number it has seen: continue above the
	// last one sent even when the clock is behind after a reboot.
	if b, err := os.ReadFile(r.seqFile); err == nil {
		if last, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			r.seq = max(r.seq, last)
		}
	}
	a.Notify = r.notify
	a.reboot = flushFirst{r: r, next: a.reboot}
	prev := a.cfg.Client
	a.cfg.Client = func(c *channels.Client) {
		if prev != nil {
			prev(c)
		}
		c.Gate = c.RolloutGate(a.cfg.MachineID, a.cfg.Group, r.decided)
	}
	return r, nil
}

// loadOrMakeReportKey reads the machine's report key, or makes one.
func loadOrMakeReportKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("report key %s: not PEM (remove it to make a new one, then pith channel forget this machine)", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("report key %s: %v", path, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("report key %s: not an Ed25519 key", path)
		}
		return ek, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// A key lost in a power cut would lock the machine out of reporting
	// (the server holds the old one): written whole or not at all.
	return k, atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// Run sends queued reports until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	r.mu.Lock()
	r.running++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running--
		r.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case rep := <-r.q:
			r.send(ctx, rep)
		}
	}
}

// UseMemberCert makes the reporter sign with this member certificate and
// key when they exist (default: pith cluster issue's paths on a node).
func (r *Reporter) UseMemberCert(certFile, keyFile string) {
	r.certFile, r.certKeyFile = certFile, keyFile
}

// signer is the member certificate when the node has one (read at each
// report: a renewed certificate is picked up), else the report key.
func (r *Reporter) signer() channels.ReportSigner {
	s := channels.ReportSigner{Key: r.key}
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return s
	}
	keyPEM, err := os.ReadFile(r.certKeyFile)
	if err != nil {
		return s
	}
	certs, err := pki.ParseCerts(certPEM)
	if err != nil || len(certs) == 0 {
		return s
	}
	k, err := pki.ParseKey(keyPEM)
	if err != nil {
		return s
	}
	return channels.ReportSigner{Cert: certs[0].Raw, CertKey: k}
}

func (r *Reporter) send(ctx context.Context, rep channels.Report) {
	defer func() {
		r.mu.Lock()
		r.unsent--
		r.mu.Unlock()
	}()
	if err := atomicfile.WriteFile(r.seqFile, []byte(strconv.FormatUint(rep.Seq, 10)+"\n"), 0o600); err != nil {
		r.log.Warn("update: report sequence", "err", err)
	}
	body, err := r.signer().Sign(rep)
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, reportTimeout)
		err = r.client.SendReport(sctx, body)
		cancel()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil && !r.failing {
		r.log.Warn("update: report failed (reports are best-effort; later ones are tried)", "event", rep.Event, "server", r.a.cfg.Server, "err", err)
	}
	r.failing = err != nil
}

// Report queues an event; it never blocks (a full queue drops its oldest).
func (r *Reporter) Report(event, version, reason string) {
	r.mu.Lock()
	r.seq = max(r.seq+1, uint64(time.Now().UnixNano()))
	rep := channels.Report{
		Machine: r.a.cfg.MachineID, Group: r.a.cfg.Group, Channel: r.a.cfg.Channel, Arch: r.a.cfg.Platform,
		Running: r.a.cfg.Running, Version: version, Event: event, Reason: reason, Time: time.Now().UTC(), Seq: r.seq,
	}
	r.unsent++
	r.mu.Unlock()
	for {
		select {
		case r.q <- rep:
			return
		default:
		}
		select {
		case <-r.q:
			r.mu.Lock()
			r.unsent--
			r.mu.Unlock()
		default:
		}
	}
}

// Flush waits until every queued report was sent (or given up on), at
// most until ctx ends; at once when nothing is sending them (Run).
func (r *Reporter) Flush(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.Lock()
		n, running := r.unsent, r.running
		r.mu.Unlock()
		if n <= 0 || running == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// flushFirst lets the reporter send what is queued before the machine
// reboots, at most flushTimeout: the reports of a node going down
// (rebooting, unhealthy) would otherwise be lost with it.
type flushFirst struct {
	r    *Reporter
	next Rebooter
}

func (f flushFirst) Reboot(ctx context.Context, reason string) error {
	fctx, cancel := context.WithTimeout(ctx, flushTimeout)
	f.r.Flush(fctx)
	cancel()
	return f.next.Reboot(ctx, reason)
}

// decided hears the rollout's decision on an offered release.
func (r *Reporter) decided(offered string, d channels.Decision, err error) {
	r.mu.Lock()
	r.offered, r.taking, r.checking = offered, d.Take, false
	r.mu.Unlock()
	// pithctl update status says why the machine does not take the offer.
	// The gate runs inside the agent's check, without its lock.
	r.a.mu.Lock()
	r.a.status.HeldBack = ""
	if err == nil && d.Take == "" {
		r.a.status.Available, r.a.status.HeldBack = offered, d.Reason
	}
	r.a.mu.Unlock()
	switch {
	case err != nil:
		r.Report(channels.EventChecked, offered, "rollout: "+err.Error())
	case d.Take == "":
		r.Report(channels.EventChecked, offered, "held back: "+d.Reason)
	case d.Take != offered:
		r.Report(channels.EventChecked, offered, "taking "+d.Take+" first: "+d.Reason)
	default:
		r.Report(channels.EventChecked, offered, "")
	}
}

// notify maps the agent's phases and history to report events. The agent
// may hold its lock: only the reporter's own state is touched here.
func (r *Reporter) notify(p node.UpdatePhase, ev *node.UpdateEvent) {
	if ev != nil {
		switch ev.Kind {
		case "applied":
			r.Report(channels.EventWritten, ev.Version, ev.Detail)
		case "updated":
			r.Report(channels.EventGood, ev.Version, ev.Detail)
		case "unhealthy":
			r.Report(channels.EventUnhealthy, ev.Version, ev.Detail)
		case "rollback":
			r.Report(channels.EventRolledBack, ev.Version, ev.Detail)
		}
		return
	}
	r.mu.Lock()
	taking, wasChecking := r.taking, r.checking
	r.checking = p == node.PhaseChecking
	r.mu.Unlock()
	switch p {
	case node.PhaseChecking:
		// A new check: the last one's hold-back no longer says anything
		// (setPhase calls without the agent's lock).
		r.a.mu.Lock()
		r.a.status.HeldBack = ""
		r.a.mu.Unlock()
	case node.PhaseIdle:
		if wasChecking {
			// The check ended without a rollout decision: up to date.
			r.Report(channels.EventChecked, "", "")
		}
	case node.PhaseDownloading:
		r.Report(channels.EventDownloading, taking, "")
	case node.PhaseRebooting:
		r.Report(channels.EventRebooting, r.pendingVersion(), "")
	case node.PhaseVerifying:
		r.Report(channels.EventRunning, r.pendingVersion(), "")
	}
}

// pendingVersion is the update a reboot is for; the agent calls notify
// for phases without its lock held.
func (r *Reporter) pendingVersion() string {
	if p := r.a.Status().Pending; p != nil {
		return p.Version
	}
	return ""
}
