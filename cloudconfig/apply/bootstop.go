package apply

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BootsStoppedFile, under StateDir, lists the boots the first-boot stage
// stopped because an Ignition config could not be applied, one line each
// ("<RFC3339 time> <the console's line>"), the last MaxBootsStopped kept.
// StateFile is replaced by every run, so without it the reason of a
// stopped boot would be gone after a reboot into a fixed config.
const BootsStoppedFile = "boots-stopped"

// MaxBootsStopped is how many lines BootsStoppedFile keeps.
const MaxBootsStopped = 20

// RecordBootStopped appends line, stamped with when, to BootsStoppedFile
// under root
// (atomicfile: on disk before the boot stops).
func RecordBootStopped(root string, when time.Time, line string) error {
	p, err := under(root, filepath.Join(StateDir, BootsStoppedFile))
	if err != nil {
		return err
	}
	lines, err := ReadBootsStopped(root)
	if err != nil {
		return err
	}
	lines = append(lines, when.UTC().Format(time.RFC3339)+" "+strings.ReplaceAll(line, "\n", " "))
	if len(lines) > MaxBootsStopped {
		lines = lines[len(lines)-MaxBootsStopped:]
	}
	return writeAtomic(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644, -1, -1)
}

// ReadBootsStopped returns BootsStoppedFile's lines under root, oldest
// first (none if no boot was stopped).
func ReadBootsStopped(root string) ([]string, error) {
	p, err := under(root, filepath.Join(StateDir, BootsStoppedFile))
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(l) > 0 {
			lines = append(lines, string(l))
		}
	}
	return lines, nil
}
