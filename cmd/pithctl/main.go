// Command pithctl is the operator's client for a Pith cluster: keys, units,
// machines, updates, reboot locks and boot slots. Each command group lives in
// its own file and registers itself on rootCmd from an init function.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/version"
)

var rootCmd = &cobra.Command{
	Use:           "pithctl",
	Short:         "Operate a Pith cluster: keys, units, machines, updates, reboot locks",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print pithctl's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "pithctl", version.Version)
		},
	})
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pithctl:", err)
		os.Exit(1)
	}
}
