// Command pithd is the Pith node agent. One process runs several subsystems
// (datasource and first boot, the KV store, the scheduler, updates); each is a
// package under agent/ and is wired here. Subcommands and flags for each
// subsystem live in their own files and register from init functions.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/version"
)

var rootCmd = &cobra.Command{
	Use:           "pithd",
	Short:         "The Pith node agent",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print pithd's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "pithd", version.Version)
		},
	})
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pithd:", err)
		os.Exit(1)
	}
}
