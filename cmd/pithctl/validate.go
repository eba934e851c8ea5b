package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/cloudconfig/apply"
	"github.com/pith-os/pith/cloudconfig/cli"
)

func init() {
	rootCmd.AddCommand(cli.Command("pithctl"))

	var root, format string
	cmd := &cobra.Command{
		Use:   "userdata",
		Short: "Show what the first-boot stage did with this node's user-data (apply: apply it now)",
		Long: `Show the last run of pithd's first-boot stage on this node: where user-data
came from, its format, whether it was valid and applied, and its validation
report. Exit status 1 when the user-data was rejected or failed to apply.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := apply.ReadState(root)
			if errors.Is(err, fs.ErrNotExist) {
				return errors.New("no first-boot record on this node (has pithd firstboot run?)")
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return err
				}
			} else {
				status := "applied"
				switch {
				case st.Waiting != "":
					status = "WAITING for user-data from " + st.Waiting + " (pithd.service starts once it is applied: pithctl userdata apply)"
				case !st.Valid:
					status = "REJECTED (invalid; nothing applied)"
				case !st.Applied:
					status = "FAILED to apply: " + st.ApplyErr
				}
				fmt.Fprintf(w, "source:     %s\nformat:     %s\nstatus:     %s\nfirst boot: %v\nwhen:       %s\nsha256:     %s\nproblems:   %d error(s), %d warning(s)\n",
					st.Source, st.Format, status, st.FirstBoot, st.Time.Format(time.RFC3339), st.SHA256, st.Errors, st.Warnings)
				for _, e := range st.Report {
					fmt.Fprintf(w, "%s/%s:%s\n", apply.StateDir, apply.UserDataFile, e)
				}
			}
			if oem, err := apply.ReadOEMState(root); err == nil && format != "json" {
				status := "applied"
				if !oem.Valid {
					status = "REJECTED (invalid; nothing applied)"
				} else if !oem.Applied {
					status = "FAILED to apply: " + oem.ApplyErr
				}
				fmt.Fprintf(w, "OEM:        %s/cloud-config.yml %s (%d error(s), %d warning(s))\n", "/usr/share/oem", status, oem.Errors, oem.Warnings)
				for _, e := range oem.Report {
					fmt.Fprintf(w, "%s/%s:%s\n", apply.StateDir, apply.OEMUserDataFile, e)
				}
			}
			// Kept across boots: a boot stopped by an Ignition config that
			// could not be applied, after a reboot into a fixed one too.
			if stops, err := apply.ReadBootsStopped(root); err == nil && len(stops) > 0 && format != "json" {
				fmt.Fprintf(w, "boots stopped (%s):\n", filepath.Join(apply.StateDir, apply.BootsStoppedFile))
				for _, l := range stops {
					fmt.Fprintf(w, "  %s\n", l)
				}
			}
			if st.Waiting != "" {
				return nil
			}
			if !st.Valid || !st.Applied {
				return errors.New("user-data was not applied")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "/", "root of the node's filesystem")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	cmd.AddCommand(userdataApplyCmd())
	rootCmd.AddCommand(cmd)
}
