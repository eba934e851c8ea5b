package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/pki"
)

// defaultFleetDir is where the channel server keeps reports and rollouts
// when --state is not given: inside the repository, in a dot directory the
// server never serves.
func defaultFleetDir(repo string) string { return filepath.Join(repo, ".fleet") }

// fleetOptions are pith channel serve's fleet flags.
type fleetOptions struct {
	state         string
	sampleEvery   time.Duration
	clusterCA     string
	requireMember bool
}

func (o *fleetOptions) flags(f *pflag.FlagSet) {
	f.StringVar(&o.state, "state", "", "fleet state directory: reports, rollouts, history (default REPO/.fleet)")
	f.DurationVar(&o.sampleEvery, "sample-every", time.Minute, "spacing of the dashboard's versions-over-time samples")
	f.StringVar(&o.clusterCA, "cluster-ca", "", "cluster CA certificate (pith cluster init's ca.crt): nodes with a member certificate report with it")
	f.BoolVar(&o.requireMember, "require-member", false, "refuse reports not signed with a member certificate of --cluster-ca")
}

// startFleet opens the fleet state for `pith channel serve` and runs its
// housekeeping: fleet.json written every few seconds when reports came in
// (halts are written at once), a history sample every sampleEvery, and
// machines an operator asked to forget. The returned func stops it and
// writes the state one last time.
func startFleet(s *channels.Server, repo string, o fleetOptions, logger *log.Logger) (func(), error) {
	state := o.state
	if state == "" {
		state = defaultFleetDir(repo)
	}
	f, err := channels.OpenFleet(state)
	if err != nil {
		return nil, err
	}
	if o.sampleEvery > 0 {
		f.SampleEvery = o.sampleEvery
	}
	if o.clusterCA != "" {
		b, err := os.ReadFile(o.clusterCA)
		if err != nil {
			return nil, fmt.Errorf("--cluster-ca: %w", err)
		}
		certs, err := pki.ParseCerts(b)
		if err != nil {
			return nil, fmt.Errorf("--cluster-ca %s: %w", o.clusterCA, err)
		}
		f.ClusterCAs = x509.NewCertPool()
		for _, c := range certs {
			f.ClusterCAs.AddCert(c)
		}
	}
	if o.requireMember && f.ClusterCAs == nil {
		return nil, errors.New("--require-member needs --cluster-ca (the CA of the cluster whose members report)")
	}
	f.RequireMember = o.requireMember
	s.Fleet = f
	logger.Printf("fleet state in %s: reports at /v1/report, rollouts at /v1/rollout/<channel>, dashboard at /", state)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		flush := time.NewTicker(2 * time.Second)
		defer flush.Stop()
		sample := time.NewTicker(f.SampleEvery)
		defer sample.Stop()
		f.Sample()
		for {
			select {
			case <-stop:
				if err := f.Flush(); err != nil {
					logger.Printf("fleet state: %v", err)
				}
				return
			case <-sample.C:
				f.Sample()
			case <-flush.C:
				forgetRequested(f, state, logger)
				if err := f.Flush(); err != nil {
					logger.Printf("fleet state: %v", err)
				}
			}
		}
	}()
	return func() { close(stop); <-done }, nil
}

// forgetRequested applies `pith channel forget`: the CLI leaves a file per
// machine, the server (the only writer of fleet.json) drops the machine.
func forgetRequested(f *channels.Fleet, state string, logger *log.Logger) {
	dir := filepath.Join(state, "forget")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if f.Forget(e.Name()) {
			logger.Printf("forgot machine %s (its next report binds a new key)", e.Name())
		}
		os.Remove(filepath.Join(dir, e.Name()))
	}
}

func forgetCmd() *cobra.Command {
	var repo, state string
	cmd := &cobra.Command{
		Use:   "forget --repo DIR MACHINE-ID...",
		Short: "Drop machines from the fleet state, e.g. a reinstalled machine whose new report key is refused",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := fleetDir(repo, state)
			if err != nil {
				return err
			}
			fd := filepath.Join(dir, "forget")
			if err := os.MkdirAll(fd, 0o755); err != nil {
				return err
			}
			for _, id := range args {
				if strings.ContainsAny(id, "/\x00") || id == "." || id == ".." || id == "" {
					return fmt.Errorf("machine id %q: not a machine id", id)
				}
				if err := os.WriteFile(filepath.Join(fd, id), nil, 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the running channel server forgets %s within a few seconds\n", strings.Join(args, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "release repository directory")
	cmd.Flags().StringVar(&state, "state", "", "fleet state directory (default REPO/.fleet)")
	return cmd
}

func fleetDir(repo, state string) (string, error) {
	if state != "" {
		return state, nil
	}
	if repo == "" {
		return "", errors.New("--repo DIR (or --state DIR) is required")
	}
	return defaultFleetDir(repo), nil
}

// rolloutOpts are the flags every rollout subcommand shares.
type rolloutOpts struct{ repo, state, channel string }

// load reads the channel's rollout, or a new active one when there is none.
func (o *rolloutOpts) load() (string, *channels.Rollout, error) {
	dir, err := fleetDir(o.repo, o.state)
	if err != nil {
		return "", nil, err
	}
	if o.channel == "" {
		return "", nil, errors.New("--channel is required")
	}
	r, err := channels.ReadRollout(dir, o.channel)
	if errors.Is(err, os.ErrNotExist) {
		return dir, &channels.Rollout{Channel: o.channel, State: channels.RolloutActive, Halt: channels.DefaultHaltRule, Start: time.Now().UTC()}, nil
	}
	return dir, r, err
}

// rolloutHalted returns the channel's halt when it is for r's version and generation.
func rolloutHalted(dir string, r *channels.Rollout) (channels.Halt, bool) {
	h, ok, err := channels.ReadHalt(dir, r.Channel)
	return h, err == nil && ok && h.Version == r.Version && h.Generation == r.Generation
}

// showRollout prints the rollout's state.
func showRollout(w io.Writer, dir string, r *channels.Rollout) {
	now := time.Now()
	state := r.State
	h, isHalted := rolloutHalted(dir, r)
	if isHalted {
		state = channels.RolloutHalted
	}
	if r.Version != "" {
		fmt.Fprintf(w, "channel %s: rollout of %s %s at %.1f%% (target %g%%", r.Channel, r.Version, state, r.PercentAt(now), r.Percent)
		if r.Over > 0 {
			fmt.Fprintf(w, ", ramp from %g%% over %s", r.From, r.Over)
		}
		fmt.Fprintln(w, ")")
	} else {
		fmt.Fprintf(w, "channel %s: no rollout (machines take what the channel offers)\n", r.Channel)
	}
	if isHalted {
		fmt.Fprintf(w, "  halted %s: %s\n", h.Time.Format(time.RFC3339), h.Reason)
	}
	if r.Halt.Disabled {
		fmt.Fprintln(w, "  automatic halt: off")
	} else {
		fmt.Fprintf(w, "  automatic halt: more than %d of the first %d, or more than %g%%, of the machines that installed it failed\n", r.Halt.MaxFirst, r.Halt.First, r.Halt.MaxPercent)
	}
	if r.Barrier != "" {
		fmt.Fprintf(w, "  barrier: %s\n", r.Barrier)
	}
	for g, v := range r.Pins {
		fmt.Fprintf(w, "  pin: group %s stays on %s\n", g, v)
	}
}

// saveRollout stores r and shows it. Generation changes only where a halt
// is lifted (a new version, resume): pausing, pinning or a barrier keep a
// halt.
func saveRollout(cmd *cobra.Command, dir string, r *channels.Rollout) error {
	if err := channels.WriteRollout(dir, r); err != nil {
		return err
	}
	showRollout(cmd.OutOrStdout(), dir, r)
	return nil
}

func rolloutCmd() *cobra.Command {
	var (
		version string
		percent float64
		over    time.Duration
		halt    = channels.DefaultHaltRule
		noHalt  bool
	)
	o := &rolloutOpts{}
	cmd := &cobra.Command{
		Use:   "rollout --repo DIR --channel NAME --version V --percent P [--over DURATION]",
		Short: "Phase a release in: only a share of machines takes it, growing over time; halts by itself on failures",
		Long: `Machines take the version only when their stable place (a hash of machine ID
and version, 0-100) is under the rollout's percentage; --over ramps it
linearly from where it is now (0 for a new version) to --percent. The server
halts the rollout when more than --halt-max-first of the first --halt-first
machines that installed the version, or more than --halt-max-percent of them,
roll back or fail health. The rollout can only hold machines back: what a
machine installs is still only what the signed channel manifest offers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, r, err := o.load()
			if err != nil {
				return err
			}
			if version == "" || !cmd.Flags().Changed("percent") {
				return errors.New("--version and --percent are required (or use pause, resume, pin, barrier, status)")
			}
			if o.repo != "" {
				if _, err := os.Stat(filepath.Join(o.repo, version, "manifest.json")); err != nil {
					return fmt.Errorf("version %s was not released in %s: %w", version, o.repo, err)
				}
			}
			now := time.Now().UTC()
			from, same := 0.0, r.Version == version
			if same {
				if h, isHalted := rolloutHalted(dir, r); isHalted {
					return fmt.Errorf("the rollout of %s is halted (%s); look at the failures, then pith release rollout resume", version, h.Reason)
				}
				from = r.PercentAt(now) // continue the ramp from where it is
			}
			if percent < from {
				return fmt.Errorf("--percent %g is below the %.1f%% already admitted; machines that took %s keep it (pause, or publish a fix)", percent, from, version)
			}
			r.Percent, r.From, r.Over, r.Elapsed, r.Start = percent, from, over, 0, now
			if !same {
				// A new rollout: failures count from now, a new generation
				// leaves the last version's halt behind.
				r.Version, r.State, r.Since = version, channels.RolloutActive, now
				r.Generation++
			}
			if cmd.Flags().Changed("halt-first") || cmd.Flags().Changed("halt-max-first") || cmd.Flags().Changed("halt-max-percent") || noHalt {
				r.Halt = halt
				r.Halt.Disabled = noHalt
			}
			return saveRollout(cmd, dir, r)
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.repo, "repo", "", "release repository directory")
	pf.StringVar(&o.state, "state", "", "fleet state directory the channel server uses (default REPO/.fleet)")
	pf.StringVar(&o.channel, "channel", "", "channel")
	f := cmd.Flags()
	f.StringVar(&version, "version", "", "release to roll out")
	f.Float64Var(&percent, "percent", 0, "share of machines (0-100) that take it at the end of the ramp")
	f.DurationVar(&over, "over", 0, "ramp linearly to --percent over this long (0: at once)")
	f.IntVar(&halt.First, "halt-first", halt.First, "the first N machines that install it are judged strictly")
	f.IntVar(&halt.MaxFirst, "halt-max-first", halt.MaxFirst, "halt when more than this many of the first N fail")
	f.Float64Var(&halt.MaxPercent, "halt-max-percent", halt.MaxPercent, "after the first N, halt when more than this percentage fails")
	f.BoolVar(&noHalt, "no-halt", false, "never halt automatically")
	cmd.AddCommand(rolloutPauseCmd(o), rolloutResumeCmd(o), rolloutPinCmd(o), rolloutBarrierCmd(o), rolloutStatusCmd(o))
	return cmd
}

// rolloutPauseCmd stops admitting machines.
func rolloutPauseCmd(o *rolloutOpts) *cobra.Command {
	pause := &cobra.Command{
		Use: "pause --channel NAME", Short: "Stop admitting more machines (those admitted keep the release)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, r, err := o.load()
			if err != nil {
				return err
			}
			if r.Version == "" {
				return fmt.Errorf("channel %s has no rollout to pause", o.channel)
			}
			if r.State == channels.RolloutPaused {
				return fmt.Errorf("the rollout of %s is already paused", r.Version)
			}
			now := time.Now().UTC()
			r.Elapsed += max(0, now.Sub(r.Start))
			r.Start, r.State = now, channels.RolloutPaused
			return saveRollout(cmd, dir, r)
		},
	}
	return pause
}

// rolloutResumeCmd continues a paused or halted rollout.
func rolloutResumeCmd(o *rolloutOpts) *cobra.Command {
	resume := &cobra.Command{
		Use: "resume --channel NAME", Short: "Continue a paused or halted rollout (failures so far no longer count towards a halt)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, r, err := o.load()
			if err != nil {
				return err
			}
			if r.Version == "" {
				return fmt.Errorf("channel %s has no rollout to resume", o.channel)
			}
			h, wasHalted := rolloutHalted(dir, r)
			if r.State == channels.RolloutActive && !wasHalted {
				return fmt.Errorf("the rollout of %s is not paused or halted", r.Version)
			}
			now := time.Now().UTC()
			// The ramp goes on from where the pause or the halt left it.
			switch {
			case r.State == channels.RolloutPaused:
				r.Start = now
			case wasHalted:
				r.Elapsed += max(0, h.Time.Sub(r.Start))
				r.Start = now
			}
			r.State = channels.RolloutActive
			if wasHalted {
				r.Since = now
				r.Generation++
			}
			return saveRollout(cmd, dir, r)
		},
	}
	return resume
}

// rolloutPinCmd keeps a group on a version.
func rolloutPinCmd(o *rolloutOpts) *cobra.Command {
	var group, pinVersion string
	var unpin bool
	pin := &cobra.Command{
		Use: "pin --channel NAME --group G --version V | --unpin", Short: "Keep a group of machines (their reboot group) on a version", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, r, err := o.load()
			if err != nil {
				return err
			}
			if group == "" {
				return errors.New("--group is required")
			}
			switch {
			case unpin:
				delete(r.Pins, group)
			case pinVersion == "":
				return errors.New("--version (or --unpin) is required")
			default:
				if r.Pins == nil {
					r.Pins = map[string]string{}
				}
				r.Pins[group] = pinVersion
			}
			return saveRollout(cmd, dir, r)
		},
	}
	pin.Flags().StringVar(&group, "group", "", "group (the machines' reboot group; \"default\" when they set none)")
	pin.Flags().StringVar(&pinVersion, "version", "", "version the group stays on")
	pin.Flags().BoolVar(&unpin, "unpin", false, "remove the group's pin")
	return pin
}

// rolloutBarrierCmd sets the version every machine runs before anything newer.
func rolloutBarrierCmd(o *rolloutOpts) *cobra.Command {
	var barrierVersion string
	barrier := &cobra.Command{
		Use: "barrier --channel NAME --version V", Short: "Make every machine run V before anything newer (empty --version clears it)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, r, err := o.load()
			if err != nil {
				return err
			}
			if barrierVersion != "" && o.repo != "" {
				if _, err := os.Stat(filepath.Join(o.repo, barrierVersion, "manifest.json")); err != nil {
					return fmt.Errorf("barrier %s was not released in %s: %w", barrierVersion, o.repo, err)
				}
			}
			r.Barrier = barrierVersion
			return saveRollout(cmd, dir, r)
		},
	}
	barrier.Flags().StringVar(&barrierVersion, "version", "", "barrier release")
	return barrier
}

// rolloutStatusCmd shows the rollout.
func rolloutStatusCmd(o *rolloutOpts) *cobra.Command {
	status := &cobra.Command{
		Use: "status --channel NAME", Short: "Show the rollout", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, r, err := o.load()
			if err != nil {
				return err
			}
			showRollout(cmd.OutOrStdout(), dir, r)
			return nil
		},
	}
	return status
}
