package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/secureboot"
	"github.com/pith-os/pith/vm"
)

func TestKeygenSecureBoot(t *testing.T) {
	keygen, _, _ := rootCmd.Find([]string{"keygen"})
	t.Cleanup(func() { keygen.Flags().Set("secure-boot", "false") })
	dir := filepath.Join(t.TempDir(), "sb")
	if _, err := runPith(t, "keygen", "--secure-boot", "--out", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := secureboot.Load(dir); err != nil {
		t.Fatalf("keys made by pith keygen --secure-boot do not load: %v", err)
	}
	if _, err := runPith(t, "keygen", "--secure-boot", "--out", dir); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second keygen --secure-boot: %v", err)
	}
	// pith boot --secure-boot enrolls those certificates.
	for _, tc := range []struct {
		name string
		o    bootOpts
		want string // error text; "" = loads
	}{
		{"from the key dir", bootOpts{firmware: vm.UEFI, secureBoot: true, secureBootKeys: dir}, ""},
		{"BIOS", bootOpts{firmware: vm.BIOS, secureBoot: true, secureBootKeys: dir}, "needs --firmware uefi"},
		{"keys without --secure-boot", bootOpts{firmware: vm.UEFI, secureBootKeys: dir}, "needs --secure-boot"},
		{"image without certificates beside it", bootOpts{firmware: vm.UEFI, secureBoot: true, image: filepath.Join(t.TempDir(), "pith.qcow2")}, "pith-sb-PK.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.o.secureBootCerts()
			if tc.want == "" {
				db, _ := os.ReadFile(filepath.Join(dir, "db.crt"))
				if err != nil || c == nil || len(c.DB) == 0 || len(c.DB) >= len(db) {
					t.Fatalf("certs %v, %v (want DER, shorter than the PEM file)", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
