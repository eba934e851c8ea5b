package pithinit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// FsckPath is e2fsck inside the initramfs: initramfs.Build copies it, with
// its libraries and loader, from the image's USR.
const FsckPath = "/usr/sbin/e2fsck"

// StopError stops the boot for good: no slot can boot on a ROOT that does
// not check, so rebooting (and letting GRUB count failed boots of a good
// slot) would only hide the message.
type StopError struct{ Msg string }

func (e *StopError) Error() string { return e.Msg }

// checkRoot runs `e2fsck -p` on ROOT before it is mounted, as systemd-fsck
// does for other filesystems: it replays the journal and makes the repairs
// that are safe without an operator. It returns what to log.
func checkRoot(fsck, dev string) (string, error) {
	if _, err := os.Stat(fsck); err != nil {
		return fmt.Sprintf("warning: no %s in this initramfs: ROOT (%s) mounted unchecked", fsck, dev), nil
	}
	cmd := exec.Command(fsck, "-p", dev)
	cmd.Env = []string{"PATH=/usr/sbin:/bbin"}
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		return "", &StopError{Msg: fmt.Sprintf("cannot run %s on ROOT (%s): %v", fsck, dev, err)}
	}
	return fsckVerdict(dev, code, string(out))
}

// fsckVerdict reads e2fsck's exit status (a bit mask, e2fsck(8)): 0 clean,
// 1 errors corrected, 2 corrected and a reboot wanted (only for a mounted
// filesystem; ROOT is not mounted yet), 4 errors left uncorrected, 8
// operational error, 16 usage error, 32 cancelled, 128 shared library
// error. Anything but 0-2 stops the boot.
func fsckVerdict(dev string, code int, out string) (string, error) {
	out = strings.TrimSpace(out)
	switch {
	case code == 0:
		return fmt.Sprintf("checked ROOT (%s): clean", dev), nil
	case code&^3 == 0:
		return fmt.Sprintf("checked ROOT (%s): errors repaired (e2fsck -p exit %d): %s", dev, code, out), nil
	}
	what := "has errors e2fsck -p cannot repair without an operator"
	if code&4 == 0 {
		what = "could not be checked"
	}
	return "", &StopError{Msg: fmt.Sprintf(
		"ROOT (%s) %s (e2fsck -p exit %d):\n%s\nThe boot stops here: no slot can boot on it. Boot with pith.debug on the kernel line (GRUB: e on the entry) for a shell, run `e2fsck -f %s` and answer its questions, then reboot.",
		dev, what, code, out, dev)}
}
