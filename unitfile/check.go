package unitfile

import (
	"fmt"
	"strings"
)

// Check validates a unit submission, as the scheduler does before storing
// it and pithctl before sending it: its name, desired state, options and
// their [X-Fleet] requirements, which it returns. A template may only be
// inactive.
func Check(name string, opts []UnitOption, desired DesiredState) (*Requirements, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if _, err := ParseDesiredState(string(desired)); err != nil {
		return nil, err
	}
	if len(opts) == 0 {
		return nil, fmt.Errorf("unit %s has no options: submit a unit file with at least one section", name)
	}
	if len(opts) > MaxUnitOptions {
		return nil, fmt.Errorf("unit %s has %d options, over the limit of %d", name, len(opts), MaxUnitOptions)
	}
	size := 0
	for _, o := range opts {
		if o.Section == "" || o.Name == "" {
			return nil, fmt.Errorf("unit %s: option with empty section or name (section %q, name %q)", name, o.Section, o.Name)
		}
		if err := checkOption(o); err != nil {
			return nil, fmt.Errorf("unit %s: %v", name, err)
		}
		size += len(o.Section) + len(o.Name) + len(o.Value) + 4
	}
	if size > MaxUnitFileSize {
		return nil, fmt.Errorf("unit %s is about %d bytes, over the %d-byte limit: move data out of the unit", name, size, MaxUnitFileSize)
	}
	if err := checkRoundTrip(opts); err != nil {
		return nil, fmt.Errorf("unit %s: %v", name, err)
	}
	if IsTemplate(name) && desired != Inactive {
		return nil, fmt.Errorf("unit %s is a template: start an instance such as %s", name, strings.Replace(name, "@.", "@1.", 1))
	}
	req, err := ParseRequirements(name, opts)
	if err != nil {
		return nil, fmt.Errorf("unit %s: %v", name, err)
	}
	return req, nil
}
