package rootfs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pith-os/pith/image/apt"
	"github.com/pith-os/pith/image/bootloader"
	"github.com/pith-os/pith/image/config"
	"github.com/pith-os/pith/image/sbom"
)

// fakeDpkgQuery answers dpkg-query -S for GRUB's kernel.img files and for
// grub-mkimage only under usr/bin (as merged-/usr dpkg does; with an
// architecture qualifier, as for Multi-Arch: same packages), and -W with
// version 2.06-13+deb12u2 of the package asked.
const fakeDpkgQuery = `#!/bin/sh
case "$1" in
-S) case "$2" in
	*/i386-pc/kernel.img) echo "grub-pc-bin: $2" ;;
	*/x86_64-efi/kernel.img) echo "grub-efi-amd64-bin, grub-efi-amd64-signed: $2" ;;
	*/usr/bin/grub-mkimage) echo "grub-common:amd64: $2" ;;
	*) echo "dpkg-query: no path found matching pattern $2" >&2; exit 1 ;;
	esac ;;
-W) printf '%s\t2.06-13+deb12u2\tamd64\tgrub2\t2.06-13+deb12u2' "$4" ;;
esac
`

// BootLoaders names each boot path's GRUB packages: fetched ones with their
// archive, the host's where the image uses the host's files.
func TestBootLoaders(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "dpkg-query")
	os.WriteFile(q, []byte(fakeDpkgQuery), 0o755)
	bin := filepath.Join(dir, "usr", "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "grub-mkimage"), []byte("#!/bin/sh\n"), 0o755)
	defer func(q, lib string) { dpkgQuery, bootloader.GrubLib = q, lib }(dpkgQuery, bootloader.GrubLib)
	dpkgQuery, bootloader.GrubLib = q, filepath.Join(dir, "usr", "lib", "grub")
	t.Setenv("PATH", bin)

	bpo := config.Archive{URI: "http://deb.debian.org/debian", Suite: "bookworm-backports"}
	cand := func(pkg, version, arch string) apt.Candidate {
		return apt.Candidate{Package: pkg, Version: version, Arch: arch, Source: "grub2", SourceV: version, SHA256: strings.Repeat("a", 64),
			Filename: "pool/main/g/grub2/" + pkg + "_" + version + "_" + arch + ".deb", Archive: bpo}
	}
	fetchedDeb := func(pkg, version, arch string) sbom.Deb {
		return sbom.Deb{Name: pkg, Version: version, Arch: arch, Source: "grub2", SourceVersion: version, SHA256: strings.Repeat("a", 64),
			URL: bpo.URI + "/pool/main/g/grub2/" + pkg + "_" + version + "_" + arch + ".deb", Archive: "bookworm-backports"}
	}
	host := func(pkg string) sbom.Deb {
		return sbom.Deb{Name: pkg, Version: "2.06-13+deb12u2", Arch: "amd64", Source: "grub2", SourceVersion: "2.06-13+deb12u2", Archive: sbom.HostArchive}
	}
	bios := sbom.BootLoader{Boot: sbom.BootBIOS, File: "BIOS-BOOT core.img, MBR boot.img", Packages: []sbom.Deb{host("grub-pc-bin"), host("grub-common")}}
	v12 := "2.12-1~bpo12+1"
	tests := []struct {
		name    string
		arch    string
		grub    bootloader.Grub
		fetched []apt.Candidate
		want    []sbom.BootLoader
	}{
		{"amd64: UEFI 2.12 from backports, BIOS the host's", "amd64", bootloader.Grub{Lib: "/c/lib", MkImage: "/c/mkimage", Version: v12},
			[]apt.Candidate{cand("grub-efi-amd64-bin", v12, "amd64"), cand("grub-common", v12, "amd64")},
			[]sbom.BootLoader{bios, {Boot: sbom.BootUEFI, File: "ESP EFI/BOOT/BOOTX64.EFI",
				Packages: []sbom.Deb{fetchedDeb("grub-efi-amd64-bin", v12, "amd64"), fetchedDeb("grub-common", v12, "amd64")}}}},
		{"amd64 without a 2.12: both the host's", "", bootloader.Grub{}, nil,
			[]sbom.BootLoader{bios, {Boot: sbom.BootUEFI, File: "ESP EFI/BOOT/BOOTX64.EFI", Packages: []sbom.Deb{host("grub-efi-amd64-bin"), host("grub-common")}}}},
		{"arm64: its modules fetched, the host's grub-mkimage, no BIOS", "arm64", bootloader.Grub{Lib: "/c/lib", Version: "2.06-13+deb12u2"},
			[]apt.Candidate{cand("grub-efi-arm64-bin", "2.06-13+deb12u2", "arm64")},
			[]sbom.BootLoader{{Boot: sbom.BootUEFI, File: "ESP EFI/BOOT/BOOTAA64.EFI",
				Packages: []sbom.Deb{fetchedDeb("grub-efi-arm64-bin", "2.06-13+deb12u2", "arm64"), host("grub-common")}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BootLoaders(context.Background(), tt.arch, tt.grub, tt.fetched)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// pith live's: the ISO's BIOS path (the host's), its UEFI path and
	// pith-pxe.efi's, the image's UEFI GRUB when given, else the host's.
	img12 := []sbom.Deb{fetchedDeb("grub-efi-amd64-bin", v12, "amd64"), fetchedDeb("grub-common", v12, "amd64")}
	hostEFI := []sbom.Deb{host("grub-efi-amd64-bin"), host("grub-common")}
	isoBIOS := sbom.BootLoader{Boot: sbom.BootBIOS, File: "pith.iso El Torito image", Packages: []sbom.Deb{host("grub-pc-bin"), host("grub-common")}}
	isoUEFI := func(p []sbom.Deb) sbom.BootLoader {
		return sbom.BootLoader{Boot: sbom.BootUEFI, File: "pith.iso EFI/BOOT/BOOTX64.EFI", Packages: p}
	}
	liveTests := []struct {
		name     string
		iso, pxe bool
		efiGrub  []sbom.Deb
		want     []sbom.BootLoader
	}{
		{"iso and pxe, the image's GRUB", true, true, img12, []sbom.BootLoader{isoBIOS, isoUEFI(img12),
			{Boot: sbom.BootPXEUEFI, File: "pith-pxe.efi", Packages: img12}}},
		{"iso, the image's GRUB", true, false, img12, []sbom.BootLoader{isoBIOS, isoUEFI(img12)}},
		{"iso, the host's GRUB", true, false, nil, []sbom.BootLoader{isoBIOS, isoUEFI(hostEFI)}},
		{"pxe, the image's GRUB", false, true, img12, []sbom.BootLoader{
			{Boot: sbom.BootPXEUEFI, File: "pith-pxe.efi", Packages: img12}}},
		{"pxe, the host's GRUB", false, true, nil, []sbom.BootLoader{
			{Boot: sbom.BootPXEUEFI, File: "pith-pxe.efi", Packages: hostEFI}}},
	}
	for _, tt := range liveTests {
		t.Run("live "+tt.name, func(t *testing.T) {
			got, err := LiveBootLoaders(context.Background(), tt.iso, tt.pxe, tt.efiGrub)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// A GRUB file no package holds fails the build: the SBOM would be wrong.
	if _, err := hostDeb(context.Background(), filepath.Join(dir, "grub-mkimage")); err == nil || !strings.Contains(err.Error(), "no installed Debian package") {
		t.Errorf("a file of no package: %v", err)
	}
	// dpkg knows /usr/bin/grub-mkimage, PATH found /bin's.
	if d, err := hostDeb(context.Background(), "/bin/grub-mkimage"); err != nil || d.Name != "grub-common" {
		t.Errorf("/bin/grub-mkimage: %+v, %v; want grub-common", d, err)
	}
}

// hostDeb reads the real dpkg-query's answers: the host's grub-pc-bin
// (make deps) holds the BIOS modules.
func TestHostDeb(t *testing.T) {
	want, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "grub-pc-bin").Output()
	if err != nil {
		t.Fatalf("grub-pc-bin is not installed (make deps): %v", err)
	}
	d, err := hostDeb(context.Background(), "/usr/lib/grub/i386-pc/kernel.img")
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "grub-pc-bin" || d.Version != string(want) || d.Arch != "amd64" || d.Source != "grub2" || d.Archive != sbom.HostArchive {
		t.Errorf("hostDeb = %+v, want grub-pc-bin %s amd64 of grub2, the host's", d, want)
	}
}
