package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/vm"
	"github.com/pith-os/pith/vm/walkthrough"
)

// demoOpts are `pith demo`'s flags.
type demoOpts struct {
	imageDir, state, cache, releaseKey, secureBootKeys, binDir string
	nodes                                                      int
	supervise                                                  bool
}

// demoReady is the supervisor's last line once the walkthrough is done.
const demoReady = "pith demo: ready"

func init() {
	o := &demoOpts{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Boot a 3-node cluster and walk through discovery, the KV, scheduling, failover and updates",
		Long: `Runs the walkthrough on QEMU nodes booted from the image in --image-dir:
a discovery token, three nodes from one cloud-config, the KV and the
scheduler's machines, the mongo@.service template with Conflicts, failover
when the node running mongo@1 is switched off, and a new release published
to the stable channel that the nodes apply one at a time (etcd-lock).

The machines, the discovery service and the channel server keep running in
the background afterwards; 'pith boot stop --state DIR' stops all of them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.supervise {
				return demoSupervise(cmd.OutOrStdout(), o)
			}
			return demoStart(cmd, o)
		},
	}
	cacheDefault := ""
	if d, err := os.UserCacheDir(); err == nil {
		cacheDefault = filepath.Join(d, "pith")
	}
	f := cmd.Flags()
	f.StringVar(&o.imageDir, "image-dir", "_out", "directory of the built image (pith.qcow2, pith.img, pith.manifest.json)")
	f.StringVar(&o.state, "state", "_out/demo", "state directory (nodes, release repository, logs)")
	f.StringVar(&o.cache, "cache", cacheDefault, "pith build cache (the next release is built from it)")
	f.StringVar(&o.releaseKey, "release-key", "", "private release key the image trusts (default: CACHE/release-key/pith-release.key, made by make image)")
	f.StringVar(&o.secureBootKeys, "secure-boot-keys", "", "pith keygen --secure-boot directory a signed image was built with, to sign its next release (default: CACHE/secure-boot-keys, made by make image)")
	f.StringVar(&o.binDir, "bin-dir", "", "directory of pith, pithctl and pith-hello (default: this executable's)")
	f.IntVar(&o.nodes, "nodes", 3, "number of machines (at least 3)")
	f.BoolVar(&o.supervise, "supervise", false, "internal: run the walkthrough in the background")
	f.MarkHidden("supervise")
	cmd.AddCommand(&cobra.Command{
		Use:    "relay HOST:PORT",
		Short:  "internal: copy stdin/stdout to a TCP address (QEMU guestfwd)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE:   func(_ *cobra.Command, args []string) error { return relay(args[0], os.Stdin, os.Stdout) },
	})
	rootCmd.AddCommand(cmd)
}

func (o *demoOpts) resolve() error {
	if o.binDir == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		o.binDir = filepath.Dir(self)
	}
	if o.releaseKey == "" {
		o.releaseKey = filepath.Join(o.cache, "release-key", "pith-release.key")
	}
	if o.secureBootKeys == "" {
		o.secureBootKeys = filepath.Join(o.cache, "secure-boot-keys")
	}
	var err error
	for _, p := range []*string{&o.imageDir, &o.state, &o.cache, &o.releaseKey, &o.secureBootKeys, &o.binDir} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return err
			}
		}
	}
	return nil
}

// demoStart starts the supervisor in its own session and shows its log
// until the walkthrough is done.
func demoStart(cmd *cobra.Command, o *demoOpts) error {
	out := cmd.OutOrStdout()
	if err := o.resolve(); err != nil {
		return err
	}
	if pid := running(o.state); pid != 0 {
		return fmt.Errorf("a cluster is already running from %s (supervisor pid %d): `pith boot stop --state %s` (make demo-stop) first", o.state, pid, o.state)
	}
	if err := os.MkdirAll(o.state, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(o.state, "demo.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	sup := exec.Command(self, "demo", "--supervise", "--image-dir", o.imageDir, "--state", o.state, "--cache", o.cache,
		"--release-key", o.releaseKey, "--secure-boot-keys", o.secureBootKeys, "--bin-dir", o.binDir, "--nodes", fmt.Sprint(o.nodes))
	sup.Stdout, sup.Stderr = logf, logf
	sup.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := sup.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- sup.Wait() }()
	fmt.Fprintf(out, "pith demo: running in the background (pid %d), log %s\n", sup.Process.Pid, logPath)

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	rd, err := os.Open(logPath)
	if err != nil {
		return err
	}
	defer rd.Close()
	br := bufio.NewReader(rd)
	var partial string
	supDone := false
	for {
		line, err := br.ReadString('\n')
		partial += line
		if err == nil {
			fmt.Fprint(out, partial)
			done := strings.HasPrefix(partial, demoReady)
			partial = ""
			if done {
				return nil
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		if supDone {
			fmt.Fprint(out, partial)
			return fmt.Errorf("the walkthrough stopped before it was done; see %s", logPath)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(out, "\ninterrupted: the walkthrough goes on in the background (log %s); stop it with `pith boot stop --state %s` (make demo-stop)\n", logPath, o.state)
			return nil
		case <-exited:
			supDone = true // read what is left, then report
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// demoSupervise runs the walkthrough, then keeps the machines and servers
// until SIGTERM (pith boot stop) or SIGINT.
func demoSupervise(out io.Writer, o *demoOpts) error {
	if err := o.resolve(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if strings.ContainsAny(self, " ,'\"") {
		return fmt.Errorf("pith's path %q cannot go into a QEMU guestfwd command: install it under a path without spaces or commas", self)
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	accel := vm.ProbeAccel(context.Background(), "qemu-system-x86_64")
	d, err := walkthrough.New(walkthrough.Config{
		ImageDir: o.imageDir, BinDir: o.binDir, CacheDir: o.cache, ReleaseKey: o.releaseKey, SecureBootKeys: o.secureBootKeys,
		StateDir: o.state, Nodes: o.nodes, Accel: accel, Out: out,
		Relay: func(guest, host string) string {
			return fmt.Sprintf("tcp:%s-cmd:%s demo relay %s", guest, self, host)
		},
	})
	if err != nil {
		return err
	}
	defer d.Close()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- demoSteps(d, o) }()
	select {
	case s := <-sig:
		fmt.Fprintf(out, "%s: stopping the machines and servers\n", s)
		return nil
	case err := <-done:
		if err != nil {
			return fmt.Errorf("pith demo: %w (node consoles: %s/node*/serial.log)", err, o.state)
		}
	}
	fmt.Fprintf(out, "\nThe walkthrough took %s:", time.Since(start).Round(time.Second))
	for _, s := range d.Times {
		fmt.Fprintf(out, " %s %s;", s.Step, s.Took.Round(time.Second))
	}
	fmt.Fprintf(out, "\n%s (the cluster keeps running; supervisor pid %d)\n", demoReady, os.Getpid())
	s := <-sig
	fmt.Fprintf(out, "%s: stopping the machines and servers\n", s)
	return nil
}

func demoSteps(d *walkthrough.Demo, o *demoOpts) error {
	if _, err := d.Discovery(); err != nil {
		return err
	}
	if _, err := d.Boot(); err != nil {
		return err
	}
	if _, err := d.ShowCluster(); err != nil {
		return err
	}
	sc, err := d.Schedule()
	if err != nil {
		return err
	}
	if _, err := d.Failover(sc); err != nil {
		return err
	}
	if _, err := d.Update(); err != nil {
		return err
	}
	if _, err := d.BadRelease(); err != nil {
		return err
	}
	d.Finish(fmt.Sprintf("make demo-stop      (or: pith boot stop --state %s)", o.state))
	return nil
}

// relay copies between in/out (a guest's connection: QEMU's guestfwd
// gives it as the command's stdin and stdout) and addr, closing each
// direction when its source ends.
func relay(addr string, in io.Reader, out io.WriteCloser) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(c, in); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(out, c); out.Close(); done <- struct{}{} }()
	<-done
	<-done
	return nil
}
