package storage

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// scriptRunner answers blkid with the next of its outputs and records
// every tool run.
type scriptRunner struct {
	blkid []string
	calls []string
}

func (r *scriptRunner) Run(name string, args ...string) ([]byte, error) {
	r.calls = append(r.calls, name)
	if name == "blkid" {
		out := r.blkid[0]
		r.blkid = r.blkid[1:]
		return []byte(out), nil
	}
	return nil, nil
}

// A whole disk holding a partition table is not empty: it is refused
// without wipeFilesystem, and with it the table is wiped before mkfs.
func TestMakeFilesystemOverPartitionTable(t *testing.T) {
	table := "DEVNAME=/dev/vdc\nPTUUID=1c7b0c2e\nPTTYPE=gpt\n"
	r := &scriptRunner{blkid: []string{table}}
	_, err := makeFilesystem(r, Filesystem{Device: "/dev/vdc", Format: "ext4"}, "/dev/vdc", discard)
	if err == nil || !strings.Contains(err.Error(), "gpt partition table; set wipeFilesystem") || len(r.calls) != 1 {
		t.Fatalf("without wipe: %v, tools %v", err, r.calls)
	}
	r = &scriptRunner{blkid: []string{table, "TYPE=ext4\nUUID=u\n"}}
	var log bytes.Buffer
	if _, err := makeFilesystem(r, Filesystem{Device: "/dev/vdc", Format: "ext4", Wipe: true}, "/dev/vdc", slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	if want := `msg="filesystem made" device=/dev/vdc format=ext4 label="" uuid=u`; !strings.Contains(log.String(), want) {
		t.Errorf("log %q lacks %q", &log, want)
	}
	if got := strings.Join(r.calls, " "); got != "blkid wipefs mkfs.ext4 blkid" {
		t.Errorf("with wipe ran %q, want the table wiped before mkfs", got)
	}
}
