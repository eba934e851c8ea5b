// Package chromium runs headless Chromium for the tests that check a page
// as a browser renders it (the channel server's dashboard, in channels'
// tests and in TestDemo).
package chromium

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Find returns $PITH_CHROMIUM, or Debian's chromium on PATH
// (hack/install-deps.sh installs it).
func Find() (string, error) {
	if p := os.Getenv("PITH_CHROMIUM"); p != "" {
		return p, nil
	}
	return exec.LookPath("chromium")
}

// Run runs headless Chromium (bin) on url with a fresh profile in the
// empty directory profile and the extra flags (--dump-dom, --screenshot=...),
// and returns its stdout.
func Run(ctx context.Context, bin, profile, url string, extra ...string) (string, error) {
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir=" + profile,
	}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("chromium %s: %v\n%s", strings.Join(extra, " "), err, errb.String())
	}
	return out.String(), nil
}
