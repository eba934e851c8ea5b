package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/image/slot"
)

// slotDisk makes a GPT image with USR-A (good, priority 1) and USR-B (empty)
// like a freshly built Pith disk, and an ESP directory with its grubenv.
func slotDisk(t *testing.T) (img, esp string) {
	t.Helper()
	dir := t.TempDir()
	img = filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 64<<20)
	out, err := exec.Command("sgdisk", img, "-n", "1:2048:+4M", "-c", "1:EFI-SYSTEM",
		"-n", "3:0:+8M", "-c", "3:USR-A", "-t", "3:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6",
		"-n", "4:0:+8M", "-c", "4:USR-B", "-t", "4:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6").CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s (run make deps: package gdisk)", err, out)
	}
	if err := slot.WritePrio(img, slot.A, slot.InitialA); err != nil {
		t.Fatal(err)
	}
	esp = filepath.Join(dir, "esp")
	os.MkdirAll(filepath.Join(esp, "pith"), 0o755)
	os.MkdirAll(filepath.Join(esp, "grub"), 0o755)
	if err := slot.WriteEnvFile(filepath.Join(esp, slot.EnvPathOnESP), slot.InitialEnv()); err != nil {
		t.Fatal(err)
	}
	return img, esp
}

func runSlotCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "pithctl", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(slotCommand())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

type statusJSON struct {
	Saved string     `json:"saved_entry"`
	Next  string     `json:"next_entry"`
	Slots []slotInfo `json:"slots"`
}

func TestSlotCommands(t *testing.T) {
	img, esp := slotDisk(t)
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	setRunning := func(s string) {
		os.WriteFile(cmdline, []byte("console=ttyS0 pith.slot="+s+" pith.usr=PARTUUID=x\n"), 0o644)
	}
	flags := []string{"--disk", img, "--esp", esp, "--cmdline", cmdline}
	status := func() statusJSON {
		t.Helper()
		out, err := runSlotCmd(t, append([]string{"slot", "status", "--json"}, flags...)...)
		if err != nil {
			t.Fatalf("slot status: %v\n%s", err, out)
		}
		var st statusJSON
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return st
	}
	setRunning("a")
	st := status()
	if a, b := st.Slots[0], st.Slots[1]; !a.Running || !a.Saved || !a.Successful || a.Priority != 1 || b.Successful || b.Tries != 0 || st.Saved != "a" {
		t.Fatalf("fresh disk: %+v", st)
	}
	// A trial needs B's kernel and initrd on the ESP.
	if out, err := runSlotCmd(t, append([]string{"slot", "trial", "b"}, flags...)...); err == nil || !strings.Contains(err.Error(), "no vmlinuz-b") {
		t.Fatalf("trial without kernel: %v %s", err, out)
	}
	os.WriteFile(filepath.Join(esp, "pith", "vmlinuz-b"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(esp, "pith", "initrd-b"), []byte("i"), 0o644)
	if out, err := runSlotCmd(t, append([]string{"slot", "trial", "b"}, flags...)...); err != nil {
		t.Fatalf("trial: %v %s", err, out)
	}
	st = status()
	if b := st.Slots[1]; !b.Trial || !b.Default || b.Tries != 1 || b.Successful || b.Priority != 2 || st.Next != "b" {
		t.Fatalf("after trial b: %+v", st)
	}
	// Booted into B: mark it good.
	setRunning("b")
	if out, err := runSlotCmd(t, append([]string{"slot", "mark-good"}, flags...)...); err != nil || !strings.Contains(out, "slot b marked good") {
		t.Fatalf("mark-good: %v %s", err, out)
	}
	st = status()
	if a, b := st.Slots[0], st.Slots[1]; !b.Saved || !b.Successful || b.Tries != 0 || !b.Running || !b.Default || st.Next != "" || !a.Successful || a.Priority != 1 {
		t.Fatalf("after mark-good b: %+v", st)
	}
	out, err := runSlotCmd(t, append([]string{"slot", "status"}, flags...)...)
	if err != nil || !strings.Contains(out, "grubenv: saved_entry=b next_entry=") {
		t.Fatalf("table: %v\n%s", err, out)
	}
	if _, err := runSlotCmd(t, append([]string{"slot", "trial", "c"}, flags...)...); err == nil {
		t.Fatal("trial c accepted")
	}
}

func TestOSReleaseVersion(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{"ID=pith\nVERSION_ID=0.2.0\n", "0.2.0"},
		{"ID=pith\nVERSION_ID=\"1.0\"\n", "1.0"},
		{"ID=pith\n", "?"},
	} {
		p := filepath.Join(dir, "os-release")
		os.WriteFile(p, []byte(tc.content), 0o644)
		if got := osReleaseVersion(p); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.content, got, tc.want)
		}
	}
	if got := osReleaseVersion(filepath.Join(dir, "none")); got != "-" {
		t.Errorf("missing file: %q", got)
	}
}
