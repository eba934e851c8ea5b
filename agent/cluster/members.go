package cluster

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Member is a cluster member as /v2/members shows it.
type Member struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
}

// MemberID derives a member's ID from its peer URLs and the cluster token,
// so a node that joins computes the same ID the cluster gave it when it was
// added. Printed in hex, as etcd does.
func MemberID(peerURLs []string, token string) string {
	u := append([]string(nil), peerURLs...)
	sort.Strings(u)
	sum := sha256.Sum256([]byte(strings.Join(u, ",") + "|" + token))
	return strconv.FormatUint(binary.BigEndian.Uint64(sum[:8]), 16)
}

// ClusterID derives the cluster ID from the initial members and the token.
func ClusterID(memberIDs []string, token string) string {
	ids := append([]string(nil), memberIDs...)
	sort.Strings(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, ",") + "|" + token))
	return strconv.FormatUint(binary.BigEndian.Uint64(sum[:8]), 16)
}

// peerAddr is the host:port raft dials for a peer URL.
func peerAddr(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("peer URL %q: %w", u, err)
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return "", fmt.Errorf("peer URL %q: scheme must be http or https", u)
	}
	if p.Port() == "" {
		return "", fmt.Errorf("peer URL %q: no port", u)
	}
	return p.Host, nil
}

// membership is the members namespace: who is in the cluster, their names
// and URLs, and the cluster's identity.
type membership struct {
	mu        sync.RWMutex
	clusterID string
	token     string
	members   map[string]*Member
}

func newMembership() *membership { return &membership{members: map[string]*Member{}} }

type memberCmd struct {
	Op        string    `json:"op"` // init, add, remove, publish
	ClusterID string    `json:"clusterID,omitempty"`
	Token     string    `json:"token,omitempty"`
	Members   []*Member `json:"members,omitempty"`
}

func (m *membership) Apply(_ uint64, b []byte) any {
	var c memberCmd
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("members: bad command: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch c.Op {
	case "init":
		if m.clusterID != "" {
			return nil // a later leader's init: the first one stands
		}
		m.clusterID, m.token = c.ClusterID, c.Token
		for _, mb := range c.Members {
			if _, ok := m.members[mb.ID]; !ok {
				m.members[mb.ID] = clone(mb)
			}
		}
	case "add":
		for _, mb := range c.Members {
			m.members[mb.ID] = clone(mb)
		}
	case "remove":
		for _, mb := range c.Members {
			delete(m.members, mb.ID)
		}
	case "publish":
		for _, mb := range c.Members {
			old, ok := m.members[mb.ID]
			if !ok {
				continue // removed meanwhile
			}
			old.Name = mb.Name
			old.ClientURLs = append([]string{}, mb.ClientURLs...)
		}
	default:
		return fmt.Errorf("members: unknown op %q", c.Op)
	}
	return nil
}

func clone(mb *Member) *Member {
	c := *mb
	c.PeerURLs = append([]string{}, mb.PeerURLs...)
	c.ClientURLs = append([]string{}, mb.ClientURLs...)
	return &c
}

type membershipSnap struct {
	ClusterID string    `json:"clusterID"`
	Token     string    `json:"token"`
	Members   []*Member `json:"members"`
}

func (m *membership) Save(w io.Writer) error {
	return json.NewEncoder(w).Encode(membershipSnap{ClusterID: m.clusterIDValue(), Token: m.tokenValue(), Members: m.list()})
}

func (m *membership) Restore(r io.Reader) error {
	var s membershipSnap
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clusterID, m.token = s.ClusterID, s.Token
	m.members = map[string]*Member{}
	for _, mb := range s.Members {
		m.members[mb.ID] = mb
	}
	return nil
}

func (m *membership) list() []*Member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Member, 0, len(m.members))
	for _, mb := range m.members {
		out = append(out, clone(mb))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (m *membership) get(id string) *Member {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if mb, ok := m.members[id]; ok {
		return clone(mb)
	}
	return nil
}

func (m *membership) clusterIDValue() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.clusterID
}

func (m *membership) tokenValue() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.token
}
