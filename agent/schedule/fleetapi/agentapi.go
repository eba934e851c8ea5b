package fleetapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/unitfile"
)

// HeartbeatPath is where the leader receives agent heartbeats. They never
// touch the raft log; a follower's agent sends them to the leader over the
// peer port, and pithd accepts them only from there (service.Config's
// FromMember): the client port and the unix socket refuse them.
const HeartbeatPath = "/pith/v1/schedule/heartbeat"

// AppliedIndexHeader carries the leader's applied log index in its answer
// to a heartbeat: an agent starting from an old replica waits until its own
// node has applied that far before it acts on its assignments.
const AppliedIndexHeader = "X-Pith-Applied-Index"

// Heartbeats accepts agent heartbeats for the leader's liveness table, up
// to schedule.MaxHeartbeatSize bytes and valid per Heartbeat.Validate. It
// does not check who sends them: mount it behind a members-only check.
// isLeader, if set, makes non-leaders answer 503 so agents retry the
// current leader; applied, if set, is sent back in AppliedIndexHeader.
func Heartbeats(live *schedule.Liveness, isLeader func() bool, applied func() uint64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			sendError(w, http.StatusMethodNotAllowed, errors.New("only POST supported against this resource"))
			return
		}
		if isLeader != nil && !isLeader() {
			sendError(w, http.StatusServiceUnavailable, errors.New("not the leader"))
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, int64(schedule.MaxHeartbeatSize)+1))
		if err != nil {
			sendError(w, http.StatusBadRequest, fmt.Errorf("unable to read heartbeat: %v", err))
			return
		}
		if len(b) > schedule.MaxHeartbeatSize {
			SendTooLarge(w, schedule.MaxHeartbeatSize)
			return
		}
		var hb schedule.Heartbeat
		if err := json.Unmarshal(b, &hb); err != nil {
			sendError(w, http.StatusBadRequest, fmt.Errorf("unable to decode heartbeat: %v", err))
			return
		}
		if hb.Machine.ID == "" {
			sendError(w, http.StatusBadRequest, errors.New("heartbeat without machine id"))
			return
		}
		if err := hb.Validate(); err != nil {
			sendError(w, http.StatusBadRequest, fmt.Errorf("invalid heartbeat: %v", err))
			return
		}
		live.Heartbeat(hb)
		if applied != nil {
			w.Header().Set(AppliedIndexHeader, strconv.FormatUint(applied(), 10))
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// Inspector is the part of agent/units' Manager the unit API needs.
type Inspector interface {
	StatusText(ctx context.Context, name string, w io.Writer) error
	Journal(ctx context.Context, name string, lines int, follow bool, w io.Writer) error
}

// flushWriter flushes after each write so followed journals stream.
type flushWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func (fw flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}

// Units serves UnitsPath from a local unit backend.
func Units(in Inspector) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			sendError(w, http.StatusMethodNotAllowed, errors.New("only GET supported against this resource"))
			return
		}
		rest := strings.TrimPrefix(r.URL.Path, fleetv1.UnitsPath)
		name, what, ok := strings.Cut(rest, "/")
		if !ok || (what != "status" && what != "journal") {
			sendError(w, http.StatusNotFound, errors.New("use /pith/v1/units/NAME/status or /pith/v1/units/NAME/journal"))
			return
		}
		if err := unitfile.ValidateName(name); err != nil {
			sendError(w, http.StatusBadRequest, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fw := flushWriter{w: w}
		fw.f, _ = w.(http.Flusher)
		var err error
		if what == "status" {
			err = in.StatusText(r.Context(), name, fw)
		} else {
			lines := 10
			if s := r.URL.Query().Get("lines"); s != "" {
				if lines, err = strconv.Atoi(s); err != nil || lines < 0 || lines > 100000 {
					sendError(w, http.StatusBadRequest, errors.New("lines must be an integer from 0 to 100000"))
					return
				}
			}
			err = in.Journal(r.Context(), name, lines, r.URL.Query().Get("follow") == "true", fw)
		}
		if err != nil {
			fmt.Fprintf(fw, "\nerror: %v\n", err)
		}
	})
}
