package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/pith-os/pith/image/slot"
)

// slotFlags locate the boot disk and the ESP.
type slotFlags struct {
	disk, esp, cmdline string
	json               bool
}

func init() { rootCmd.AddCommand(slotCommand()) }

// slotCommand builds `pithctl slot` (fresh flags per call, for tests).
func slotCommand() *cobra.Command {
	f := &slotFlags{}
	cmd := &cobra.Command{
		Use:   "slot",
		Short: "Show and change this node's A/B boot slots (run as root on the node)",
	}
	cmd.PersistentFlags().StringVar(&f.disk, "disk", "", "boot disk holding USR-A/USR-B (default: the disk of pith.usr= on the kernel line)")
	cmd.PersistentFlags().StringVar(&f.esp, "esp", "/boot", "mount point of the EFI system partition; mounted privately for the command when grubenv is not there")
	cmd.PersistentFlags().StringVar(&f.cmdline, "cmdline", "/proc/cmdline", "kernel command line to read pith.slot= from")
	status := &cobra.Command{
		Use:   "status",
		Short: "Print each slot: version, priority, tries, successful, active",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withESP(func(disk, esp string) error { return slotStatus(cmd.OutOrStdout(), f, disk, esp) })
		},
	}
	status.Flags().BoolVar(&f.json, "json", false, "print JSON")
	cmd.AddCommand(status, &cobra.Command{
		Use:   "mark-good",
		Short: "Mark the running slot good: saved_entry, successful, no pending trial",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			running, err := f.running()
			if err != nil {
				return err
			}
			return f.withESP(func(disk, esp string) error {
				if err := slot.MarkGood(disk, filepath.Join(esp, slot.EnvPathOnESP), running); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "slot %s marked good\n", running)
				return nil
			})
		},
	}, &cobra.Command{
		Use:   "settle",
		Short: "Record a failed trial: the other slot loses its tries once GRUB fell back (run at boot)",
		Long: `GRUB clears next_entry as it boots a trial but does not touch the GPT, so
after a trial that did not come up the slot still shows tries=1. Run once per
boot (pith-slot-settle.service does, before sshd and pithd): when no trial is
pending and the slot that is not running has tries left without ever being
marked successful, it failed its trial and gets priority 0, tries 0. It also
clears grub.cfg's boot count of the saved slot (pith_boot): this boot reached
userspace, so GRUB need not fall back to the other slot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			running, err := f.running()
			if err != nil {
				return err
			}
			return f.withESP(func(disk, esp string) error {
				if n, err := slot.ClearBootCount(filepath.Join(esp, slot.EnvPathOnESP)); err != nil {
					return err
				} else if n != "" && n != string(running)+"1" {
					fmt.Fprintf(cmd.OutOrStdout(), "slot %s came up after GRUB counted boot %s of the saved slot that did not reach userspace\n", running, n)
				}
				failed, ok, err := slot.SettleTrial(disk, filepath.Join(esp, slot.EnvPathOnESP), running)
				if err != nil {
					return err
				}
				if ok {
					fmt.Fprintf(cmd.OutOrStdout(), "slot %s failed its trial boot (running slot %s): marked unbootable\n", failed, running)
				}
				return nil
			})
		},
	}, &cobra.Command{
		Use:   "trial a|b",
		Short: "Boot a slot once on the next reboot (falls back to the good slot if it fails)",
		Long: `Arrange a one-time trial boot of a slot, as the update agent does after
writing it: next_entry=SLOT in grubenv and tries=1 on USR-SLOT. The slot's
USR partition and pith/vmlinuz-SLOT, pith/initrd-SLOT on the ESP must be in
place. Used by operators and the VM tests.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := slot.Parse(args[0])
			if err != nil {
				return err
			}
			return f.withESP(func(disk, esp string) error {
				for _, name := range []string{"vmlinuz-", "initrd-"} {
					if _, err := os.Stat(filepath.Join(esp, "pith", name+string(s))); err != nil {
						return fmt.Errorf("slot %s has no %s on the ESP: %v", s, name+string(s), err)
					}
				}
				if err := slot.SetTrial(disk, filepath.Join(esp, slot.EnvPathOnESP), s); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "slot %s will be tried on the next boot\n", s)
				return nil
			})
		},
	})
	return cmd
}

func (f *slotFlags) running() (slot.Slot, error) {
	return slot.Running(f.cmdline)
}

// withESP runs fn with the boot disk and a directory holding the ESP. When
// grubenv is not under --esp, the ESP (partition EFI-SYSTEM) is mounted on a
// private temporary directory for the duration.
func (f *slotFlags) withESP(fn func(disk, esp string) error) error {
	disk := f.disk
	if disk == "" {
		var err error
		if disk, err = slot.BootDisk(f.cmdline, "", ""); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(f.esp, slot.EnvPathOnESP)); err == nil {
		return fn(disk, f.esp)
	}
	dev, err := filepath.EvalSymlinks("/dev/disk/by-partlabel/EFI-SYSTEM")
	if err != nil {
		return fmt.Errorf("no grubenv under %s and no EFI-SYSTEM partition: %v (pass --esp)", f.esp, err)
	}
	dir, err := os.MkdirTemp("", "pith-esp-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := unix.Mount(dev, dir, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount ESP %s: %v (run as root, or pass --esp)", dev, err)
	}
	ferr := fn(disk, dir)
	if err := unix.Unmount(dir, 0); err != nil && ferr == nil {
		ferr = fmt.Errorf("unmount ESP: %v", err)
	}
	return ferr
}

// slotInfo is one row of `pithctl slot status`.
type slotInfo struct {
	Slot       string `json:"slot"`
	Partition  int    `json:"partition"`
	PartUUID   string `json:"partuuid"`
	Version    string `json:"version"`
	Priority   int    `json:"priority"`
	Tries      int    `json:"tries"`
	Successful bool   `json:"successful"`
	Running    bool   `json:"running"`
	Default    bool   `json:"default"` // GRUB boots it next
	Saved      bool   `json:"saved"`   // grubenv saved_entry (the good slot)
	Trial      bool   `json:"trial"`   // grubenv next_entry (one-time trial pending)
}

func slotStatus(w io.Writer, f *slotFlags, disk, esp string) error {
	st, err := slot.Status(disk, filepath.Join(esp, slot.EnvPathOnESP))
	if err != nil {
		return err
	}
	running, _ := f.running()
	var rows []slotInfo
	for _, s := range []slot.Slot{slot.A, slot.B} {
		p := st.Parts[s]
		rows = append(rows, slotInfo{
			Slot: string(s), Partition: p.Number, PartUUID: p.PartUUID,
			Version:  slotVersion(s, running, p.PartUUID),
			Priority: p.Priority, Tries: p.Tries, Successful: p.Successful,
			Running: s == running, Default: s == st.Default(), Saved: st.Saved == string(s), Trial: st.Next == string(s),
		})
	}
	if f.json {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(map[string]any{"disk": disk, "saved_entry": st.Saved, "next_entry": st.Next, "slots": rows})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPART\tVERSION\tPRIORITY\tTRIES\tSUCCESSFUL\tACTIVE")
	for _, r := range rows {
		var active []string
		for _, a := range []struct {
			on   bool
			name string
		}{{r.Running, "running"}, {r.Saved, "good"}, {r.Trial, "trial pending"}, {r.Default, "next boot"}} {
			if a.on {
				active = append(active, a.name)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%v\t%s\n", strings.ToUpper(r.Slot), r.Partition, r.Version, r.Priority, r.Tries, r.Successful, strings.Join(active, ", "))
	}
	tw.Flush()
	fmt.Fprintf(w, "grubenv: saved_entry=%s next_entry=%s\n", st.Saved, st.Next)
	return nil
}

// slotVersion reads VERSION from the slot's os-release: /usr for the running
// slot, a private read-only mount of the partition for the other; "-" when
// the slot holds no filesystem (never written).
func slotVersion(s, running slot.Slot, partuuid string) string {
	if s == running {
		return osReleaseVersion("/usr/lib/os-release")
	}
	dev, err := filepath.EvalSymlinks(filepath.Join("/dev/disk/by-partuuid", strings.ToLower(partuuid)))
	if err != nil {
		return "-"
	}
	dir, err := os.MkdirTemp("", "pith-usr-")
	if err != nil {
		return "-"
	}
	defer os.Remove(dir)
	for _, fstype := range []string{"squashfs", "erofs"} {
		if unix.Mount(dev, dir, fstype, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "") == nil {
			v := osReleaseVersion(filepath.Join(dir, "lib/os-release"))
			unix.Unmount(dir, 0)
			return v
		}
	}
	return "-"
}

func osReleaseVersion(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "-"
		}
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VERSION_ID="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return "?"
}
