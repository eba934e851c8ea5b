package main

// watch and exec-watch.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/spf13/cobra"
	etcd "go.etcd.io/etcd/client/v2"
)

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
