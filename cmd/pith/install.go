package main

import "github.com/pith-os/pith/image/install/cli"

func init() { rootCmd.AddCommand(cli.Command()) }
