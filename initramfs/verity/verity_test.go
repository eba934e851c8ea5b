package verity

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
				got := Table("/dev/vda3", sb, root)
				if !strings.HasPrefix(got, want) || !strings.HasSuffix(got, " 1 restart_on_corruption") {
					t.Errorf("Table = %q, want prefix %q and restart_on_corruption", got, want)
				}
				if err := Verify(f, sb, root); err != nil {
					t.Errorf("Verify of the tree Format wrote: %v", err)
				}
				if err := CheckRoot(f, sb, strings.ToUpper(root)); err != nil {
					t.Errorf("CheckRoot of the tree Format wrote: %v", err)
				}
				if err := CheckRoot(f, sb, strings.Repeat("0", 64)); !errors.Is(err, ErrCorrupt) {
					t.Errorf("CheckRoot with another root hash: %v, want ErrCorrupt", err)
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

// veritysetup format, given the same salt, must write the same tree and
// print the same root hash as Format.
func TestRootHashEqualsVeritysetup(t *testing.T) {
	salt := bytes.Repeat([]byte{0x5a}, 32)
	for _, blocks := range []int{2, 129, 20000} {
		t.Run(strconv.Itoa(blocks), func(t *testing.T) {
			f, size := writeData(t, blocks)
			ours, err := Format(f, size, salt, [16]byte{})
			if err != nil {
				t.Fatal(err)
			}
			tree := make([]byte, TreeSize(size)-BlockSize)
			if _, err := f.ReadAt(tree, size+BlockSize); err != nil {
				t.Fatal(err)
			}
			theirs := filepath.Join(t.TempDir(), "hash")
			out, err := exec.Command("veritysetup", "format", f.Name(), theirs, "--salt="+hex.EncodeToString(salt),
				"--data-block-size=4096", "--hash-block-size=4096", "--hash=sha256", "--data-blocks="+strconv.Itoa(blocks)).CombinedOutput()
			if err != nil {
				t.Fatalf("veritysetup format: %v\n%s", err, out)
			}
			m := regexp.MustCompile(`Root hash:\s+([0-9a-f]{64})`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("no root hash in veritysetup's output:\n%s", out)
			}
			if string(m[1]) != ours {
				t.Errorf("root hash %s, veritysetup's %s", ours, m[1])
			}
			b, err := os.ReadFile(theirs)
			if err != nil {
				t.Fatal(err)
			}
			// Their hash device: superblock, then the tree.
			if !bytes.Equal(b[BlockSize:], tree) {
				t.Errorf("hash tree differs from veritysetup's (%d and %d bytes)", len(tree), len(b)-BlockSize)
			}
		})
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	const blocks = 300 // two levels
	for _, tc := range []struct {
		name string
		off  func(size int64) int64 // byte to flip
	}{
		{"first data block", func(int64) int64 { return 0 }},
		{"last data block", func(size int64) int64 { return size - 1 }},
		{"lowest hash level", func(size int64) int64 { return size + 2*BlockSize + 100 }},
		{"top hash block", func(size int64) int64 { return size + BlockSize }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, size := writeData(t, blocks)
			root, err := Format(f, size, []byte("salt"), [16]byte{})
			if err != nil {
				t.Fatal(err)
			}
			sb, err := ReadSuperblock(f, size)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			f.ReadAt(b, tc.off(size))
			b[0] ^= 0x80
			f.WriteAt(b, tc.off(size))
			if err := Verify(f, sb, root); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Verify after flipping a bit: %v, want ErrCorrupt", err)
			}
			if err := veritysetupVerify(t, f.Name(), size, root); err == nil {
				t.Error("veritysetup accepts the tampered device too: the case tampers nothing")
			}
		})
	}
	t.Run("wrong root hash", func(t *testing.T) {
		f, size := writeData(t, blocks)
		if _, err := Format(f, size, nil, [16]byte{}); err != nil {
			t.Fatal(err)
		}
		sb, _ := ReadSuperblock(f, size)
		if err := Verify(f, sb, strings.Repeat("ab", 32)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Verify with another root hash: %v, want ErrCorrupt", err)
		}
	})
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
	if sb, err := Find(f); err != nil || sb.DataBlocks != uint64(end/BlockSize) {
		t.Errorf("Find after Format: %+v, %v", sb, err)
	}
	if out, err := exec.Command("unsquashfs", "-s", sq).CombinedOutput(); err != nil {
		t.Errorf("unsquashfs -s after appending the tree: %v\n%s", err, out)
	}
}
