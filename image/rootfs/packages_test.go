package rootfs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseInstalled(t *testing.T) {
	status := `Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.22-1~deb12u2
Description: toolkit
 Version: 0 (a continuation line)

Package: removed-pkg
Status: deinstall ok config-files
Version: 1.0
Architecture: amd64

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b9
Source: bash (5.2.15-2)

Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u13
`
	got, err := parseInstalled(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{
		{Name: "base-files", Version: "12.4+deb12u13", Arch: "amd64", Source: "base-files", SourceVersion: "12.4+deb12u13"},
		{Name: "bash", Version: "5.2.15-2+b9", Arch: "amd64", Source: "bash", SourceVersion: "5.2.15-2"},
		{Name: "libssl3", Version: "3.0.22-1~deb12u2", Arch: "amd64", Source: "openssl", SourceVersion: "3.0.22-1~deb12u2"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseInstalled\n got %+v\nwant %+v", got, want)
	}
}

func TestKernelPackage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pith-kernel-package")
	if _, err := kernelPackage(p); err == nil || !strings.Contains(err.Error(), "remove the cache's rootfs/ trees") {
		t.Errorf("missing record: %v", err)
	}
	os.WriteFile(p, []byte("linux-image-6.1.0-57-cloud-amd64 6.1.192-3 amd64\n"), 0o644)
	if k, err := kernelPackage(p); err != nil || k != (Package{Name: "linux-image-6.1.0-57-cloud-amd64", Version: "6.1.192-3", Arch: "amd64"}) {
		t.Errorf("kernelPackage = %+v, %v", k, err)
	}
	os.WriteFile(p, []byte("linux-image 6.1\n"), 0o644)
	if _, err := kernelPackage(p); err == nil {
		t.Errorf("a two-field record was accepted")
	}
}
