package main

// pithctl kv ... and pithctl member ...: etcdctl v2's commands and flags,
// spoken through etcd's own v2 client so any etcd v2 endpoint works too.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pith-os/pith/pki"
	"github.com/spf13/cobra"
	etcd "go.etcd.io/etcd/client/v2"
)

// etcdctl's exit codes.
const (
	exitBadArgs        = 1
	exitBadConnection  = 2
	exitServerError    = 4
	exitClusterUnready = 5
)

var kvOpts struct {
	endpoints    []string
	output       string
	timeout      time.Duration
	totalTimeout time.Duration
	noSync       bool
	tls          pki.TLSInfo
}

func defaultEndpoints() []string {
	for _, env := range []string{"PITHCTL_ENDPOINTS", "ETCDCTL_ENDPOINTS", "ETCDCTL_ENDPOINT"} {
		if v := os.Getenv(env); v != "" {
			return strings.Split(v, ",")
		}
	}
	if ep := socketEndpoint(); ep != "" {
		return []string{ep}
	}
	return []string{defaultEndpoint}
}

// addClientFlags adds etcdctl's global flags to a command group.
func addClientFlags(c *cobra.Command) {
	fs := c.PersistentFlags()
	fs.StringSliceVar(&kvOpts.endpoints, "endpoints", defaultEndpoints(), "comma-separated cluster endpoints (env PITHCTL_ENDPOINTS or ETCDCTL_ENDPOINTS)")
	fs.StringVarP(&kvOpts.output, "output", "o", "simple", "output format: simple, extended or json")
	fs.DurationVar(&kvOpts.timeout, "timeout", 2*time.Second, "connection timeout per request")
	fs.DurationVar(&kvOpts.totalTimeout, "total-timeout", 5*time.Second, "timeout for the whole command (watches excepted)")
	fs.BoolVar(&kvOpts.noSync, "no-sync", false, "do not sync the member list before the request")
	addTLSFlags(fs)
	fs.BoolVar(&kvOpts.tls.InsecureSkipVerify, "insecure-skip-tls-verify", false, "do not verify server certificates (unsafe)")
}

// exitError carries etcdctl's exit code to main's error path.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func fail(code int, err error) error {
	fmt.Fprintln(os.Stderr, "Error: ", err)
	os.Exit(code)
	return nil
}

func newEtcdClient(ctx context.Context) (etcd.Client, error) {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: kvOpts.timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: kvOpts.timeout,
	}
	eps := kvOpts.endpoints
	noSync := kvOpts.noSync
	var rt etcd.CancelableTransport = tr
	if len(eps) > 0 {
		base, tp, err := transport(eps[0], tr)
		if err != nil {
			return nil, &exitError{exitBadArgs, err}
		}
		rt = tp
		if strings.HasPrefix(eps[0], "unix:") {
			// The socket is this node's pithd: syncing would swap it for
			// the members' TCP URLs, which need a certificate.
			eps, noSync = []string{base}, true
		}
	}
	c, err := etcd.New(etcd.Config{Endpoints: eps, Transport: rt, HeaderTimeoutPerRequest: 0})
	if err != nil {
		return nil, &exitError{exitBadArgs, err}
	}
	if !noSync {
		sctx, cancel := context.WithTimeout(ctx, kvOpts.totalTimeout)
		defer cancel()
		if err := c.Sync(sctx); err != nil {
			return nil, &exitError{exitBadConnection, err}
		}
	}
	return c, nil
}

func keysAPI(ctx context.Context) (etcd.KeysAPI, error) {
	c, err := newEtcdClient(ctx)
	if err != nil {
		return nil, err
	}
	return etcd.NewKeysAPI(c), nil
}

func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), kvOpts.totalTimeout)
}

// handle turns an error into etcdctl's message and exit code.
func handle(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return fail(ee.code, ee.err)
	}
	// etcd's client buries the transport's advice in "cluster is
	// unavailable or misconfigured; error #0: ...": say it alone.
	var cle *etcd.ClusterError
	if errors.As(err, &cle) {
		for _, e := range cle.Errors {
			if errors.Is(e, errTLSPort) {
				return fail(exitBadConnection, e)
			}
		}
	}
	var ce etcd.Error
	if errors.As(err, &ce) {
		return fail(exitServerError, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "cluster is unavailable") {
		return fail(exitClusterUnready, err)
	}
	return fail(exitBadConnection, err)
}

func printResponse(w *os.File, resp *etcd.Response, format string) {
	switch format {
	case "extended":
		fmt.Fprintln(w, "Key:", resp.Node.Key)
		fmt.Fprintln(w, "Created-Index:", resp.Node.CreatedIndex)
		fmt.Fprintln(w, "Modified-Index:", resp.Node.ModifiedIndex)
		if resp.PrevNode != nil {
			fmt.Fprintln(w, "PrevNode.Value:", resp.PrevNode.Value)
		}
		fmt.Fprintln(w, "TTL:", resp.Node.TTL)
		fmt.Fprintln(w, "Index:", resp.Index)
		if resp.Action != "delete" && resp.Action != "expire" {
			fmt.Fprintln(w, "")
			fmt.Fprintln(w, resp.Node.Value)
		}
	case "json":
		b, _ := json.Marshal(resp)
		fmt.Fprintln(w, string(b))
	default:
		if resp.Action == "delete" || resp.Action == "expire" || resp.Action == "compareAndDelete" {
			if resp.PrevNode != nil {
				fmt.Fprintln(w, "PrevNode.Value:", resp.PrevNode.Value)
			}
			return
		}
		fmt.Fprintln(w, resp.Node.Value)
	}
}

func checkFormat() error {
	switch kvOpts.output {
	case "simple", "extended", "json":
		return nil
	}
	return &exitError{exitBadArgs, fmt.Errorf("--output %q: use simple, extended or json", kvOpts.output)}
}

// kvRun wraps a command body with client setup and etcdctl error handling.
func kvRun(nargs int, usage string, body func(ctx context.Context, k etcd.KeysAPI, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != nargs {
			return handle(&exitError{exitBadArgs, fmt.Errorf("%s", usage)})
		}
		if err := checkFormat(); err != nil {
			return handle(err)
		}
		ctx, cancel := opCtx()
		defer cancel()
		k, err := keysAPI(ctx)
		if err != nil {
			return handle(err)
		}
		return handle(body(ctx, k, args))
	}
}

var kvCmd = &cobra.Command{Use: "kv", Short: "Read, write and watch keys (etcdctl v2's commands)"}

func init() {
	addClientFlags(kvCmd)
	rootCmd.AddCommand(kvCmd)
	kvCmd.AddCommand(kvGetCmd(), kvSetCmd(), kvMkCmd(), kvDirCmd("mkdir", "Make a new directory", etcd.PrevNoExist),
		kvDirCmd("setdir", "Create a directory or refresh its TTL", etcd.PrevIgnore),
		kvUpdateCmd(), kvRmCmd(), kvRmdirCmd(), kvLsCmd(), watchCmd(), execWatchCmd())
}
