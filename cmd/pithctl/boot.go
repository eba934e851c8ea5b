package main

// pithctl boot: how this node booted, as far as its integrity goes:
// UEFI Secure Boot, dm-verity /usr of the running slot, and the TPM with
// its event log replayed against the PCRs.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pith-os/pith/internal/tpmlog"
)

func init() { rootCmd.AddCommand(bootCommand()) }

// bootReport is what pithctl boot prints (and --json).
type bootReport struct {
	SecureBoot string `json:"secure_boot"` // enabled, disabled, setup mode, not UEFI
	Slot       string `json:"slot"`
	RootHash   string `json:"usr_root_hash"`
	Verity     string `json:"verity"` // ok, corrupt, or why it is not known
	TPM        string `json:"tpm"`    // absent, or the TPM and its log check
	// PCRsMatch: the event log replays to the TPM's SHA-256 PCRs.
	PCRsMatch bool `json:"pcrs_match_event_log"`
}

// dmsetup runs dmsetup (a variable for tests).
var dmsetup = func(args ...string) (string, error) {
	out, err := exec.Command("dmsetup", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dmsetup %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func bootCommand() *cobra.Command {
	var root string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "Show Secure Boot, dm-verity /usr and TPM state (run as root on the node for verity and the event log)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := readBoot(root)
			if asJSON {
				e := json.NewEncoder(cmd.OutOrStdout())
				e.SetIndent("", "  ")
				return e.Encode(r)
			}
			printBoot(cmd.OutOrStdout(), r)
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "/", "root of the node's /sys and /proc")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printBoot(w io.Writer, r bootReport) {
	fmt.Fprintf(w, "Secure Boot:  %s\n", r.SecureBoot)
	fmt.Fprintf(w, "Verity /usr:  %s (slot %s, root hash %s)\n", r.Verity, r.Slot, r.RootHash)
	fmt.Fprintf(w, "TPM:          %s\n", r.TPM)
}

// EFI global variable GUID, the suffix of SecureBoot's and SetupMode's
// names in efivarfs.
const efiGlobal = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

func readBoot(root string) bootReport {
	var r bootReport
	r.SecureBoot = secureBootState(root)
	r.Slot, r.RootHash = "?", "?"
	if b, err := os.ReadFile(filepath.Join(root, "proc/cmdline")); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if v, ok := strings.CutPrefix(f, "pith.slot="); ok {
				r.Slot = v
			}
			if v, ok := strings.CutPrefix(f, "pith.usrhash="); ok {
				r.RootHash = v
			}
		}
	}
	r.Verity = verityState(r.RootHash)
	r.TPM, r.PCRsMatch = tpmState(root)
	return r
}

// efiVar reads a one-byte EFI variable (efivarfs prefixes 4 attribute bytes).
func efiVar(root, name string) (byte, error) {
	b, err := os.ReadFile(filepath.Join(root, "sys/firmware/efi/efivars", name+"-"+efiGlobal))
	if err != nil {
		return 0, err
	}
	if len(b) < 5 {
		return 0, fmt.Errorf("%s: %d bytes", name, len(b))
	}
	return b[4], nil
}

func secureBootState(root string) string {
	if _, err := os.Stat(filepath.Join(root, "sys/firmware/efi")); err != nil {
		return "not available (BIOS boot)"
	}
	sb, err := efiVar(root, "SecureBoot")
	if errors.Is(err, fs.ErrNotExist) {
		return "disabled (firmware without Secure Boot)"
	}
	if err != nil {
		return "unknown: " + err.Error()
	}
	if sb == 1 {
		return "enabled"
	}
	if setup, err := efiVar(root, "SetupMode"); err == nil && setup == 1 {
		return "disabled (setup mode: no platform key enrolled)"
	}
	return "disabled"
}

// verityState checks the usr device-mapper target: verity, keyed with the
// kernel line's root hash, and not (yet) found corrupt.
func verityState(rootHash string) string {
	table, err := dmsetup("table", "usr")
	if err != nil {
		return "unknown: " + err.Error()
	}
	f := strings.Fields(table)
	// start len verity version data hash dblk hblk nblocks hstart alg root salt ...
	if len(f) < 12 || f[2] != "verity" {
		return "not verified: /usr's device is not dm-verity"
	}
	if f[11] != rootHash {
		return fmt.Sprintf("mismatch: the device's root hash %s is not the kernel line's", f[11])
	}
	status, err := dmsetup("status", "usr")
	if err != nil {
		return "unknown: " + err.Error()
	}
	switch s := strings.Fields(status); {
	case len(s) >= 4 && s[3] == "V":
		return "ok"
	case len(s) >= 4 && s[3] == "C":
		return "corrupt: dm-verity found a block that does not match the root hash"
	default:
		return "unknown status: " + strings.TrimSpace(status)
	}
}

// tpmState names the TPM and replays the firmware's event log into the
// SHA-256 bank, comparing each PCR it touches with the TPM's.
func tpmState(root string) (string, bool) {
	dev := filepath.Join(root, "sys/class/tpm/tpm0")
	if _, err := os.Stat(dev); err != nil {
		return "absent", false
	}
	name := "TPM"
	if v, err := os.ReadFile(filepath.Join(dev, "tpm_version_major")); err == nil {
		name += " " + strings.TrimSpace(string(v)) + ".0"
	}
	b, err := os.ReadFile(filepath.Join(root, "sys/kernel/security/tpm0/binary_bios_measurements"))
	if err != nil {
		return name + ", event log not readable: " + err.Error(), false
	}
	l, err := tpmlog.Parse(b)
	if err != nil {
		return name + ", event log: " + err.Error(), false
	}
	pcrs, err := l.Replay(tpmlog.AlgSHA256)
	if err != nil {
		return name + ", event log: " + err.Error(), false
	}
	var idx []int
	for p := range pcrs {
		idx = append(idx, int(p))
	}
	slices.Sort(idx)
	var names []string
	for _, p := range idx {
		names = append(names, strconv.Itoa(p))
		raw, err := os.ReadFile(filepath.Join(dev, "pcr-sha256", strconv.Itoa(p)))
		if err != nil {
			return fmt.Sprintf("%s, %d events; PCR %d not readable: %v", name, len(l.Events), p, err), false
		}
		got, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || !bytes.Equal(got, pcrs[uint32(p)]) {
			return fmt.Sprintf("%s, %d events; PCR %d = %s differs from the event log's %x", name, len(l.Events), p, strings.TrimSpace(string(raw)), pcrs[uint32(p)]), false
		}
	}
	return fmt.Sprintf("%s, %d events; the event log replays to PCRs %s (sha256)", name, len(l.Events), strings.Join(names, ",")), true
}
