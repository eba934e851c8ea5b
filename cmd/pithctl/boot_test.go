package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/internal/tpmlog"
)

// eventLog is a crypto-agile log (SHA-256 bank) with one event for PCR 7.
func eventLog(data string) []byte {
	le := binary.LittleEndian
	var b bytes.Buffer
	spec := []byte("Spec ID Event03\x00")
	spec = append(spec, 0, 0, 0, 0, 0, 2, 0, 2)
	spec = le.AppendUint32(spec, 1)
	spec = le.AppendUint16(spec, tpmlog.AlgSHA256)
	spec = le.AppendUint16(spec, 32)
	spec = append(spec, 0)
	binary.Write(&b, le, []uint32{0, tpmlog.EvNoAction})
	b.Write(make([]byte, 20))
	binary.Write(&b, le, uint32(len(spec)))
	b.Write(spec)
	d := sha256.Sum256([]byte(data))
	binary.Write(&b, le, []uint32{7, 0x800000e0, 1})
	binary.Write(&b, le, uint16(tpmlog.AlgSHA256))
	b.Write(d[:])
	binary.Write(&b, le, uint32(len(data)))
	b.WriteString(data)
	return b.Bytes()
}

func TestReadBoot(t *testing.T) {
	const hash = "3f2a9d0c4b1e8f7a6d5c4b3a29181706f5e4d3c2b1a09f8e7d6c5b4a39281706"
	d := sha256.Sum256([]byte("db"))
	pcr7 := sha256.Sum256(append(make([]byte, 32), d[:]...))
	table := "0 2048 verity 1 /dev/vda3 /dev/vda3 4096 4096 256 257 sha256 " + hash + " 00ff\n"
	for _, tc := range []struct {
		name     string
		files    map[string]string
		table    string
		status   string
		dmErr    error
		want     []string
		pcrMatch bool
	}{
		{"Secure Boot, verity ok, TPM log replays", map[string]string{
			"sys/firmware/efi/efivars/SecureBoot-" + efiGlobal:  "\x06\x00\x00\x00\x01",
			"sys/class/tpm/tpm0/tpm_version_major":              "2\n",
			"sys/kernel/security/tpm0/binary_bios_measurements": string(eventLog("db")),
			"sys/class/tpm/tpm0/pcr-sha256/7":                   strings.ToUpper(hex.EncodeToString(pcr7[:])) + "\n",
		}, table, "0 2048 verity V\n", nil,
			[]string{"Secure Boot:  enabled", "Verity /usr:  ok (slot b, root hash " + hash, "TPM 2.0, 1 events; the event log replays to PCRs 7 (sha256)"}, true},
		{"setup mode, corrupt, PCR differs", map[string]string{
			"sys/firmware/efi/efivars/SecureBoot-" + efiGlobal:  "\x06\x00\x00\x00\x00",
			"sys/firmware/efi/efivars/SetupMode-" + efiGlobal:   "\x06\x00\x00\x00\x01",
			"sys/class/tpm/tpm0/tpm_version_major":              "2\n",
			"sys/kernel/security/tpm0/binary_bios_measurements": string(eventLog("db")),
			"sys/class/tpm/tpm0/pcr-sha256/7":                   strings.Repeat("00", 32),
		}, table, "0 2048 verity C\n", nil,
			[]string{"disabled (setup mode", "Verity /usr:  corrupt", "PCR 7 = " + strings.Repeat("00", 32) + " differs"}, false},
		{"BIOS, root hash mismatch, no TPM", nil, strings.Replace(table, hash, strings.Repeat("0", 64), 1), "0 2048 verity V\n", nil,
			[]string{"not available (BIOS boot)", "mismatch: the device's root hash", "TPM:          absent"}, false},
		{"UEFI without Secure Boot, not root", map[string]string{"sys/firmware/efi/x": ""}, "", "", errors.New("permission denied"),
			[]string{"disabled (firmware without Secure Boot)", "Verity /usr:  unknown: permission denied"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{"proc/cmdline": "console=ttyS0 pith.slot=b pith.usrhash=" + hash + "\n"}
			for k, v := range tc.files {
				files[k] = v
			}
			for p, c := range files {
				os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
				os.WriteFile(filepath.Join(root, p), []byte(c), 0o644)
			}
			old := dmsetup
			t.Cleanup(func() { dmsetup = old })
			dmsetup = func(args ...string) (string, error) {
				if tc.dmErr != nil {
					return "", tc.dmErr
				}
				if args[0] == "table" {
					return tc.table, nil
				}
				return tc.status, nil
			}
			r := readBoot(root)
			var out bytes.Buffer
			printBoot(&out, r)
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if r.PCRsMatch != tc.pcrMatch {
				t.Errorf("PCRsMatch %v, want %v", r.PCRsMatch, tc.pcrMatch)
			}
		})
	}
}
