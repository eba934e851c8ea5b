package verity

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func writeData(t *testing.T, blocks int) (*os.File, int64) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "usr.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	data := make([]byte, blocks*BlockSize)
	rand.Read(data)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	return f, int64(len(data))
}

// veritysetup (cryptsetup) is the independent check of the format.
func veritysetupVerify(t *testing.T, file string, off int64, root string) error {
	t.Helper()
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Fatalf("veritysetup is needed (cryptsetup-bin; make deps installs it): %v", err)
	}
	out, err := exec.Command("veritysetup", "verify", file, file, root, "--hash-offset="+strconv.FormatInt(off, 10)).CombinedOutput()
	if err != nil {
		return &exec.ExitError{Stderr: out}
	}
	return nil
}

func TestFormatMatchesVeritysetup(t *testing.T) {
	// 2 blocks: one level; 128: one full hash block; 129 and 20000: two
	// and three levels with partial blocks.
	for _, blocks := range []int{2, 128, 129, 20000} {
		for _, salt := range [][]byte{nil, bytes.Repeat([]byte{0xab}, 32)} {
			t.Run(strconv.Itoa(blocks)+"/salt"+strconv.Itoa(len(salt)), func(t *testing.T) {
				f, size := writeData(t, blocks)
				root, err := Format(f, size, salt, [16]byte{1, 2, 3})
				if err != nil {
					t.Fatal(err)
				}
				st, _ := f.Stat()
				if st.Size() != size+TreeSize(size) {
					t.Errorf("file is %d bytes, want data %d + TreeSize %d", st.Size(), size, TreeSize(size))
				}
				if err := veritysetupVerify(t, f.Name(), size, root); err != nil {
					t.Fatalf("veritysetup verify rejects our tree: %s", err.(*exec.ExitError).Stderr)
				}
				sb, err := ReadSuperblock(f, size)
				if err != nil {
					t.Fatal(err)
				}
				if sb.DataBlocks != uint64(blocks) || !bytes.Equal(sb.Salt, salt) {
					t.Errorf("superblock %+v", sb)
				}
				want := "1 /dev/vda3 /dev/vda3 4096 4096 " + strconv.Itoa(blocks) + " " + strconv.Itoa(blocks+1) + " sha256 " + root + " "
				if got := Table("/dev/vda3", sb, root); !strings.HasPrefix(got, want) {
					t.Errorf("Table = %q, want prefix %q", got, want)
				}
				// A flipped data bit must fail verification.
				b := make([]byte, 1)
				f.ReadAt(b, size/2)
				b[0] ^= 1
				f.WriteAt(b, size/2)
				if err := veritysetupVerify(t, f.Name(), size, root); err == nil {
					t.Error("veritysetup accepted corrupted data: the test cannot tell good from bad")
				}
			})
		}
	}
}

func TestFormatErrors(t *testing.T) {
	f, size := writeData(t, 4)
	for _, n := range []int64{0, 1000, BlockSize} {
		if _, err := Format(f, n, nil, [16]byte{}); err == nil {
			t.Errorf("Format(size %d): want an error", n)
		}
	}
	if _, err := ReadSuperblock(f, size); err == nil {
		t.Error("ReadSuperblock on data: want an error")
	}
}

func TestFSEnd(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	noise := make([]byte, 50000) // incompressible: several blocks
	rand.Read(noise)
	os.WriteFile(filepath.Join(src, "f"), noise, 0o644)
	sq := filepath.Join(dir, "usr.sqfs")
	if out, err := exec.Command("mksquashfs", src, sq, "-noappend", "-quiet", "-no-progress", "-comp", "zstd").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v %s", err, out)
	}
	f, err := os.OpenFile(sq, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	end, err := FSEnd(f)
	if err != nil {
		t.Fatal(err)
	}
	// mksquashfs pads its image to 4 KiB: the filesystem ends at the file's end.
	if end != st.Size() || end%BlockSize != 0 {
		t.Errorf("FSEnd = %d, file is %d bytes", end, st.Size())
	}
	// Appending a tree does not move the end.
	if _, err := Format(f, end, nil, [16]byte{}); err != nil {
		t.Fatal(err)
	}
	if again, _ := FSEnd(f); again != end {
		t.Errorf("FSEnd after Format = %d, want %d", again, end)
	}
	if out, err := exec.Command("unsquashfs", "-s", sq).CombinedOutput(); err != nil {
		t.Errorf("unsquashfs -s after appending the tree: %v\n%s", err, out)
	}
}
