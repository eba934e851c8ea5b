package main

import "github.com/pith-os/pith/image/install/cli"

// On the live ISO/PXE system: sudo pithctl install --device /dev/sda ...
func init() { rootCmd.AddCommand(cli.Command()) }
