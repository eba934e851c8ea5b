// Command pith is the workstation CLI: it builds Pith images, boots them under
// QEMU, and publishes releases. Each subcommand lives in its own file and
// registers itself on rootCmd from an init function.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/version"
)

var rootCmd = &cobra.Command{
	Use:           "pith",
	Short:         "Build, boot and release Pith, the container OS",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print pith's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "pith", version.Version)
		},
	})
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pith:", err)
		os.Exit(1)
	}
}
