package main

// Unit files from the command line into the cluster: names, local files,
// and submitting each once (fleetctl submit/load/start do it first).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/unitfile"
)

// mangle appends .service to names without a unit type, as fleetctl does.
func mangle(arg string) string {
	base := filepath.Base(arg)
	if !strings.Contains(base, ".") {
		return base + ".service"
	}
	return base
}

// localUnit finds the file for a unit argument: the path itself, the name
// in the current directory, or its template there.
func localUnit(arg string) (string, []byte, error) {
	name := mangle(arg)
	candidates := []string{arg, name}
	if tpl, ok := unitfile.TemplateOf(name); ok {
		candidates = append(candidates, filepath.Join(filepath.Dir(arg), tpl))
	}
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if err == nil {
			return name, b, nil
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrInvalid) {
			var pe *os.PathError
			if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "is a directory") {
				continue
			}
			return name, nil, err
		}
	}
	return name, nil, nil
}

// ensure makes sure the unit exists in the cluster, creating it from a
// local file or template (local first, then the cluster's template).
func (o *unitOpts) ensure(ctx context.Context, c *fleetv1.Client, arg string, desired unitfile.DesiredState, warn io.Writer) (string, bool, error) {
	name, body, err := localUnit(arg)
	if err != nil {
		return name, false, fmt.Errorf("%s: %v", arg, err)
	}
	if err := unitfile.ValidateName(name); err != nil {
		return name, false, err
	}
	existing, err := c.Unit(ctx, name)
	if err != nil {
		return name, false, err
	}
	var opts []unitfile.UnitOption
	if body != nil {
		if opts, err = unitfile.ParseUnitFile(body); err != nil {
			return name, false, fmt.Errorf("%s: %v", arg, err)
		}
	}
	if existing != nil {
		if opts != nil && unitfile.Hash(opts) != hashOf(existing) {
			switch {
			case o.replace:
				if _, err := unitfile.Check(name, opts, unitfile.DesiredState(existing.DesiredState)); err != nil {
					return name, false, err
				}
				return name, false, c.CreateUnit(ctx, &fleetv1.Unit{Name: name, DesiredState: existing.DesiredState, Options: ptrs(opts)})
			case desired == "":
				return name, false, fmt.Errorf("unit %s already exists in the cluster with different contents: use submit --replace, or destroy it first", name)
			default:
				fmt.Fprintf(warn, "WARNING: unit %s in the cluster differs from local file %s; using the cluster's (submit --replace to update)\n", name, name)
			}
		}
		return name, false, nil
	}
	if opts == nil {
		tpl, ok := unitfile.TemplateOf(name)
		if !ok {
			return name, false, fmt.Errorf("unit %s not found in the cluster, and no file %s here", name, name)
		}
		t, err := c.Unit(ctx, tpl)
		if err != nil {
			return name, false, err
		}
		if t == nil {
			return name, false, fmt.Errorf("unit %s not found: neither it nor its template %s exists here or in the cluster", name, tpl)
		}
		for _, op := range t.Options {
			opts = append(opts, *op)
		}
	}
	if desired == "" {
		desired = unitfile.Inactive
	}
	// Validate locally for a clear message before any request.
	if _, err := unitfile.Check(name, opts, desired); err != nil {
		return name, false, err
	}
	return name, true, c.CreateUnit(ctx, &fleetv1.Unit{Name: name, DesiredState: string(desired), Options: ptrs(opts)})
}

// checkLocal validates every argument's name and local file before any
// request, so `submit good.service bad.service` stores nothing rather than
// half of what was asked.
func checkLocal(args []string, desired unitfile.DesiredState) error {
	if desired == "" {
		desired = unitfile.Inactive
	}
	for _, a := range args {
		name, body, err := localUnit(a)
		if err != nil {
			return fmt.Errorf("%s: %v", a, err)
		}
		if err := unitfile.ValidateName(name); err != nil {
			return err
		}
		if body == nil {
			continue // the cluster's copy or template; checked by ensure
		}
		opts, err := unitfile.ParseUnitFile(body)
		if err != nil {
			return fmt.Errorf("%s: %v", a, err)
		}
		if _, err := unitfile.Check(name, opts, desired); err != nil {
			return fmt.Errorf("%s: %v", a, err)
		}
	}
	return nil
}

func ptrs(opts []unitfile.UnitOption) []*unitfile.UnitOption {
	out := make([]*unitfile.UnitOption, len(opts))
	for i := range opts {
		out[i] = &opts[i]
	}
	return out
}

func hashOf(u *fleetv1.Unit) string {
	opts := make([]unitfile.UnitOption, len(u.Options))
	for i, op := range u.Options {
		opts[i] = *op
	}
	return unitfile.Hash(opts)
}
