package main

// pithctl update status|check|history talks to a node's pithd API;
// pithctl lock status|unlock|set-max edits the cluster's reboot semaphore
// in the KV directly, exactly as locksmithctl does (same key, same JSON).

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/node"
	"github.com/pith-os/pith/rebootlock"
)

func init() { rootCmd.AddCommand(updateCmd(), lockCmd()) }

func updateCmd() *cobra.Command {
	var endpoint string
	cmd := &cobra.Command{Use: "update", Short: "Show and trigger the node's updates"}
	cmd.PersistentFlags().StringVar(&endpoint, "endpoint", "", "the node's pithd API (default: first of PITHCTL_ENDPOINTS, else http://127.0.0.1:2379)")
	addTLSFlags(cmd.PersistentFlags())
	base := func() string {
		if endpoint != "" {
			return strings.TrimSuffix(endpoint, "/")
		}
		return strings.TrimSuffix(defaultEndpoints()[0], "/")
	}
	call := func(method, path string, v any) error {
		b, rt, err := transport(base(), &http.Transport{})
		if err != nil {
			return err
		}
		req, err := http.NewRequest(method, b+path, nil)
		if err != nil {
			return err
		}
		resp, err := (&http.Client{Transport: rt, Timeout: 30 * time.Second}).Do(req)
		if errors.Is(err, errTLSPort) {
			return err
		}
		if err != nil {
			return fmt.Errorf("%v (is pithd running there? set --endpoint)", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s: no update agent on this node (pithd needs --update-server or SERVER= in /etc/coreos/update.conf)", base())
		}
		if resp.StatusCode >= 300 {
			var e map[string]string
			json.NewDecoder(resp.Body).Decode(&e)
			return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, e["error"])
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	status := &cobra.Command{
		Use: "status", Short: "Phase, running and available versions, progress, last error", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st node.UpdateStatus
			if err := call("GET", "/pith/v1/update", &st); err != nil {
				return err
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "Phase:     %s\nRunning:   %s\nChannel:   %s\n", st.Phase, st.Running, st.Channel)
			if st.Available != "" {
				fmt.Fprintf(w, "Available: %s\n", st.Available)
				// The release's fixes from Debian's security archive.
				for _, u := range st.SecurityUpgrades {
					fmt.Fprintf(w, "Security:  %s\n", u)
				}
			}
			if st.HeldBack != "" {
				// The channel's phased rollout: not admitted yet, paused,
				// pinned or halted, and why.
				fmt.Fprintf(w, "Held back: %s\n", st.HeldBack)
			}
			keys := "none (every update is refused)"
			if len(st.TrustedKeys) > 0 {
				keys = strings.Join(st.TrustedKeys, ", ")
			}
			fmt.Fprintf(w, "Keys:      %s\n", keys)
			if st.Pending != nil {
				fmt.Fprintf(w, "Pending:   %s on slot %s (applied %s)\n", st.Pending.Version, st.Pending.Slot, st.Pending.Applied.Format(time.RFC3339))
			}
			if p := st.Progress; p != nil && !p.Final {
				label := "Download: "
				if st.Phase == node.PhaseWriting {
					label = "Writing:  "
				}
				fmt.Fprintf(w, "%s %s %d/%d bytes, %.1f MB/s\n", label, p.Payload, p.Done, p.Total, p.BytesPerSec/1e6)
			}
			if !st.LastCheck.IsZero() {
				fmt.Fprintf(w, "Checked:   %s\n", st.LastCheck.Format(time.RFC3339))
			}
			if st.LastError != "" {
				fmt.Fprintf(w, "Error:     %s\n", st.LastError)
			}
			for _, e := range st.History {
				if e.Kind == "rollback" {
					fmt.Fprintf(w, "Rollback:  %s at %s: %s\n", e.Version, e.Time.Format(time.RFC3339), e.Detail)
				}
			}
			return nil
		},
	}
	check := &cobra.Command{
		Use: "check", Short: "Check the channel now", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var r map[string]string
			if err := call("POST", "/pith/v1/update/check", &r); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), "Check requested; see pithctl update status.")
			return nil
		},
	}
	history := &cobra.Command{
		Use: "history", Short: "Applied updates, updates marked good, rollbacks", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var evs []node.UpdateEvent
			if err := call("GET", "/pith/v1/update/history", &evs); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tVERSION\tEVENT\tDETAIL")
			for _, e := range evs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Version, e.Kind, e.Detail)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(status, check, history)
	return cmd
}

func lockCmd() *cobra.Command {
	var endpoints []string
	var group string
	cmd := &cobra.Command{Use: "lock", Short: "The cluster's reboot lock (locksmithctl's semaphore)"}
	fs := cmd.PersistentFlags()
	fs.StringSliceVar(&endpoints, "endpoints", defaultEndpoints(), "comma-separated KV endpoints (env PITHCTL_ENDPOINTS or ETCDCTL_ENDPOINTS)")
	fs.StringVar(&group, "group", "", "reboot group (locksmith's group); default the cluster-wide lock")
	addTLSFlags(fs)
	sem := func() (*rebootlock.Semaphore, error) {
		kv, err := etcdKV(endpoints)
		if err != nil {
			return nil, err
		}
		return &rebootlock.Semaphore{KV: kv, Key: rebootlock.GroupSemaphoreKey(group)}, nil
	}
	status := &cobra.Command{
		Use: "status", Short: "Free slots, max holders, and the machines holding the lock", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := sem()
			if err != nil {
				return err
			}
			st, err := s.Status(c.Context())
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "Available: %d\nMax: %d\n", st.Semaphore, st.Max)
			if len(st.Holders) > 0 {
				fmt.Fprintln(w, "\nMACHINE ID")
				for _, h := range st.Holders {
					fmt.Fprintln(w, h)
				}
			}
			return nil
		},
	}
	unlock := &cobra.Command{
		Use: "unlock MACHINE", Short: "Release a machine's slot (one that died holding it)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := sem()
			if err != nil {
				return err
			}
			if err := s.Unlock(c.Context(), args[0]); err != nil {
				if errors.Is(err, rebootlock.ErrNotHolder) {
					return fmt.Errorf("%s does not hold the reboot lock (see pithctl lock status)", args[0])
				}
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "Unlocked %s\n", args[0])
			return nil
		},
	}
	setMax := &cobra.Command{
		Use: "set-max N", Short: "How many machines may reboot at once", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 0 {
				return fmt.Errorf("set-max %q: want a number >= 0", args[0])
			}
			s, err := sem()
			if err != nil {
				return err
			}
			old, err := s.SetMax(c.Context(), n)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "Old: %d\nNew: %d\n", old, n)
			return nil
		},
	}
	cmd.AddCommand(status, unlock, setMax)
	return cmd
}
