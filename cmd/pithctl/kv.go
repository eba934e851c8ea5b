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
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	etcd "go.etcd.io/etcd/client/v2"

	"github.com/pith-os/pith/agent/cluster"
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
	tls          cluster.TLSInfo
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
	return []string{"http://127.0.0.1:2379"}
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
	if len(eps) > 0 {
		base, err := transport(eps[0], tr)
		if err != nil {
			return nil, &exitError{exitBadArgs, err}
		}
		if strings.HasPrefix(eps[0], "unix:") {
			// The socket is this node's pithd: syncing would swap it for
			// the members' TCP URLs, which need a certificate.
			eps, noSync = []string{base}, true
		}
	}
	c, err := etcd.New(etcd.Config{Endpoints: eps, Transport: tr, HeaderTimeoutPerRequest: 0})
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

	var sorted, quorum bool
	get := &cobra.Command{Use: "get KEY", Short: "Print a key's value",
		RunE: kvRun(1, "key required", func(ctx context.Context, k etcd.KeysAPI, a []string) error {
			resp, err := k.Get(ctx, a[0], &etcd.GetOptions{Sort: sorted, Quorum: quorum})
			if err != nil {
				return err
			}
			if resp.Node.Dir {
				return &exitError{exitBadArgs, fmt.Errorf("%s: is a directory", resp.Node.Key)}
			}
			printResponse(os.Stdout, resp, kvOpts.output)
			return nil
		})}
	get.Flags().BoolVar(&sorted, "sort", false, "return results in sorted order")
	get.Flags().BoolVar(&quorum, "quorum", false, "linearizable read through the leader")

	var ttl int
	var swapValue string
	var swapIndex uint64
	set := &cobra.Command{Use: "set KEY VALUE", Short: "Set a key's value",
		RunE: kvRun(2, "key and value required", func(ctx context.Context, k etcd.KeysAPI, a []string) error {
			resp, err := k.Set(ctx, a[0], a[1], &etcd.SetOptions{TTL: time.Duration(ttl) * time.Second, PrevValue: swapValue, PrevIndex: swapIndex})
			if err != nil {
				return err
			}
			printResponse(os.Stdout, resp, kvOpts.output)
			return nil
		})}
	set.Flags().IntVar(&ttl, "ttl", 0, "key time-to-live in seconds")
	set.Flags().StringVar(&swapValue, "swap-with-value", "", "only set if the previous value is this")
	set.Flags().Uint64Var(&swapIndex, "swap-with-index", 0, "only set if the previous modified index is this")

	var mkTTL int
	var inOrder bool
	mk := &cobra.Command{Use: "mk KEY VALUE", Short: "Make a new key (fails if it exists)",
		RunE: kvRun(2, "key and value required", func(ctx context.Context, k etcd.KeysAPI, a []string) error {
			var resp *etcd.Response
			var err error
			if inOrder {
				resp, err = k.CreateInOrder(ctx, a[0], a[1], &etcd.CreateInOrderOptions{TTL: time.Duration(mkTTL) * time.Second})
			} else {
				resp, err = k.Set(ctx, a[0], a[1], &etcd.SetOptions{TTL: time.Duration(mkTTL) * time.Second, PrevExist: etcd.PrevNoExist})
			}
			if err != nil {
				return err
			}
			printResponse(os.Stdout, resp, kvOpts.output)
			return nil
		})}
	mk.Flags().IntVar(&mkTTL, "ttl", 0, "key time-to-live in seconds")
	mk.Flags().BoolVar(&inOrder, "in-order", false, "create an in-order key under KEY (a directory)")

	dirCmd := func(use, short string, exist etcd.PrevExistType) *cobra.Command {
		var dttl int
		c := &cobra.Command{Use: use + " KEY", Short: short,
			RunE: kvRun(1, "key required", func(ctx context.Context, k etcd.KeysAPI, a []string) error {
				resp, err := k.Set(ctx, a[0], "", &etcd.SetOptions{TTL: time.Duration(dttl) * time.Second, Dir: true, PrevExist: exist})
				if err != nil {
					return err
				}
				if kvOpts.output != "simple" {
					printResponse(os.Stdout, resp, kvOpts.output)
				}
				return nil
			})}
		c.Flags().IntVar(&dttl, "ttl", 0, "directory time-to-live in seconds")
		return c
	}

	var upTTL int
	update := &cobra.Command{Use: "update KEY VALUE", Short: "Update an existing key",
		RunE: kvRun(2, "key and value required", func(ctx context.Context, k etcd.KeysAPI, a []string) error {
			resp, err := k.Set(ctx, a[0], a[1], &etcd.SetOptions{TTL: time.Duration(upTTL) * time.Second, PrevExist: etcd.PrevExist})
			if err != nil {
				return err
			}
			printResponse(os.Stdout, resp, kvOpts.output)
			return nil
		})}
	update.Flags().IntVar(&upTTL, "ttl", 0, "key time-to-live in seconds")

	var rmDir, rmRec bool
	var withValue string
	var withIndex uint64
	rm := &cobra.Command{Use: "rm KEY", Short: "Remove a key or a directory",
		RunE: kvRun(1, "key required", func(ctx context.Context, k etcd.KeysAPI, a []string) error {
			resp, err := k.Delete(ctx, a[0], &etcd.DeleteOptions{PrevValue: withValue, PrevIndex: withIndex, Dir: rmDir, Recursive: rmRec})
			if err != nil {
				return err
			}
			if !resp.Node.Dir || kvOpts.output != "simple" {
				printResponse(os.Stdout, resp, kvOpts.output)
			}
			return nil
		})}
	rm.Flags().BoolVar(&rmDir, "dir", false, "remove the key if it is an empty directory or a key-value pair")
	rm.Flags().BoolVar(&rmRec, "recursive", false, "remove the key and all child keys")
	rm.Flags().StringVar(&withValue, "with-value", "", "remove only if the value matches")
	rm.Flags().Uint64Var(&withIndex, "with-index", 0, "remove only if the modified index matches")

	rmdir := &cobra.Command{Use: "rmdir KEY", Short: "Remove an empty directory",
		RunE: kvRun(1, "key required", func(ctx context.Context, k etcd.KeysAPI, a []string) error {
			resp, err := k.Delete(ctx, a[0], &etcd.DeleteOptions{Dir: true})
			if err != nil {
				return err
			}
			if kvOpts.output != "simple" {
				printResponse(os.Stdout, resp, kvOpts.output)
			}
			return nil
		})}

	var lsSort, lsRec, lsSlash, lsQuorum bool
	ls := &cobra.Command{Use: "ls [KEY]", Short: "List a directory",
		RunE: func(cmd *cobra.Command, args []string) error {
			key := "/"
			if len(args) > 0 {
				key = args[0]
			}
			return kvRun(1, "", func(ctx context.Context, k etcd.KeysAPI, a []string) error {
				resp, err := k.Get(ctx, a[0], &etcd.GetOptions{Sort: lsSort, Recursive: lsRec, Quorum: lsQuorum})
				if err != nil {
					return err
				}
				if kvOpts.output != "simple" {
					printResponse(os.Stdout, resp, kvOpts.output)
					return nil
				}
				var walk func(n *etcd.Node)
				walk = func(n *etcd.Node) {
					for _, c := range n.Nodes {
						if c.Dir && lsSlash {
							fmt.Println(c.Key + "/")
						} else {
							fmt.Println(c.Key)
						}
						if lsRec {
							walk(c)
						}
					}
				}
				if !resp.Node.Dir {
					fmt.Println(resp.Node.Key)
					return nil
				}
				walk(resp.Node)
				return nil
			})(cmd, []string{key})
		}}
	ls.Flags().BoolVar(&lsSort, "sort", false, "return results in sorted order")
	ls.Flags().BoolVarP(&lsRec, "recursive", "r", false, "list subdirectories recursively")
	ls.Flags().BoolVarP(&lsSlash, "p", "p", false, "append a slash (/) to directories")
	ls.Flags().BoolVar(&lsQuorum, "quorum", false, "linearizable read through the leader")

	kvCmd.AddCommand(get, set, mk, dirCmd("mkdir", "Make a new directory", etcd.PrevNoExist),
		dirCmd("setdir", "Create a directory or refresh its TTL", etcd.PrevIgnore),
		update, rm, rmdir, ls, watchCmd(), execWatchCmd())
}

type watchFlags struct {
	forever   bool
	after     uint64
	recursive bool
}

// watchLoop delivers events to fn; with forever it keeps watching after
// each event and resumes after a broken connection from the last index.
func watchLoop(wf *watchFlags, key string, fn func(*etcd.Response) error) error {
	if err := checkFormat(); err != nil {
		return err
	}
	ctx := context.Background()
	c, err := newEtcdClient(ctx)
	if err != nil {
		return err
	}
	k := etcd.NewKeysAPI(c)
	w := k.Watcher(key, &etcd.WatcherOptions{AfterIndex: wf.after, Recursive: wf.recursive})
	for {
		resp, err := w.Next(ctx)
		if err != nil {
			var ce etcd.Error
			if errors.As(err, &ce) && ce.Code == etcd.ErrorCodeEventIndexCleared && wf.forever {
				// Fell out of the history window: restart from now.
				w = k.Watcher(key, &etcd.WatcherOptions{Recursive: wf.recursive})
				continue
			}
			return err
		}
		if err := fn(resp); err != nil {
			return err
		}
		if !wf.forever {
			return nil
		}
	}
}

func watchCmd() *cobra.Command {
	wf := &watchFlags{}
	c := &cobra.Command{Use: "watch KEY", Short: "Watch a key for changes",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return handle(&exitError{exitBadArgs, errors.New("key required")})
			}
			return handle(watchLoop(wf, args[0], func(r *etcd.Response) error {
				if wf.forever && kvOpts.output == "simple" {
					fmt.Printf("[%s] %s\n", r.Action, r.Node.Key)
				}
				printResponse(os.Stdout, r, kvOpts.output)
				return nil
			}))
		}}
	c.Flags().BoolVar(&wf.forever, "forever", false, "forever watch a key until CTRL+C")
	c.Flags().Uint64Var(&wf.after, "after-index", 0, "watch after the given index")
	c.Flags().BoolVar(&wf.recursive, "recursive", false, "returns all values for key and child keys")
	return c
}

func execWatchCmd() *cobra.Command {
	wf := &watchFlags{forever: true}
	c := &cobra.Command{Use: "exec-watch KEY -- COMMAND [ARGS...]", Short: "Watch a key and run a command on each change",
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if len(args) < 2 || dash != 1 {
				return handle(&exitError{exitBadArgs, errors.New("usage: pithctl kv exec-watch KEY -- COMMAND [ARGS...]")})
			}
			key, argv := args[0], args[1:]
			return handle(watchLoop(wf, key, func(r *etcd.Response) error {
				x := exec.Command(argv[0], argv[1:]...)
				x.Env = append(os.Environ(),
					"ETCD_WATCH_ACTION="+r.Action,
					"ETCD_WATCH_KEY="+r.Node.Key,
					"ETCD_WATCH_VALUE="+r.Node.Value,
					fmt.Sprintf("ETCD_WATCH_MODIFIED_INDEX=%d", r.Node.ModifiedIndex))
				x.Stdin, x.Stdout, x.Stderr = os.Stdin, os.Stdout, os.Stderr
				if err := x.Run(); err != nil {
					fmt.Fprintln(os.Stderr, "exec-watch:", err)
				}
				return nil
			}))
		}}
	c.Flags().Uint64Var(&wf.after, "after-index", 0, "watch after the given index")
	c.Flags().BoolVar(&wf.recursive, "recursive", false, "watch all values for key and child keys")
	return c
}

var memberCmd = &cobra.Command{Use: "member", Short: "List, add and remove cluster members"}

func init() {
	addClientFlags(memberCmd)
	rootCmd.AddCommand(memberCmd)
	membersRun := func(nargs int, usage string, body func(ctx context.Context, m etcd.MembersAPI, a []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			if len(args) != nargs {
				return handle(&exitError{exitBadArgs, errors.New(usage)})
			}
			ctx, cancel := opCtx()
			defer cancel()
			c, err := newEtcdClient(ctx)
			if err != nil {
				return handle(err)
			}
			return handle(body(ctx, etcd.NewMembersAPI(c), args))
		}
	}
	memberCmd.AddCommand(&cobra.Command{Use: "list", Short: "List the members",
		RunE: membersRun(0, "list takes no arguments", func(ctx context.Context, m etcd.MembersAPI, _ []string) error {
			ms, err := m.List(ctx)
			if err != nil {
				return err
			}
			leader, _ := m.Leader(ctx)
			for _, mb := range ms {
				isLeader := leader != nil && leader.ID == mb.ID
				fmt.Printf("%s: name=%s peerURLs=%s clientURLs=%s isLeader=%v\n", mb.ID, mb.Name, strings.Join(mb.PeerURLs, ","), strings.Join(mb.ClientURLs, ","), isLeader)
			}
			return nil
		})})
	memberCmd.AddCommand(&cobra.Command{Use: "add NAME PEER_URL", Short: "Add a member (then start it with --initial-cluster-state existing)",
		RunE: membersRun(2, "usage: pithctl member add NAME PEER_URL", func(ctx context.Context, m etcd.MembersAPI, a []string) error {
			nm, err := m.Add(ctx, a[1])
			if err != nil {
				return err
			}
			ms, err := m.List(ctx)
			if err != nil {
				return err
			}
			var ic []string
			for _, mb := range ms {
				name := mb.Name
				if mb.ID == nm.ID {
					name = a[0]
				}
				for _, u := range mb.PeerURLs {
					if name != "" {
						ic = append(ic, name+"="+u)
					}
				}
			}
			fmt.Printf("Added member named %s with ID %s to cluster\n\n", a[0], nm.ID)
			fmt.Printf("ETCD_NAME=%q\nETCD_INITIAL_CLUSTER=%q\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n", a[0], strings.Join(ic, ","))
			return nil
		})})
	memberCmd.AddCommand(&cobra.Command{Use: "remove MEMBER_ID", Short: "Remove a member",
		RunE: membersRun(1, "usage: pithctl member remove MEMBER_ID", func(ctx context.Context, m etcd.MembersAPI, a []string) error {
			if err := m.Remove(ctx, a[0]); err != nil {
				return err
			}
			fmt.Printf("Removed member %s from cluster\n", a[0])
			return nil
		})})
}
