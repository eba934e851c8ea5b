package firstboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// said records what a sayLogger hands on: "<level> <line>".
type said []string

func (s *said) say(l Level, format string, args ...any) {
	*s = append(*s, fmt.Sprintf("%d %s", l, fmt.Sprintf(format, args...)))
}

// TestSayHandler: each record becomes one line at the Level its slog level
// maps to, attributes as key=value (quoted when not one word, groups in
// the key), warnings and errors marked on the line too; debug is dropped.
func TestSayHandler(t *testing.T) {
	cases := []struct {
		name string
		log  func(l *slog.Logger)
		want []string
	}{
		{"info", func(l *slog.Logger) { l.Info("wrote file", "path", "/etc/x", "bytes", 3, "mode", "0644") },
			[]string{fmt.Sprintf("%d wrote file path=/etc/x bytes=3 mode=0644", LevelInfo)}},
		{"no attributes", func(l *slog.Logger) { l.Info("user-data script already ran to its end; not run again") },
			[]string{fmt.Sprintf("%d user-data script already ran to its end; not run again", LevelInfo)}},
		{"warning", func(l *slog.Logger) { l.Warn("fetching over plain HTTP", "source", "http://h/c", "risk", "use https") },
			[]string{fmt.Sprintf(`%d warning: fetching over plain HTTP source=http://h/c risk="use https"`, LevelWarning)}},
		{"error", func(l *slog.Logger) { l.Error("failed", "err", errors.New("connection refused")) },
			[]string{fmt.Sprintf(`%d error: failed err="connection refused"`, LevelError)}},
		{"quoting", func(l *slog.Logger) { l.Info("m", "empty", "", "eq", "a=b", "quote", `x"y`, "tab", "a\tb") },
			[]string{fmt.Sprintf(`%d m empty="" eq="a=b" quote="x\"y" tab="a\tb"`, LevelInfo)}},
		{"with attrs and groups", func(l *slog.Logger) {
			l.With("stage", "firstboot").WithGroup("g").With("a", 1).Info("m", "b", 2, slog.Group("h", "c", 3), slog.Group("", "d", 4))
		}, []string{fmt.Sprintf("%d m stage=firstboot g.a=1 g.b=2 g.h.c=3 g.d=4", LevelInfo)}},
		{"debug dropped", func(l *slog.Logger) { l.Debug("noise"); l.Info("kept") },
			[]string{fmt.Sprintf("%d kept", LevelInfo)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got said
			c.log(sayLogger(got.say))
			if !slices.Equal(got, c.want) {
				t.Errorf("said\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}

// TestApplyStepsSaid: cloudconfig/apply's steps reach Say through the
// handler pithd firstboot installs, one line each.
func TestApplyStepsSaid(t *testing.T) {
	stage, _, root := newStage(t)
	var got said
	stage.Applier.Log = sayLogger(got.say)
	ud := filepath.Join(t.TempDir(), "ud")
	writeTestFile(t, ud, "#cloud-config\nwrite_files:\n  - path: /etc/x\n    content: abc\n")
	if _, err := Boot(context.Background(), stage, BootOptions{Datasource: bootConfig(root, "pith.platform=qemu", ud), Now: true}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d wrote file path=/etc/x bytes=3 mode=0644", LevelInfo)
	if !slices.Contains(got, want) {
		t.Errorf("said %q, want a line %q", got, want)
	}
	for _, l := range got {
		if strings.Contains(l, "\n") {
			t.Errorf("line over two lines: %q", l)
		}
	}
}
