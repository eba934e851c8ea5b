package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/node"
)

// ErrInvalid is returned when at least one file has errors; callers exit 1.
var ErrInvalid = errors.New("user-data has errors")

// FileResult is one file's outcome in --format json.
type FileResult struct {
	File    string              `json:"file"`
	Format  cloudconfig.Format  `json:"format"`
	Valid   bool                `json:"valid"`
	Errors  int                 `json:"errors"`
	Warning int                 `json:"warnings"`
	Entries []cloudconfig.Entry `json:"entries"`
}

// ValidateFiles validates each file ("-" is stdin) and writes the report
// to w as text ("file:line:col: severity: message") or JSON. It returns
// ErrInvalid when any file has errors; warnings alone pass.
func ValidateFiles(w io.Writer, stdin io.Reader, files []string, o Options) error {
	format := o.Format
	if format != "text" && format != "json" {
		return fmt.Errorf("unknown --format %q: use text or json", format)
	}
	var results []FileResult
	failed := false
	for _, name := range files {
		data, err := readLimited(name, stdin)
		var res FileResult
		res.File = name
		if err != nil {
			res.Format = cloudconfig.FormatUnknown
			res.Entries = []cloudconfig.Entry{{Severity: cloudconfig.SeverityError, Message: err.Error()}}
			res.Errors = 1
		} else {
			ud, rep := cloudconfig.Parse(data)
			if o.SecureBoot {
				cloudconfig.CheckKargsAllowed(ud, data, rep, node.SecureBootKargAllowed,
					"is not on the Secure Boot allowlist: a Secure Boot image's grub.cfg ignores the machine's arguments when one is not, and its first boot stops (cloudconfig/README \"kernelArguments\")")
			}
			res.Format = ud.Format
			res.Entries = rep.Entries
			if ud.Format == cloudconfig.FormatEmpty {
				// A node treats empty user-data as "none given", but a file
				// handed to validate was meant to say something.
				rep.Errorf(cloudconfig.Pos{Line: 1, Column: 1}, "", "the file is empty: user-data starts with \"#cloud-config\" or \"#!\", or is an Ignition JSON config")
				res.Entries = rep.Entries
			}
			res.Errors, res.Warning = rep.Count()
		}
		if res.Entries == nil {
			res.Entries = []cloudconfig.Entry{}
		}
		res.Valid = res.Errors == 0
		failed = failed || !res.Valid
		results = append(results, res)
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Valid bool         `json:"valid"`
			Files []FileResult `json:"files"`
		}{!failed, results}); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			rep := cloudconfig.Report{Entries: r.Entries}
			for _, e := range r.Entries {
				if e.Line == 0 { // I/O problems have no position
					fmt.Fprintf(w, "%s: %s: %s\n", r.File, e.Severity, e.Message)
					rep.Entries = nil
				}
			}
			fmt.Fprint(w, rep.Format(r.File))
		}
	}
	if failed {
		return ErrInvalid
	}
	return nil
}

func readLimited(name string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return nil, fmt.Errorf("%s is a directory; name a user-data file", name)
		}
		r = f
	}
	// Read one byte past the limit so Parse can report the size.
	return io.ReadAll(io.LimitReader(r, cloudconfig.MaxSize+1))
}

// Options are validate's flags.
type Options struct {
	Format string // text or json
	// SecureBoot checks for a Secure Boot image too: an Ignition config's
	// kernelArguments must be on its allowlist.
	SecureBoot bool
}

// Command returns `validate FILE...` for the given program name.
func Command(prog string) *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check user-data (cloud-config, script or Ignition) and report every problem",
		Long: `Validate user-data files before a machine boots with them. Each file may be
a #cloud-config (coreos-cloudinit dialect with Pith's pith: section), a #!
script, or an Ignition v3 JSON config (spec 3.0 to 3.5). Every problem is
reported as FILE:LINE:COL: error|warning: MESSAGE. "-" reads standard input.

Exit status: 0 when no file has errors (warnings allowed), 1 otherwise.`,
		Example: "  " + prog + " validate user-data.yaml\n  " + prog + " validate --format json node*.yaml",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ValidateFiles(cmd.OutOrStdout(), cmd.InOrStdin(), args, o)
		},
	}
	cmd.Flags().StringVar(&o.Format, "format", "text", "output format: text or json")
	cmd.Flags().BoolVar(&o.SecureBoot, "secure-boot", false, "also check for an image built with --secure-boot-keys: Ignition kernelArguments only from its allowlist")
	return cmd
}
