package update

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/pith-os/pith/rebootlock"
)

// RegisterHTTP serves the agent on pithd's API:
//
//	GET  /pith/v1/update          status (phase, versions, progress, timing)
//	POST /pith/v1/update/check    check the channel now
//	GET  /pith/v1/update/history  applied, updated, rollback events
func (a *Agent) RegisterHTTP(mux *http.ServeMux) {
	mux.HandleFunc("GET /pith/v1/update", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status())
	})
	mux.HandleFunc("POST /pith/v1/update/check", func(w http.ResponseWriter, r *http.Request) {
		a.CheckNow()
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "check requested"})
	})
	mux.HandleFunc("GET /pith/v1/update/history", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status().History)
	})
}

// RegisterLockHTTP serves the reboot semaphore, like locksmithctl:
//
//	GET  /pith/v1/locks[?group=G]                  status
//	POST /pith/v1/locks/unlock?machine=ID[&group=G] release a holder's slot
//	POST /pith/v1/locks/max?n=N[&group=G]           set max holders
func RegisterLockHTTP(mux *http.ServeMux, kv rebootlock.KV) {
	sem := func(r *http.Request) *rebootlock.Semaphore {
		return &rebootlock.Semaphore{KV: kv, Key: rebootlock.GroupSemaphoreKey(r.URL.Query().Get("group"))}
	}
	mux.HandleFunc("GET /pith/v1/locks", func(w http.ResponseWriter, r *http.Request) {
		st, err := sem(r).Status(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /pith/v1/locks/unlock", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("machine")
		if id == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "machine= is required"})
			return
		}
		if err := sem(r).Unlock(r.Context(), id); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"unlocked": id})
	})
	mux.HandleFunc("POST /pith/v1/locks/max", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "n= must be a number >= 0"})
			return
		}
		old, err := sem(r).SetMax(r.Context(), n)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"old": old, "new": n})
	})
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, rebootlock.ErrNotHolder) {
		code = http.StatusNotFound
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
