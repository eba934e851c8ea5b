package main

import "github.com/pith-os/pith/cloudconfig/cli"

func init() { rootCmd.AddCommand(cli.Command("pith")) }
