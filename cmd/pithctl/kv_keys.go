package main

// etcdctl v2's key commands: get, set, mk, mkdir, setdir, update, rm,
// rmdir, ls.

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	etcd "go.etcd.io/etcd/client/v2"
)

// kvGetCmd is `pithctl kv get`.
func kvGetCmd() *cobra.Command {
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
	return get
}

// kvSetCmd is `pithctl kv set`.
func kvSetCmd() *cobra.Command {
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
	return set
}

// kvMkCmd is `pithctl kv mk`.
func kvMkCmd() *cobra.Command {
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
	return mk
}

// kvDirCmd is `pithctl kv mkdir` and `setdir`: a directory, made whatever
// exists (setdir) or only where nothing does (mkdir).
func kvDirCmd(use, short string, exist etcd.PrevExistType) *cobra.Command {
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

// kvUpdateCmd is `pithctl kv update`.
func kvUpdateCmd() *cobra.Command {
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
	return update
}

// kvRmCmd is `pithctl kv rm`.
func kvRmCmd() *cobra.Command {
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
	return rm
}

// kvRmdirCmd is `pithctl kv rmdir`.
func kvRmdirCmd() *cobra.Command {
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
	return rmdir
}

// kvLsCmd is `pithctl kv ls`.
func kvLsCmd() *cobra.Command {
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
	return ls
}
