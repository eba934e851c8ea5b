package slot

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestSettleTrial(t *testing.T) {
	for _, tc := range []struct {
		name       string
		trial      bool // SetTrial(B) first
		consumed   bool // GRUB booted the trial (next_entry cleared)
		markGoodB  bool // the trial came up and was marked good
		running    Slot
		wantFailed bool
		wantB      Prio
	}{
		{name: "no trial ever", running: A, wantB: InitialB},
		{name: "trial pending, not booted yet", trial: true, running: A, wantB: Prio{Priority: 2, Tries: 1}},
		{name: "trial consumed, back on A", trial: true, consumed: true, running: A, wantFailed: true, wantB: Prio{}},
		{name: "running the trial itself", trial: true, consumed: true, running: B, wantB: Prio{Priority: 2, Tries: 1}},
		{name: "trial marked good, running B", trial: true, markGoodB: true, running: B, wantB: Prio{Priority: 2, Successful: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := newDisk(t)
			env := filepath.Join(t.TempDir(), "grubenv")
			if err := WriteEnvFile(env, InitialEnv()); err != nil {
				t.Fatal(err)
			}
			if err := WritePrio(img, A, InitialA); err != nil {
				t.Fatal(err)
			}
			if err := WritePrio(img, B, InitialB); err != nil {
				t.Fatal(err)
			}
			if tc.trial {
				if err := SetTrial(img, env, B); err != nil {
					t.Fatal(err)
				}
			}
			if tc.consumed {
				e, err := ReadEnvFile(env)
				if err != nil {
					t.Fatal(err)
				}
				e.Set(KeyNext, "")
				if err := WriteEnvFile(env, e); err != nil {
					t.Fatal(err)
				}
			}
			if tc.markGoodB {
				if err := MarkGood(img, env, B); err != nil {
					t.Fatal(err)
				}
			}
			failed, ok, err := SettleTrial(img, env, tc.running)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantFailed || (ok && failed != B) {
				t.Errorf("SettleTrial = %q, %v; want failed=%v", failed, ok, tc.wantFailed)
			}
			parts, err := ReadParts(img)
			if err != nil {
				t.Fatal(err)
			}
			if parts[B].Prio != tc.wantB {
				t.Errorf("USR-B after SettleTrial: %+v, want %+v", parts[B].Prio, tc.wantB)
			}
			if out := sgdisk(t, "-v", img); !strings.Contains(out, "No problems found") {
				t.Errorf("sgdisk -v:\n%s", out)
			}
		})
	}
}
