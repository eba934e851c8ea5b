package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/bb"
	"github.com/u-root/gobusybox/src/pkg/golang"
)

// Busybox returns the path of a busybox built from commands, compiling it
// into cacheDir unless an identical one is there. cached reports a hit.
func Busybox(ctx context.Context, cacheDir string, commands []string, logf func(string, ...any)) (bbPath string, cached bool, err error) {
	return BusyboxArch(ctx, cacheDir, "amd64", commands, logf)
}

// BusyboxArch is Busybox cross-compiled for GOARCH arch (CGO off: u-root
// needs no C), cached per architecture.
func BusyboxArch(ctx context.Context, cacheDir, arch string, commands []string, logf func(string, ...any)) (bbPath string, cached bool, err error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", false, fmt.Errorf("initramfs: the Go toolchain (`go` in PATH) is needed to compile u-root's busybox: %w", err)
	}
	goVersion, err := goOutput(ctx, "", "env", "GOVERSION")
	if err != nil {
		return "", false, err
	}
	ver := urootVersion()
	h := sha256.New()
	fmt.Fprintf(h, "u-root %s\ngo %s\nGOARCH %s\ntags %s\n", ver, goVersion, arch, strings.Join(busyboxTags, ","))
	for _, c := range commands {
		fmt.Fprintln(h, c)
	}
	key := hex.EncodeToString(h.Sum(nil))[:20]
	dir := filepath.Join(cacheDir, "initramfs", "bb-"+key)
	bbPath = filepath.Join(dir, "bb")
	if _, err := os.Stat(bbPath); err == nil {
		return bbPath, true, nil
	}

	// Resolve the commands inside u-root's own module so its go.sum pins
	// their dependencies (fetched from the Go module proxy if missing).
	out, err := goOutput(ctx, os.TempDir(), "mod", "download", "-json", "github.com/u-root/u-root@"+ver)
	if err != nil {
		return "", false, err
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal([]byte(out), &mod); err != nil || mod.Dir == "" {
		return "", false, fmt.Errorf("initramfs: locating u-root %s: %v %s", ver, err, mod.Error)
	}
	logf("initramfs: compiling u-root %s busybox with %s (first build only, cached in %s)", ver, goVersion, dir)

	if err := os.MkdirAll(filepath.Join(cacheDir, "initramfs"), 0o755); err != nil {
		return "", false, err
	}
	work, err := os.MkdirTemp(filepath.Join(cacheDir, "initramfs"), "bbwork-")
	if err != nil {
		return "", false, err
	}
	defer os.RemoveAll(work)
	// Ask the toolchain for its root: a pith built with -trimpath has no
	// runtime.GOROOT, which gobusybox's default would rely on.
	goroot, err := goOutput(ctx, "", "env", "GOROOT")
	if err != nil {
		return "", false, err
	}
	env := golang.Default(golang.DisableCGO(), golang.WithGOARCH(arch), golang.WithGOOS("linux"),
		golang.WithGOROOT(strings.TrimSpace(goroot)),
		golang.WithWorkingDir(mod.Dir), golang.WithBuildTag(busyboxTags...))
	tmpBin := filepath.Join(work, "bb")
	var buildLog bytes.Buffer
	err = bb.BuildBusybox(bufLogger{&buildLog}, &bb.Opts{
		Env:          env,
		GenSrcDir:    filepath.Join(work, "src"),
		CommandPaths: commands,
		BinaryPath:   tmpBin,
		GoBuildOpts:  &golang.BuildOpts{},
	})
	if err != nil {
		return "", false, fmt.Errorf("initramfs: compiling u-root busybox: %w\n%s", err, lastLines(buildLog.String(), 20))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmpBin, bbPath); err != nil {
		return "", false, err
	}
	return bbPath, false, nil
}

type bufLogger struct{ w io.Writer }

func (b bufLogger) Printf(format string, v ...any) { fmt.Fprintf(b.w, format+"\n", v...) }
func (b bufLogger) Print(v ...any)                 { fmt.Fprintln(b.w, v...) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func goOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("initramfs: go %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
