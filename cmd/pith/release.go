package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pith-os/pith/channels"
)

func init() {
	rootCmd.AddCommand(keygenCmd(), releaseCmd(), channelCmd())
}

func loadKeys(paths []string) ([]ed25519.PrivateKey, error) {
	if len(paths) == 0 {
		return nil, errors.New("--key is required (make one with `pith keygen --out DIR`)")
	}
	var keys []ed25519.PrivateKey
	for _, p := range paths {
		k, err := channels.LoadPrivateKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func releaseCmd() *cobra.Command {
	var (
		channel, imageDir, repo, version, minVersion, platform string
		deltaFrom, cacheDir                                    string
		keyPaths                                               []string
		validFor                                               time.Duration
		requireCurrent                                         bool
	)
	cmd := &cobra.Command{
		Use:   "release --channel NAME --image DIR --key KEY --repo DIR",
		Short: "Publish a built image as a signed release on a channel",
		Long: `Reads DIR/pith.img and DIR/pith.manifest.json from pith build, makes the
payloads (USR-A's filesystem, pith/vmlinuz-a and pith/initrd-a from the ESP),
compresses them with zstd, and writes REPO/<version>/ and the signed
REPO/channels/<channel>.json(.sig). The image's pith.spdx.json goes into
REPO/<version>/ with sbom-diff.json, its diff against the channel's previous
release; the security upgrades among them go into the signed manifest, for
pithctl update status. An image behind Debian's security archive (pith
outdated) is released with a warning, or refused with --require-current.
Released versions are never changed or
removed. Releases of an arm64 image go to REPO/arm64/ (same layout; nodes
fetch SERVER/arm64/), amd64's stay at REPO's root. --key may be given twice to sign with an old and a new key while
rotating keys. Nodes believe the signed channel manifest until --valid-for
has passed (default 90 days); renew it with pith release resign.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if channel == "" || imageDir == "" || repo == "" {
				return errors.New("--channel, --image and --repo are required")
			}
			keys, err := loadKeys(keyPaths)
			if err != nil {
				return err
			}
			img, err := channels.OpenImage(imageDir)
			if err != nil {
				return err
			}
			defer img.Close()
			if version == "" {
				version = img.Version
			}
			if platform == "" {
				platform = img.Platform
			}
			arch, err := channels.PlatformArch(platform) // one repository per arch under REPO (channels.ArchDir)
			if err != nil {
				return err
			}
			repo = channels.ArchDir(repo, arch)
			out := cmd.OutOrStdout()
			logf := func(f string, a ...any) { fmt.Fprintf(out, f+"\n", a...) }
			logf("image %s: version %s, %s, USR payload %d bytes (%s)", img.Path, version, platform, img.USRSize, img.HowSized)
			cache, err := defaultCache(cacheDir)
			if err != nil {
				return err
			}
			if err := checkCurrent(cmd.Context(), imageDir, cache, requireCurrent, logf); err != nil {
				return err
			}
			files, security, err := releaseSBOM(imageDir, repo, channel, logf)
			if err != nil {
				return err
			}
			sigs, err := img.BootSigSources()
			if err != nil {
				return err
			}
			start := time.Now()
			m, err := channels.Publish(repo, channels.Release{
				Channel: channel, Version: version, MinVersion: minVersion, Platform: platform,
				USRVerityHash: img.USRVerityHash, DeltaFrom: deltaFrom, ValidFor: validFor,
				SecurityUpgrades: security, Files: files,
				Payloads: append([]channels.PayloadSource{
					{Name: channels.PayloadUSR, File: "usr", Open: func() (io.ReadCloser, error) {
						return withBar(cmd.ErrOrStderr(), img.USRSize, "usr", img.OpenUSR)
					}},
					{Name: channels.PayloadKernel, File: "vmlinuz", Open: func() (io.ReadCloser, error) { return img.OpenESPFile("pith/vmlinuz-a") }},
					{Name: channels.PayloadInitrd, File: "initrd", Open: func() (io.ReadCloser, error) { return img.OpenESPFile("pith/initrd-a") }},
				}, sigs...),
			}, keys, logf)
			if err != nil {
				return err
			}
			logf("released %s on channel %s in %.1fs: %s (valid until %s)", m.Version, m.Channel, time.Since(start).Seconds(), filepath.Join(repo, "channels", channel+".json"), m.Expires.Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&channel, "channel", "", "channel to publish on (alpha, beta, stable, ...)")
	f.StringVar(&imageDir, "image", "_out", "image build output directory")
	f.StringVar(&repo, "repo", "", "release repository directory")
	f.StringArrayVar(&keyPaths, "key", nil, "private signing key (repeat to sign with several keys)")
	f.StringVar(&version, "version", "", "release version (default: the image's)")
	f.StringVar(&minVersion, "min-version", "", "oldest version that may update to this release directly")
	f.StringVar(&platform, "platform", "", "GOOS/GOARCH (default: the image's)")
	f.StringVar(&deltaFrom, "delta-from", "", "also ship a USR delta against this earlier release in the repo (nodes running it download only what changed)")
	f.DurationVar(&validFor, "valid-for", channels.DefaultValidity, "how long nodes believe the signed channel manifest (renew with pith release resign)")
	f.BoolVar(&requireCurrent, "require-current", false, "refuse to release an image behind Debian's security archive (see pith outdated)")
	f.StringVar(&cacheDir, "cache", "", "pith build's cache `DIR`, for the apt indexes (default ~/.cache/pith)")
	cmd.AddCommand(promoteCmd(), resignCmd(), rolloutCmd())
	return cmd
}

func promoteCmd() *cobra.Command {
	var (
		from, to, repo, version, arch string
		keyPaths, trustPaths          []string
		validFor                      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "promote --from beta --to stable --repo DIR --key KEY",
		Short: "Point a channel at the release another channel has (or --version V)",
		Long: `Verifies the source manifest against the signing keys (and --trust keys,
for releases signed by an older key), re-signs it for the target channel and
replaces REPO/channels/<to>.json(.sig). Refuses to move a channel backwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" || repo == "" || (from == "" && version == "") {
				return errors.New("--to, --repo and one of --from or --version are required")
			}
			keys, trusted, err := signingKeys(keyPaths, trustPaths)
			if err != nil {
				return err
			}
			m, err := channels.Promote(channels.ArchDir(repo, arch), from, to, version, keys, trusted, validFor)
			if err != nil {
				return err
			}
			src := from
			if version != "" {
				src = "version " + version
			}
			fmt.Fprintf(cmd.OutOrStdout(), "channel %s now at %s (from %s), valid until %s\n", to, m.Version, src, m.Expires.Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "source channel")
	f.StringVar(&to, "to", "", "target channel")
	f.StringVar(&version, "version", "", "promote this released version instead of --from's")
	f.StringVar(&repo, "repo", "", "release repository directory")
	f.StringVar(&arch, "arch", channels.RootArch, "architecture whose channel to change: amd64 (REPO itself) or arm64 (REPO/arm64)")
	f.StringArrayVar(&keyPaths, "key", nil, "private signing key (repeatable)")
	f.StringArrayVar(&trustPaths, "trust", nil, "extra public key the source manifest may be signed with (repeatable)")
	f.DurationVar(&validFor, "valid-for", channels.DefaultValidity, "how long nodes believe the promoted channel manifest")
	return cmd
}

// signingKeys loads the private keys and the keys a manifest being
// re-signed may carry a signature of: the signing keys' public halves and
// the --trust files.
func signingKeys(keyPaths, trustPaths []string) ([]ed25519.PrivateKey, *channels.Keyring, error) {
	keys, err := loadKeys(keyPaths)
	if err != nil {
		return nil, nil, err
	}
	trusted := channels.NewKeyring()
	for _, k := range keys {
		trusted.Add(k.Public().(ed25519.PublicKey))
	}
	for _, p := range trustPaths {
		k, err := channels.LoadPublicKeyFile(p)
		if err != nil {
			return nil, nil, err
		}
		trusted.Add(k)
	}
	return keys, trusted, nil
}

func resignCmd() *cobra.Command {
	var (
		channel, repo, arch  string
		keyPaths, trustPaths []string
		validFor             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "resign --channel NAME --repo DIR --key KEY",
		Short: "Renew the expiry of a channel's signed manifest",
		Long: `Nodes refuse a channel manifest past its expiry, so an old signed channel
state cannot be replayed to them forever. A channel without a new release
for a while must be re-signed before it expires: this verifies the current
manifest (against the signing keys and --trust keys; it may have expired),
sets a new expiry --valid-for from now, and signs it again. The release
itself (version, payloads) does not change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if channel == "" || repo == "" {
				return errors.New("--channel and --repo are required")
			}
			keys, trusted, err := signingKeys(keyPaths, trustPaths)
			if err != nil {
				return err
			}
			m, err := channels.Resign(channels.ArchDir(repo, arch), channel, keys, trusted, validFor)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "channel %s (%s) re-signed, valid until %s\n", channel, m.Version, m.Expires.Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&channel, "channel", "", "channel to re-sign")
	f.StringVar(&repo, "repo", "", "release repository directory")
	f.StringVar(&arch, "arch", channels.RootArch, "architecture whose channel to change: amd64 (REPO itself) or arm64 (REPO/arm64)")
	f.StringArrayVar(&keyPaths, "key", nil, "private signing key (repeatable)")
	f.StringArrayVar(&trustPaths, "trust", nil, "extra public key the current manifest may be signed with (repeatable)")
	f.DurationVar(&validFor, "valid-for", channels.DefaultValidity, "how long nodes believe the re-signed manifest")
	return cmd
}

func channelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "channel", Short: "Serve release channels"}
	var repo, listen, cert, key string
	var quiet bool
	var fleet fleetOptions
	serve := &cobra.Command{
		Use:   "serve --repo DIR --listen ADDR",
		Short: "Serve a release repository over HTTP(S), with range requests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if repo == "" {
				return errors.New("--repo DIR is required")
			}
			logger := log.New(cmd.ErrOrStderr(), "channel: ", log.LstdFlags)
			reqLog := logger
			if quiet {
				reqLog = log.New(io.Discard, "", 0)
			}
			s, err := channels.NewServer(repo, reqLog)
			if err != nil {
				return err
			}
			defer s.Close()
			stopFleet, err := startFleet(s, repo, fleet, logger)
			if err != nil {
				return err
			}
			defer stopFleet()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen %s: %w", listen, err)
			}
			srv := s.HTTPServer(listen)
			scheme := "http"
			if cert != "" {
				scheme = "https"
			}
			logger.Printf("serving %s at %s://%s/ (channels: %s)", repo, scheme, ln.Addr(), strings.Join(listChannels(repo), ", "))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			errc := make(chan error, 1)
			go func() { errc <- channels.Serve(srv, ln, cert, key) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
				logger.Printf("stopping")
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return srv.Shutdown(sctx)
			}
		},
	}
	f := serve.Flags()
	f.StringVar(&repo, "repo", "", "release repository directory")
	f.StringVar(&listen, "listen", "127.0.0.1:8270", "address to listen on")
	f.StringVar(&cert, "tls-cert", "", "TLS certificate (PEM); serves HTTPS with --tls-key")
	f.StringVar(&key, "tls-key", "", "TLS private key (PEM)")
	f.BoolVar(&quiet, "quiet", false, "do not log each request")
	fleet.flags(f)
	cmd.AddCommand(serve, fetchCmd(), forgetCmd())
	return cmd
}

// fetchCmd does what a node's update agent does, from a workstation: check
// a channel, verify, download with resume, and optionally write the USR
// payload to a file or device, printing each phase's time.
func fetchCmd() *cobra.Command {
	var server, channel, running, platform, dir, target string
	var trust []string
	cmd := &cobra.Command{
		Use:   "fetch --server URL --channel NAME --trust PUB --dir DIR [--usr-target FILE|DEVICE]",
		Short: "Fetch and verify a channel's release as a node would (resumes; prints timings)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" || channel == "" || len(trust) == 0 || dir == "" {
				return errors.New("--server, --channel, --trust and --dir are required")
			}
			keys := channels.NewKeyring()
			for _, p := range trust {
				k, err := channels.LoadPublicKeyFile(p)
				if err != nil {
					return err
				}
				keys.Add(k)
			}
			c, err := channels.NewClient(server, channels.Policy{Keys: keys, Channel: channel, Platform: platform, Running: running})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			c.Progress = func(p channels.Progress) {
				fmt.Fprintf(out, "\r%-7s %6.1f%% of %s  %.1f MB/s ", p.Payload, 100*float64(p.Done)/float64(max(p.Total, 1)), humanBytes(p.Total), p.BytesPerSec/1e6)
				if p.Final {
					fmt.Fprintln(out)
				}
			}
			ctx := cmd.Context()
			m, err := c.Manifest(ctx, channel)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "channel %s: %s (released %s, %s)\n", channel, m.Version, m.Released.Format(time.RFC3339), m.Platform)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			files := map[string]string{}
			start := time.Now()
			var total int64
			for _, p := range m.Payloads {
				path, err := c.Download(ctx, p, dir)
				if err != nil {
					return err
				}
				files[p.Name] = path
				total += p.Size
			}
			secs := time.Since(start).Seconds()
			fmt.Fprintf(out, "download+verify: %s in %.2fs (%.0f MB/s)\n", humanBytes(total), secs, float64(total)/1e6/secs)
			if target == "" {
				return nil
			}
			usr, ok := m.Payload(channels.PayloadUSR)
			if !ok {
				return fmt.Errorf("release %s has no usr payload", m.Version)
			}
			st, err := channels.WritePayload(ctx, files[channels.PayloadUSR], usr, channels.Target{Path: target}, nil)
			if err != nil {
				return err
			}
			how := "page cache"
			if st.Direct {
				how = "O_DIRECT"
			}
			fmt.Fprintf(out, "write %s to %s (%s): %.2fs (%.0f MB/s, decompress+write+fsync), read-back verify %.2fs (%.0f MB/s)\n",
				humanBytes(st.Bytes), target, how, st.Write, float64(st.Bytes)/1e6/st.Write, st.ReadBack, float64(st.Bytes)/1e6/st.ReadBack)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "channel server URL, e.g. http://127.0.0.1:8270/")
	f.StringVar(&channel, "channel", "stable", "channel")
	f.StringArrayVar(&trust, "trust", nil, "trusted public key file (repeatable)")
	f.StringVar(&running, "running", "", "pretend to run this version (refuse older or equal releases)")
	f.StringVar(&platform, "platform", "", "refuse releases for another GOOS/GOARCH")
	f.StringVar(&dir, "dir", "", "download directory (partial files resume from here)")
	f.StringVar(&target, "usr-target", "", "existing file or block device to write the USR payload to")
	return cmd
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// withBar shows a byte progress bar on a terminal while r is read (packing
// a 1 GiB USR takes a while); elsewhere it returns r as is.
func withBar(w io.Writer, size int64, desc string, open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	r, err := open()
	if err != nil {
		return nil, err
	}
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return r, nil
	}
	bar := progressbar.NewOptions64(size, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("  "+desc),
		progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish())
	pr := progressbar.NewReader(r, bar)
	return struct {
		io.Reader
		io.Closer
	}{&pr, r}, nil
}

func listChannels(repo string) []string {
	ents, _ := os.ReadDir(filepath.Join(repo, "channels"))
	var out []string
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(name, ".") {
			if m, err := channels.ChannelManifest(repo, name); err == nil {
				out = append(out, name+"="+m.Version)
			}
		}
	}
	if len(out) == 0 {
		return []string{"none yet"}
	}
	return out
}
