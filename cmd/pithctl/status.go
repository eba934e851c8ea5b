package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// nodeStatus is `pithctl status` without units (fleetctl's status needs
// one, so the bare command is free): this node's user-data, boot slots
// and updates, each from the command that shows it in full. A section
// that cannot be read is reported and the others still print; the exit
// status is non-zero when the user-data was rejected or not applied, the
// one state an operator must not miss.
func nodeStatus(cmd *cobra.Command, root string) error {
	w := cmd.OutOrStdout()
	sections := []struct {
		title string
		path  []string
		full  string
		flags map[string]string
	}{
		{"User-data", []string{"userdata"}, "pithctl userdata", map[string]string{"root": root, "format": "text"}},
		{"Boot slots", []string{"slot", "status"}, "sudo pithctl slot status", nil},
		{"Boot integrity", []string{"boot"}, "sudo pithctl boot", nil},
		{"Updates", []string{"update", "status"}, "pithctl update status", nil},
	}
	var userData error
	for i, s := range sections {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "== %s (%s) ==\n", s.title, s.full)
		err := runSub(cmd, s.path, s.flags)
		if err != nil {
			fmt.Fprintf(w, "error: %v\n", err)
		}
		if i == 0 {
			userData = err
		}
	}
	if userData != nil {
		return errors.New("this node's user-data was not applied (see above)")
	}
	return nil
}

// runSub runs the pithctl subcommand at path with flags set (others keep
// their values), its output to cmd's.
func runSub(cmd *cobra.Command, path []string, flags map[string]string) error {
	c, rest, err := cmd.Root().Find(path)
	if err != nil || len(rest) != 0 || c.RunE == nil {
		return fmt.Errorf("no command %q", path)
	}
	for k, v := range flags {
		if err := c.Flags().Set(k, v); err != nil {
			return err
		}
	}
	c.SetOut(cmd.OutOrStdout())
	c.SetErr(cmd.ErrOrStderr())
	return c.RunE(c, nil)
}
