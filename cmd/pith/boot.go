package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pith-os/pith/vm"
)

// bootOpts are `pith boot`'s flags.
type bootOpts struct {
	image, userData, firmware, state, diskSize, forwards, marker string
	arch                                                         string
	secureBootKeys                                               string
	extraDisks                                                   extraDisks
	nodes, memory, cpus                                          int
	detach, supervise, quiet, secureBoot, tpm                    bool
	secureBootSet                                                bool // --secure-boot given, true or false
}

// LoginMarker is what the console shows once a node is up (serial getty).
const loginMarker = "login:"

// stopGrace is how long a node gets to power off cleanly on `pith boot stop`
// or Ctrl-C before QEMU is told to quit (TCG is slow to shut systemd down).
const stopGrace = 60 * time.Second

func init() {
	o := &bootOpts{}
	boot := &cobra.Command{
		Use:   "boot",
		Short: "Boot Pith machines under QEMU (KVM when usable, TCG otherwise)",
		Long: `Boot N Pith machines, each on a copy-on-write overlay of the image, with
the serial console logged per node, user-data passed through QEMU fw_cfg
(opt/org.pith/user-data), a private network between the nodes that stays
inside this process (10.77.0.11, .12, ...), and SSH (22), the KV (2379) and
the fleet API (49153) forwarded to 127.0.0.1 ports printed per node. An SSH
key pair is made in the state directory and authorized for user core.

--extra-disk SIZE (repeatable) gives each node blank disks after its boot
disk: the guest sees them as /dev/vdb, /dev/vdc, ... and, stably, as
/dev/disk/by-id/virtio-pith-extra-1, -2, ...: the names for an Ignition
storage config. Like the overlays, they live in the node's state directory
and are blank again on every pith boot.

Without --detach, pith boot stays in the foreground: Ctrl-C powers the nodes
off. With --detach, the machines run under a background supervisor until
'pith boot stop'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBoot(cmd, o) },
	}
	f := boot.Flags()
	f.StringVar(&o.image, "image", "_out/pith.qcow2", "disk image to boot (qcow2 or raw; never modified)")
	f.IntVar(&o.nodes, "nodes", 1, "number of machines")
	f.StringVar(&o.userData, "user-data", "", "cloud-config, script or Ignition file for every node")
	f.StringVar(&o.firmware, "firmware", "", "bios (SeaBIOS, the default on amd64) or uefi (OVMF; AAVMF on arm64, which has no BIOS)")
	o.archFlags(f)
	f.IntVar(&o.memory, "memory", 1024, "memory per node in MiB")
	f.IntVar(&o.cpus, "cpus", 1, "virtual CPUs per node")
	o.diskFlags(f)
	f.StringVar(&o.forwards, "forward", "22,2379,49153", "guest TCP ports forwarded to 127.0.0.1")
	f.StringVar(&o.marker, "wait-for", loginMarker, "console text that means node1 is up")
	o.secureBootFlags(f)
	f.BoolVar(&o.detach, "detach", false, "leave the machines running in the background after node1 is up")
	f.BoolVar(&o.quiet, "quiet", false, "do not copy node1's console to the terminal")
	f.BoolVar(&o.supervise, "supervise", false, "internal: run as the background supervisor of --detach")
	f.MarkHidden("supervise")
	boot.PersistentFlags().StringVar(&o.state, "state", "_out/boot", "state directory (overlays, logs, sockets, SSH key)")

	boot.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the machines of a pith boot state directory",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return bootStatus(cmd.OutOrStdout(), o.state) },
	}, &cobra.Command{
		Use:   "ssh NODE [-- COMMAND...]",
		Short: "Log in to a node (node1, node2, ... or 1, 2, ...) or run a command there",
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return bootSSH(cmd, o.state, args[0], args[1:]) },
	}, &cobra.Command{
		Use:   "stop",
		Short: "Power the machines off (ACPI, then quit after a grace period)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return bootStop(cmd.OutOrStdout(), o.state) },
	})
	rootCmd.AddCommand(boot)
}

// running returns the supervisor pid of a live cluster in dir, or 0.
func running(dir string) int {
	st, err := vm.LoadState(dir)
	if err != nil || st.Supervisor == 0 {
		return 0
	}
	if syscall.Kill(st.Supervisor, 0) != nil {
		return 0
	}
	return st.Supervisor
}

func runBoot(cmd *cobra.Command, o *bootOpts) error {
	out := cmd.OutOrStdout()
	o.secureBootSet = cmd.Flags().Changed("secure-boot")
	if pid := running(o.state); pid != 0 && pid != os.Getpid() {
		return fmt.Errorf("machines already running from %s (supervisor pid %d): `pith boot stop` first, or use another --state", o.state, pid)
	}
	if o.detach && !o.supervise {
		return bootDetached(cmd, o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)

	if err := resetState(o.state); err != nil {
		return err
	}
	cc, err := o.clusterConfig(ctx, func(f string, a ...any) { fmt.Fprintf(out, f+"\n", a...) })
	if err != nil {
		return err
	}
	fmt.Fprintln(out, cc.Node.Accel.Notice())
	c, err := vm.StartCluster(ctx, cc)
	if err != nil {
		return err
	}
	stop := func(why string) {
		fmt.Fprintf(out, "%s: powering off %d node(s) (up to %s, then quit)\n", why, len(c.Machines), stopGrace)
		c.Stop(stopGrace)
		os.Remove(filepath.Join(c.Dir, vm.StateFile))
		fmt.Fprintln(out, "all nodes stopped")
	}
	if o.supervise {
		// The detached parent follows the console; we only keep the nodes.
		s := <-sig
		stop(s.String())
		return nil
	}
	printNodes(out, c.Dir)
	m := c.Machines[0]
	follow := io.Writer(out)
	if o.quiet {
		follow = nil
	}
	fmt.Fprintf(out, "--- %s console (%s) ---\n", m.Config.Name, m.SerialLog)
	waitCtx, waitCancel := context.WithCancel(ctx)
	go func() {
		select {
		case s := <-sig:
			sig <- s
			waitCancel()
		case <-waitCtx.Done():
		}
	}()
	_, _, err = vm.Console{Path: m.SerialLog}.WaitFor(waitCtx, 0, m.Done(), follow, o.marker)
	waitCancel()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			stop("interrupted")
			return nil
		}
		c.Stop(0)
		return fmt.Errorf("%s did not come up: %v (see %s)", m.Config.Name, err, m.SerialLog)
	}
	fmt.Fprintf(out, "\n--- %s is up after %s ---\n", m.Config.Name, time.Since(m.Started).Round(time.Second))
	sctx, scancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	waitSSH(sctx, out, c.Dir, m.Config.Name)
	scancel()
	printLogin(out, c.Dir)
	fmt.Fprintln(out, "Press Ctrl-C to power the nodes off.")
	s := <-sig
	stop(s.String())
	return nil
}

// resetState removes the previous run's node directories (fresh disks on
// every boot) and keeps the SSH key.
func resetState(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "node") {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	os.Remove(filepath.Join(dir, vm.StateFile))
	return nil
}

// bootDetached starts `pith boot --supervise` in its own session, waits for
// its cluster.json, then follows node1's console until the marker.
func bootDetached(cmd *cobra.Command, o *bootOpts) error {
	out := cmd.OutOrStdout()
	if err := resetState(o.state); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"boot", "--supervise"}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if f.Name != "detach" && f.Name != "supervise" {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	if !cmd.Flags().Changed("state") {
		args = append(args, "--state="+o.state)
	}
	logPath := filepath.Join(o.state, "supervisor.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	sup := exec.Command(self, args...)
	sup.Stdout, sup.Stderr = logf, logf
	sup.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := sup.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { sup.Wait(); close(exited) }()
	var st *vm.State
	for st == nil {
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("boot supervisor failed: %s", strings.TrimSpace(string(b)))
		case <-time.After(200 * time.Millisecond):
		}
		if s, err := vm.LoadState(o.state); err == nil && s.Supervisor == sup.Process.Pid {
			st = s
		}
	}
	if b, _ := os.ReadFile(logPath); len(b) > 0 {
		out.Write(b)
	}
	printNodes(out, o.state)
	n := st.Nodes[0]
	fmt.Fprintf(out, "--- %s console (%s) ---\n", n.Name, n.SerialLog)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	follow := io.Writer(out)
	if o.quiet {
		follow = nil
	}
	_, _, err = vm.Console{Path: n.SerialLog}.WaitFor(ctx, 0, exited, follow, o.marker)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(out, "\ninterrupted: the machines keep running; `pith boot stop --state "+o.state+"` stops them")
			return nil
		}
		return fmt.Errorf("%s did not come up: %v (see %s and %s)", n.Name, err, n.SerialLog, logPath)
	}
	fmt.Fprintf(out, "\n--- %s is up after %s ---\n", n.Name, time.Since(n.Started).Round(time.Second))
	waitSSH(ctx, out, o.state, n.Name)
	printLogin(out, o.state)
	fmt.Fprintf(out, "Stop the machines with: pith boot stop --state %s\n", o.state)
	return nil
}

// waitSSH waits (up to sshWait) until the node accepts the state's key: the
// login prompt can come before sshd has host keys and the user's key.
func waitSSH(ctx context.Context, w io.Writer, dir, node string) {
	st, err := vm.LoadState(dir)
	if err != nil {
		return
	}
	n, err := st.Node(node)
	if err != nil {
		return
	}
	key, _, err := vm.EnsureKey(dir)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sshWait)
	defer cancel()
	start := time.Now()
	fmt.Fprintf(w, "waiting for SSH on 127.0.0.1:%d...\n", n.Ports[22])
	for {
		r, err := vm.RunSSH(ctx, n.Ports[22], st.User, key, "true")
		if err == nil && r.ExitStatus == 0 {
			fmt.Fprintf(w, "SSH is up (%s later)\n", time.Since(start).Round(time.Second))
			return
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(w, "SSH did not answer within %s (last: %v); the node may still be applying its user-data\n", sshWait, err)
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// sshWait bounds waitSSH: first boot under TCG generates host keys slowly.
const sshWait = 10 * time.Minute

func printNodes(w io.Writer, dir string) {
	st, err := vm.LoadState(dir)
	if err != nil {
		fmt.Fprintln(w, err)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	extra := slices.ContainsFunc(st.Nodes, func(n vm.Info) bool { return len(n.ExtraDisks) > 0 })
	head := "NODE\tPID\tSTATE\tPRIVATE\tFORWARDS (127.0.0.1)\tCONSOLE LOG"
	if extra {
		head += "\tEXTRA DISKS (/dev/disk/by-id/)"
	}
	fmt.Fprintln(tw, head)
	for _, n := range st.Nodes {
		state := "running"
		if syscall.Kill(n.PID, 0) != nil {
			state = "stopped"
		}
		row := fmt.Sprintf("%s\t%d\t%s\t%s\t%s\t%s", n.Name, n.PID, state, n.IPv4, forwardList(n.Ports), n.SerialLog)
		if extra {
			row += "\t" + extraDiskList(n.ExtraDisks)
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
}

func forwardList(ports map[int]int) string {
	names := map[int]string{22: "ssh", 2379: "kv", 49153: "fleet"}
	var guest []int
	for g := range ports {
		guest = append(guest, g)
	}
	slices.Sort(guest)
	var s []string
	for _, g := range guest {
		name := names[g]
		if name == "" {
			name = strconv.Itoa(g)
		}
		s = append(s, fmt.Sprintf("%s=%d", name, ports[g]))
	}
	return strings.Join(s, " ")
}

func printLogin(w io.Writer, dir string) {
	st, err := vm.LoadState(dir)
	if err != nil {
		return
	}
	stateFlag := ""
	if dir != "_out/boot" {
		stateFlag = " --state " + dir
	}
	fmt.Fprintln(w, "Log in:")
	for _, n := range st.Nodes {
		fmt.Fprintf(w, "  pith boot ssh%s %s      (or: ssh -i %s -p %d %s@127.0.0.1)\n", stateFlag, n.Name, st.Key, n.Ports[22], st.User)
	}
	if p, ok := st.Nodes[0].Ports[2379]; ok {
		fmt.Fprintf(w, "KV (etcd v2 API) of node1: http://127.0.0.1:%d/v2/keys\n", p)
	}
}

func bootStatus(w io.Writer, dir string) error {
	st, err := vm.LoadState(dir)
	if err != nil {
		return err
	}
	if running(dir) == 0 {
		fmt.Fprintf(w, "supervisor %d is gone: the machines are stopped\n", st.Supervisor)
	} else {
		fmt.Fprintf(w, "supervisor pid %d, accel %s, ssh key %s (user %s)\n", st.Supervisor, st.Accel, st.Key, st.User)
	}
	printNodes(w, dir)
	return nil
}

func bootSSH(cmd *cobra.Command, dir, node string, command []string) error {
	st, err := vm.LoadState(dir)
	if err != nil {
		return err
	}
	n, err := st.Node(node)
	if err != nil {
		return err
	}
	port, ok := n.Ports[22]
	if !ok {
		return fmt.Errorf("%s has no SSH forward (see --forward)", n.Name)
	}
	if sshBin, err := exec.LookPath("ssh"); err == nil {
		args := []string{"ssh", "-i", st.Key, "-p", strconv.Itoa(port),
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
			"-o", "IdentitiesOnly=yes", st.User + "@127.0.0.1"}
		if len(command) > 0 {
			args = append(args, "--")
			args = append(args, command...)
		}
		return syscall.Exec(sshBin, args, os.Environ())
	}
	if len(command) == 0 {
		return errors.New("no ssh client installed for an interactive login: install openssh-client, or pass a command after --")
	}
	key, _, err := vm.EnsureKey(dir)
	if err != nil {
		return err
	}
	res, err := vm.RunSSH(cmd.Context(), port, st.User, key, strings.Join(command, " "))
	if err != nil {
		return err
	}
	cmd.OutOrStdout().Write(res.Stdout)
	cmd.ErrOrStderr().Write(res.Stderr)
	if res.ExitStatus != 0 {
		os.Exit(res.ExitStatus)
	}
	return nil
}

func bootStop(w io.Writer, dir string) error {
	st, err := vm.LoadState(dir)
	if err != nil {
		return err
	}
	pid := running(dir)
	if pid != 0 {
		fmt.Fprintf(w, "stopping %d node(s) (supervisor pid %d)...\n", len(st.Nodes), pid)
		syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(stopGrace + 30*time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL) // its QEMUs die with it (Pdeathsig)
		}
	}
	// QEMU dies with its supervisor; make sure, by pid, of ours only.
	for _, n := range st.Nodes {
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", n.PID)); err == nil && strings.Contains(string(cmdline), n.QMP) {
			syscall.Kill(n.PID, syscall.SIGKILL)
		}
	}
	os.Remove(filepath.Join(dir, vm.StateFile))
	fmt.Fprintln(w, "stopped")
	return nil
}
