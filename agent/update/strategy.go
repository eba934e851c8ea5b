package update

import (
	"fmt"
	"strings"
)

// Strategy is locksmith's reboot strategy.
type Strategy string

// The strategies. best-effort is the default, as in locksmith.
const (
	StrategyReboot     Strategy = "reboot"      // reboot at once (in the window)
	StrategyEtcdLock   Strategy = "etcd-lock"   // take a slot of the cluster's reboot semaphore first
	StrategyBestEffort Strategy = "best-effort" // etcd-lock in a cluster, reboot otherwise
	StrategyOff        Strategy = "off"         // apply updates, never reboot for them
)

// ParseStrategy accepts locksmith's names; "" is best-effort.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(strings.ToLower(strings.TrimSpace(s))); st {
	case "":
		return StrategyBestEffort, nil
	case StrategyReboot, StrategyEtcdLock, StrategyBestEffort, StrategyOff:
		return st, nil
	}
	return "", fmt.Errorf("reboot strategy %q: use reboot, etcd-lock, best-effort or off", s)
}

// Action is what to do once an update is ready.
type Action int

// Actions.
const (
	ActionNone       Action = iota // strategy off: report "reboot needed" only
	ActionReboot                   // reboot without a lock
	ActionLockReboot               // take the semaphore, then reboot
)

func (a Action) String() string {
	return [...]string{"none", "reboot", "lock-and-reboot"}[a]
}

// Decide maps a strategy to an action. inCluster says whether the node's KV
// is reachable (it is part of a cluster), which best-effort depends on.
func (s Strategy) Decide(inCluster bool) Action {
	switch s {
	case StrategyOff:
		return ActionNone
	case StrategyReboot:
		return ActionReboot
	case StrategyEtcdLock:
		return ActionLockReboot
	default: // best-effort
		if inCluster {
			return ActionLockReboot
		}
		return ActionReboot
	}
}
