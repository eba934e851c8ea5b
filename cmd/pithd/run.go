package main

// `pithd run` is the node agent's main entry: it starts every registered
// subsystem. The KV (with the cluster's raft) is built in and on by default;
// other subsystems register from their own files:
//
//	func init() {
//		registerSubsystem(subsystem{
//			Name:  "schedule",
//			Flags: func(fs *pflag.FlagSet) { ... },
//			Setup: func(env *runEnv) error { // before raft starts
//				return env.Cluster.Register(cluster.NamespaceSchedule, sm)
//			},
//			Start: func(ctx context.Context, env *runEnv) error { ... },
//		})
//	}

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/agent/kv"
)

// subsystem is one part of the node agent.
type subsystem struct {
	Name string
	// Order sorts Setup and Start calls (lower first; ties by name).
	Order int
	// Flags adds the subsystem's flags to `pithd run`.
	Flags func(fs *pflag.FlagSet)
	// Setup runs after flags are parsed and before the cluster starts:
	// register raft namespaces (env.Cluster.Register) and leader hooks
	// (env.Cluster.OnLeader) here, and routes on env.Mux.
	Setup func(env *runEnv) error
	// Start runs once the cluster and client listeners are up. It must
	// return promptly; background work stops when ctx ends.
	Start func(ctx context.Context, env *runEnv) error
}

// runEnv is what subsystems share.
type runEnv struct {
	Log *slog.Logger
	// Mux serves the client port (next to /v2/keys, /v2/members...).
	Mux *http.ServeMux
	// Cluster is the raft node; nil when the KV is disabled (--kv=false).
	Cluster *cluster.Node
	// KV is the local replica of the key space (nil with --kv=false).
	KV *kv.Store
	// DataDir is the KV's data dir; subsystems keep their files below it.
	DataDir string
}

var subsystems []subsystem

// registerSubsystem adds s to `pithd run`. Call it from an init function;
// flags are added at once (runCmd exists before any init runs).
func registerSubsystem(s subsystem) {
	subsystems = append(subsystems, s)
	if s.Flags != nil {
		s.Flags(runCmd.Flags())
	}
}

var runCmd = &cobra.Command{
	Use:   "run",
	Short: "Run the node agent: the KV store and every other subsystem",
	Long: `Run the node agent. The KV store takes etcd's flags and ETCD_* environment
variables (ETCD_NAME, ETCD_INITIAL_CLUSTER, ...), so cloud-config's coreos.etcd2
section maps onto it one to one. A flag given on the command line wins over
its environment variable.`,
	Args: cobra.NoArgs,
	RunE: runAgent,
}

func init() {
	rootCmd.AddCommand(runCmd)
}

// envOverrides applies ETCD_<FLAG_NAME> variables to flags not given on the
// command line (etcd's own rule).
func envOverrides(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		key := "ETCD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", key, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func runAgent(cmd *cobra.Command, _ []string) error {
	if err := envOverrides(cmd.Flags()); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	env := &runEnv{Log: log, Mux: http.NewServeMux()}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	subs := append([]subsystem(nil), subsystems...)
	sort.SliceStable(subs, func(i, j int) bool {
		if subs[i].Order != subs[j].Order {
			return subs[i].Order < subs[j].Order
		}
		return subs[i].Name < subs[j].Name
	})
	kvRun, err := setupKV(ctx, env)
	if err != nil {
		return err
	}
	for _, s := range subs {
		if s.Setup != nil {
			if err := s.Setup(env); err != nil {
				kvRun.stop()
				return fmt.Errorf("%s: %w", s.Name, err)
			}
		}
	}
	if err := kvRun.start(ctx); err != nil {
		kvRun.stop()
		return err
	}
	defer kvRun.stop()
	for _, s := range subs {
		if s.Start != nil {
			if err := s.Start(ctx, env); err != nil {
				return fmt.Errorf("%s: %w", s.Name, err)
			}
		}
	}
	log.Info("pithd running", "name", kvFlags.name, "kv", kvFlags.enabled)
	select {
	case <-ctx.Done():
	case err := <-kvRun.errc:
		return err
	}
	log.Info("pithd stopping")
	return nil
}
