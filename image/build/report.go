package build

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/pith-os/pith/image/layout"
)

// Step is one timed step of a build.
type Step struct {
	Name     string
	Duration time.Duration
	Detail   string
}

// Reporter prints step lines and progress bars and records step times.
type Reporter struct {
	Log   func(format string, args ...any) // step lines; nil = silent
	Bars  io.Writer                        // progress bars (a terminal); nil = none
	Steps []Step
}

func (r *Reporter) logf(format string, args ...any) {
	if r != nil && r.Log != nil {
		r.Log(format, args...)
	}
}

// Step runs fn as a named step, printing its start, result and duration.
func (r *Reporter) Step(name string, fn func() (detail string, err error)) error {
	r.logf("==> %s", name)
	start := time.Now()
	detail, err := fn()
	d := time.Since(start)
	if err != nil {
		return err
	}
	if r != nil {
		r.Steps = append(r.Steps, Step{Name: name, Duration: d, Detail: detail})
	}
	r.logf("    %s (%s)", detail, d.Round(100*time.Millisecond))
	return nil
}

// Bar returns a progress bar of max units (0: set later with ChangeMax64);
// invisible when the reporter has no terminal.
func (r *Reporter) Bar(max int64, desc string) *progressbar.ProgressBar {
	visible := r != nil && r.Bars != nil
	w := io.Discard
	if visible {
		w = r.Bars
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetVisibility(visible),
		progressbar.OptionSetDescription("    " + desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200 * time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(true),
	}
	if desc == "disk" {
		opts = append(opts, progressbar.OptionShowBytes(true))
	}
	return progressbar.NewOptions64(max, opts...)
}

// Summary renders the end-of-build table: artifacts and time per step.
func Summary(w io.Writer, outDir string, artifacts []ArtifactInfo, steps []Step, total time.Duration) {
	fmt.Fprintf(w, "\nBuilt in %s:\n", outDir)
	for _, a := range artifacts {
		extra := ""
		if a.Allocated != a.Size {
			extra = fmt.Sprintf(" (%s allocated, sparse)", layout.Human(a.Allocated))
		}
		fmt.Fprintf(w, "  %-20s %10s%s\n", a.Name, layout.Human(a.Size), extra)
	}
	fmt.Fprintln(w, "Time per step:")
	for _, s := range steps {
		fmt.Fprintf(w, "  %-32s %8s\n", s.Name, s.Duration.Round(100*time.Millisecond))
	}
	fmt.Fprintf(w, "  %-32s %8s\n", "total", total.Round(100*time.Millisecond))
}

// ArtifactInfo is an output file as it landed in the output directory.
type ArtifactInfo struct {
	Name      string
	Path      string
	Size      int64
	Allocated int64
}
