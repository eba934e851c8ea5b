package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Versions reported on /version. Clients use them to pick the v2 API.
const (
	ServerVersion  = "2.3.8"
	ClusterVersion = "2.3.0"
)

// maxMemberBody bounds a /v2/members request body.
const maxMemberBody = 64 << 10

// RegisterHTTP adds /v2/members, /v2/stats/self, /v2/stats/leader,
// /version and /health to a client mux.
func (n *Node) RegisterHTTP(mux *http.ServeMux) {
	mux.HandleFunc("/v2/members", n.handleMembers)
	mux.HandleFunc("/v2/members/", n.handleMembers)
	mux.HandleFunc("/v2/stats/self", n.handleStatsSelf)
	mux.HandleFunc("/v2/stats/leader", n.handleStatsLeader)
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, "GET") {
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"etcdserver": ServerVersion, "etcdcluster": ClusterVersion})
	})
	mux.HandleFunc("/health", n.handleHealth)
}

// peerHandler serves the peer port's HTTP side: forwarded client requests
// and the internal propose endpoint.
func (n *Node) peerHandler(client http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/pith/cluster/propose", n.handlePropose) // followers of earlier releases
	mux.HandleFunc(proposalsPath, n.handleProposals)
	mux.Handle("/", client)
	return mux
}

func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ","))
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeMessage answers like etcd's httptypes.HTTPError: {"message": ...}.
func writeMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

func (n *Node) handlePropose(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, "POST") {
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil || len(b) == 0 {
		http.Error(w, "empty command", http.StatusBadRequest)
		return
	}
	// Only the membership namespace is proposed this way (publish).
	if Namespace(b[0]) != NamespaceMembers {
		http.Error(w, "namespace not proposable over the peer port", http.StatusBadRequest)
		return
	}
	res, _, err := n.Propose(r.Context(), Namespace(b[0]), b[1:])
	if err == nil {
		if e, ok := res.(error); ok {
			err = e
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, "GET", "POST", "DELETE") {
		return
	}
	w.Header().Set("X-Etcd-Cluster-ID", n.ClusterID())
	id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v2/members"), "/")
	switch r.Method {
	case "GET":
		if id == "leader" {
			m := n.members.get(n.Leader())
			if m == nil {
				writeMessage(w, http.StatusServiceUnavailable, "During Leader Election")
				return
			}
			writeJSON(w, http.StatusOK, m)
			return
		}
		if id != "" {
			writeMessage(w, http.StatusMethodNotAllowed, "GET takes no member ID")
			return
		}
		writeJSON(w, http.StatusOK, map[string][]*Member{"members": n.Members()})
		return
	case "POST":
		if id != "" {
			writeMessage(w, http.StatusMethodNotAllowed, "POST takes no member ID")
			return
		}
	case "DELETE":
		if id == "" {
			writeMessage(w, http.StatusMethodNotAllowed, "DELETE needs a member ID: /v2/members/<id>")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMemberBody))
	if err != nil {
		writeMessage(w, http.StatusBadRequest, "request body too large")
		return
	}
	if !n.IsLeader() {
		if err := n.Forward(w, r, body); err != nil {
			writeMessage(w, http.StatusServiceUnavailable, err.Error())
		}
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if r.Method == "POST" {
		if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
			writeMessage(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Bad Content-Type %s, accept application/json", ct))
			return
		}
		var req struct {
			PeerURLs []string `json:"peerURLs"`
			Name     string   `json:"name"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeMessage(w, http.StatusBadRequest, "body is not JSON: "+err.Error())
			return
		}
		m, err := n.AddMember(ctx, req.Name, req.PeerURLs)
		switch {
		case errors.Is(err, ErrMemberExist):
			writeMessage(w, http.StatusConflict, err.Error())
		case err != nil && strings.HasPrefix(err.Error(), "peer URL"):
			writeMessage(w, http.StatusBadRequest, err.Error())
		case err != nil:
			writeMessage(w, http.StatusInternalServerError, err.Error())
		default:
			writeJSON(w, http.StatusCreated, m)
		}
		return
	}
	err = n.RemoveMember(ctx, id)
	switch {
	case errors.Is(err, ErrNoMember):
		writeMessage(w, http.StatusNotFound, fmt.Sprintf("No such member: %s", id))
	case err != nil:
		writeMessage(w, http.StatusInternalServerError, err.Error())
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// AddMember adds a member by its peer URLs (leader only). It joins as a
// voter while there are fewer than MaxVoters, else as a non-voter.
func (n *Node) AddMember(ctx context.Context, name string, peerURLs []string) (*Member, error) {
	if len(peerURLs) == 0 {
		return nil, errors.New("peer URL list is empty: give peerURLs")
	}
	for _, u := range peerURLs {
		if _, err := peerAddr(u); err != nil {
			return nil, err
		}
	}
	for _, m := range n.Members() {
		for _, a := range m.PeerURLs {
			for _, b := range peerURLs {
				if a == b {
					return nil, ErrMemberExist
				}
			}
		}
	}
	token := n.members.tokenValue()
	if token == "" {
		token = n.cfg.Token
	}
	m := &Member{ID: MemberID(peerURLs, token), Name: name, PeerURLs: peerURLs, ClientURLs: []string{}}
	b, _ := json.Marshal(memberCmd{Op: "add", Members: []*Member{m}})
	if _, _, err := n.Propose(ctx, NamespaceMembers, b); err != nil {
		return nil, err
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		n.unlistFailedAdd(m.ID)
		return nil, err
	}
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	addr, _ := peerAddr(peerURLs[0])
	var fut raft.IndexFuture
	if voters < n.cfg.MaxVoters {
		fut = n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(addr), 0, 10*time.Second)
	} else {
		fut = n.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(addr), 0, 10*time.Second)
	}
	err := fut.Error()
	if err == nil {
		// Like a write: acknowledged once on this leader's disk too.
		err = n.logs.sync.waitDurable(fut.Index(), n.stop)
	}
	if err != nil {
		n.unlistFailedAdd(m.ID)
		return nil, fmt.Errorf("add to raft: %w", err)
	}
	return m, nil
}

// unlistFailedAdd takes back the member record of an add that did not reach
// the raft configuration. Left listed, the peer URL would answer 409 to a
// retry, which JoinCluster takes for "already added": the node would start
// as a member that raft never replicates to.
func (n *Node) unlistFailedAdd(id string) {
	if _, ok, err := n.raftServer(raft.ServerID(id)); err == nil && ok {
		return // the change is in the log after all: keep the record
	}
	b, _ := json.Marshal(memberCmd{Op: "remove", Members: []*Member{{ID: id}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := n.Propose(ctx, NamespaceMembers, b); err != nil {
		n.log.Warn("take back the record of a failed member add", "id", id, "err", err)
	}
}

// RemoveMember removes a member (leader only).
// A member still in the raft configuration but no longer listed (an
// earlier removal failed between the two steps) can be removed again.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	_, inRaft, err := n.raftServer(raft.ServerID(id))
	if err != nil {
		return err
	}
	listed := n.members.get(id) != nil
	if !listed && !inRaft {
		return ErrNoMember
	}
	if listed {
		b, _ := json.Marshal(memberCmd{Op: "remove", Members: []*Member{{ID: id}}})
		if _, _, err := n.Propose(ctx, NamespaceMembers, b); err != nil {
			return err
		}
	}
	fut := n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second)
	if err := fut.Error(); err != nil {
		return fmt.Errorf("remove from raft: %w", err)
	}
	return n.logs.sync.waitDurable(fut.Index(), n.stop)
}

func (n *Node) handleStatsSelf(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, "GET") {
		return
	}
	state := "StateFollower"
	switch n.raft.State() {
	case raft.Leader:
		state = "StateLeader"
	case raft.Candidate:
		state = "StateCandidate"
	}
	st := n.raft.Stats()
	writeJSON(w, http.StatusOK, map[string]any{
		"name":      n.cfg.Name,
		"id":        n.id,
		"state":     state,
		"startTime": n.start.UTC(),
		"leaderInfo": map[string]any{
			"leader": n.Leader(),
			"uptime": time.Since(n.start).Round(time.Millisecond).String(),
		},
		"raftTerm":        st["term"],
		"raftAppliedIdx":  st["applied_index"],
		"raftCommitIdx":   st["commit_index"],
		"raftLastContact": st["last_contact"],
	})
}

func (n *Node) handleStatsLeader(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, "GET") {
		return
	}
	if !n.IsLeader() {
		writeMessage(w, http.StatusForbidden, "not current leader")
		return
	}
	conf, err := n.appliedConfiguration()
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	followers := map[string]any{}
	for _, s := range conf.Servers {
		if string(s.ID) == n.id {
			continue
		}
		f := n.stats.follower(string(s.ID)).snapshot()
		f["suffrage"] = s.Suffrage.String()
		followers[string(s.ID)] = f
	}
	writeJSON(w, http.StatusOK, map[string]any{"leader": n.id, "followers": followers})
}

func (n *Node) handleHealth(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, "GET") {
		return
	}
	if n.Leader() == "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"health": "false"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"health": "true"})
}
