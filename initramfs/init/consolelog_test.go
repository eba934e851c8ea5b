package pithinit

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"testing"
)

// TestConsoleHandler: each record is one console line of the init's,
// after the prefix: the message, then the attributes as key=value (quoted
// when not one word, groups in the key), warnings and errors marked;
// debug is dropped.
func TestConsoleHandler(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(l *slog.Logger)
		want []string
	}{
		{"info", func(l *slog.Logger) {
			l.Info("partition created", "disk", "/dev/disk/by-id/virtio-data1", "number", 1, "label", "e2edata", "size_mib", uint64(62))
		}, []string{"S: partition created disk=/dev/disk/by-id/virtio-data1 number=1 label=e2edata size_mib=62"}},
		{"no attributes", func(l *slog.Logger) { l.Info("done") }, []string{"S: done"}},
		{"warning", func(l *slog.Logger) { l.Warn("slow", "took", "3 s") }, []string{`S: warning: slow took="3 s"`}},
		{"error", func(l *slog.Logger) { l.Error("failed", "err", errors.New("no such device")) }, []string{`S: error: failed err="no such device"`}},
		{"quoting", func(l *slog.Logger) { l.Info("m", "empty", "", "eq", "a=b", "quote", `x"y`, "nl", "a\nb") },
			[]string{`S: m empty="" eq="a=b" quote="x\"y" nl="a\nb"`}},
		{"with attrs and groups", func(l *slog.Logger) {
			l.With("stage", "storage").WithGroup("g").With("a", 1).Info("m", "b", 2, slog.Group("h", "c", 3), slog.Group("", "d", 4))
		}, []string{"S: m stage=storage g.a=1 g.b=2 g.h.c=3 g.d=4"}},
		{"debug dropped", func(l *slog.Logger) { l.Debug("noise"); l.Info("kept") }, []string{"S: kept"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			printf := func(f string, a ...any) { got = append(got, fmt.Sprintf(f, a...)) }
			tc.log(consoleLogger(printf, "S: "))
			if !slices.Equal(got, tc.want) {
				t.Errorf("printed\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// Through the init's logger, a record is a line like its others, on the
// console and in the kernel log.
func TestConsoleHandlerLine(t *testing.T) {
	var out, kmsg bytes.Buffer
	l := &logger{out: &out, kmsg: &kmsg, start: monotonic()}
	consoleLogger(l.Printf, "Ignition storage: ").Info("filesystem made", "device", "/dev/vdb1", "format", "ext4")
	if !regexp.MustCompile(`^pith-init\[\+\d+\.\d{3}s\]: Ignition storage: filesystem made device=/dev/vdb1 format=ext4\n$`).MatchString(out.String()) {
		t.Errorf("console %q", out.String())
	}
	if kmsg.String() != "<7>pith-init: Ignition storage: filesystem made device=/dev/vdb1 format=ext4\n" {
		t.Errorf("kmsg %q", kmsg.String())
	}
}
