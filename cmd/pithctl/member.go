package main

// etcdctl v2's member commands.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	etcd "go.etcd.io/etcd/client/v2"
)

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
