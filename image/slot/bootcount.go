package slot

// KeyBootCount is grub.cfg's count of boots of the saved slot that did not
// reach userspace ("a1".."a3", "b1".."b3"): GRUB sets it before booting
// the saved slot and falls back to the other slot after the third; the
// booted system clears it (ClearBootCount, from pith-slot-settle.service).
const KeyBootCount = "pith_boot"

// ClearBootCount records that this boot reached userspace: it removes
// grub.cfg's boot count from grubenv and returns the count it found ("" when
// there was none, and then writes nothing).
func ClearBootCount(envPath string) (string, error) {
	env, err := ReadEnvFile(envPath)
	if err != nil {
		return "", err
	}
	n := env.Get(KeyBootCount)
	if n == "" {
		return "", nil
	}
	env.Unset(KeyBootCount)
	return n, WriteEnvFile(envPath, env)
}
