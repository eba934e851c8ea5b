package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pith-os/pith/atomicfile"

	"golang.org/x/crypto/ssh"
)

// ClusterConfig describes N identical nodes sharing one private network.
type ClusterConfig struct {
	Dir   string // state directory: key pair, switch socket, one subdirectory per node
	Nodes int
	Node  Config // template; Name, Switch, MACs, IPs and SSHKey are filled per node
	// UserData, if set, is node i's user-data file in place of
	// Node.UserData: what differs per node, such as its member certificate.
	UserData []string
	Log      func(format string, args ...any)
}

// Cluster is a set of running nodes.
type Cluster struct {
	Dir      string
	Machines []*Machine
	Switch   *Switch
	Key      ssh.Signer
	PubKey   string
	Accel    Accel
}

// StateFile is the cluster's description for other processes (`pith boot status`).
const StateFile = "cluster.json"

// State is the content of StateFile.
type State struct {
	Supervisor int    `json:"supervisor_pid"`
	Accel      string `json:"accel"`
	Key        string `json:"ssh_key"`
	User       string `json:"ssh_user"`
	Nodes      []Info `json:"nodes"`
}

// NodeName is the name of the i-th node (0-based).
func NodeName(i int) string { return fmt.Sprintf("node%d", i+1) }

// PrivateIPv4 is the address the i-th node gets on the private network.
func PrivateIPv4(i int) string { return fmt.Sprintf("10.77.0.%d/24", 11+i) }

// StartCluster starts the switch and all nodes; on error nothing is left running.
func StartCluster(ctx context.Context, cc ClusterConfig) (*Cluster, error) {
	if cc.Nodes < 1 || cc.Nodes > 64 {
		return nil, fmt.Errorf("nodes %d: use 1 to 64", cc.Nodes)
	}
	if cc.Log == nil {
		cc.Log = func(string, ...any) {}
	}
	if cc.UserData != nil && len(cc.UserData) != cc.Nodes {
		return nil, fmt.Errorf("%d user-data files for %d nodes", len(cc.UserData), cc.Nodes)
	}
	dir, err := filepath.Abs(cc.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	key, pub, err := EnsureKey(dir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Key: key, PubKey: pub, Accel: cc.Node.Accel}
	sock := filepath.Join(dir, "switch.sock")
	if len(sock) > unixPathMax {
		return nil, fmt.Errorf("state path too long for a unix socket: %s; use a shorter --state", sock)
	}
	if c.Switch, err = NewSwitch(sock); err != nil {
		return nil, fmt.Errorf("private network: %v", err)
	}
	for i := 0; i < cc.Nodes; i++ {
		cfg := cc.Node
		cfg.Name = NodeName(i)
		cfg.Switch = sock
		cfg.PrivateMAC = fmt.Sprintf("52:54:00:77:00:%02x", i+1)
		cfg.PrivateIPv4 = PrivateIPv4(i)
		if cc.UserData != nil {
			cfg.UserData = cc.UserData[i]
		}
		if cfg.SSHKey == "" {
			cfg.SSHKey = pub
		}
		m, err := Start(ctx, cfg, filepath.Join(dir, cfg.Name))
		if err != nil {
			c.Stop(0)
			return nil, err
		}
		cc.Log("%s: started (pid %d)", cfg.Name, m.PID())
		c.Machines = append(c.Machines, m)
	}
	return c, c.WriteState()
}

// WriteState records the cluster in Dir/cluster.json.
func (c *Cluster) WriteState() error {
	st := State{Supervisor: os.Getpid(), Accel: c.Accel.Name, Key: filepath.Join(c.Dir, KeyFile), User: DefaultUser}
	for _, m := range c.Machines {
		st.Nodes = append(st.Nodes, m.Info())
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(c.Dir, StateFile), append(b, '\n'), 0o644)
}

// Stop powers all nodes off in parallel (ACPI, up to grace), then kills what
// is left and closes the switch.
func (c *Cluster) Stop(grace time.Duration) {
	var wg sync.WaitGroup
	for _, m := range c.Machines {
		wg.Add(1)
		go func() { defer wg.Done(); m.Stop(grace) }()
	}
	wg.Wait()
	if c.Switch != nil {
		c.Switch.Close()
	}
}

// Machine returns the node by name ("node2") or 1-based number ("2").
func (c *Cluster) Machine(name string) (*Machine, error) {
	for i, m := range c.Machines {
		if m.Config.Name == name || fmt.Sprint(i+1) == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no node %q (have node1..node%d)", name, len(c.Machines))
}

// LoadState reads a state directory's cluster.json.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("no cluster in %s: start one with `pith boot`", dir)
		}
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(dir, StateFile), err)
	}
	return &st, nil
}

// Node returns the node by name or 1-based number.
func (st *State) Node(name string) (*Info, error) {
	for i := range st.Nodes {
		if st.Nodes[i].Name == name || fmt.Sprint(i+1) == name {
			return &st.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("no node %q (have node1..node%d)", name, len(st.Nodes))
}
