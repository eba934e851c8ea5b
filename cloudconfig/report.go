package cloudconfig

import (
	"fmt"
	"sort"
	"strings"
)

// Severity says whether a problem stops the config from being applied.
type Severity string

const (
	// SeverityError makes the whole user-data invalid: nothing is applied.
	SeverityError Severity = "error"
	// SeverityWarning is reported but does not stop the config.
	SeverityWarning Severity = "warning"
)

// Pos is a 1-based line and column in the user-data. Column 0 means the
// column is unknown (YAML syntax errors only carry a line).
type Pos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// Entry is one problem found in user-data.
type Entry struct {
	Pos
	Severity Severity `json:"severity"`
	// Path is the key path of the offending value, e.g. "coreos.units[0].name".
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

func (e Entry) String() string {
	loc := fmt.Sprintf("%d", e.Line)
	if e.Column > 0 {
		loc += fmt.Sprintf(":%d", e.Column)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Severity, e.Message)
}

// Report collects every problem found in one user-data document.
type Report struct {
	Entries []Entry `json:"entries"`
}

// MaxEntries caps a report: past it, more problems add nothing useful and
// a hostile document could make the report itself huge.
const MaxEntries = 1000

func (r *Report) add(sev Severity, pos Pos, path, format string, args ...any) {
	if len(r.Entries) == MaxEntries {
		r.Entries = append(r.Entries, Entry{Pos: pos, Severity: SeverityError, Message: fmt.Sprintf("more than %d problems; stopping here, fix these first", MaxEntries)})
	}
	if len(r.Entries) > MaxEntries {
		return
	}
	r.Entries = append(r.Entries, Entry{Pos: pos, Severity: sev, Path: path, Message: fmt.Sprintf(format, args...)})
}

// Errorf records an error at pos.
func (r *Report) Errorf(pos Pos, path, format string, args ...any) {
	r.add(SeverityError, pos, path, format, args...)
}

// Warnf records a warning at pos.
func (r *Report) Warnf(pos Pos, path, format string, args ...any) {
	r.add(SeverityWarning, pos, path, format, args...)
}

// HasErrors reports whether any entry is an error.
func (r *Report) HasErrors() bool {
	for _, e := range r.Entries {
		if e.Severity == SeverityError {
			return true
		}
	}
	return false
}

// Count returns the number of errors and warnings.
func (r *Report) Count() (errors, warnings int) {
	for _, e := range r.Entries {
		if e.Severity == SeverityError {
			errors++
		} else {
			warnings++
		}
	}
	return errors, warnings
}

// sort orders entries by position so the report reads top to bottom.
func (r *Report) sort() {
	sort.SliceStable(r.Entries, func(i, j int) bool {
		a, b := r.Entries[i], r.Entries[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// String renders the report one entry per line, prefixed with name
// ("file:line:col: severity: message").
func (r *Report) Format(name string) string {
	var b strings.Builder
	for _, e := range r.Entries {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Err returns nil when the report has no errors, else an error summarising it.
func (r *Report) Err() error {
	n, _ := r.Count()
	if n == 0 {
		return nil
	}
	for _, e := range r.Entries {
		if e.Severity == SeverityError {
			if n == 1 {
				return fmt.Errorf("invalid user-data: %s", e)
			}
			return fmt.Errorf("invalid user-data: %s (and %d more errors)", e, n-1)
		}
	}
	return nil
}

func (r *Report) errorAt(p Pos) bool {
	for _, e := range r.Entries {
		if e.Pos == p && e.Severity == SeverityError {
			return true
		}
	}
	return false
}
