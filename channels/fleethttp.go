package channels

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// serveFleet answers the fleet API and the dashboard; it reports whether the
// path was one of them.
//
//	POST /v1/report            a node's signed report
//	GET  /v1/rollout/<channel> the rollout document nodes decide from
//	GET  /v1/fleet             the dashboard's data (?last=N bounds the machine list)
//	GET  /                     the dashboard (?part=body: its live-updated part)
func (s *Server) serveFleet(w http.ResponseWriter, r *http.Request) bool {
	f := s.Fleet
	switch p := r.URL.Path; {
	case p == "/v1/report":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return true
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReportBytes))
		if err != nil {
			http.Error(w, "report: "+err.Error(), http.StatusRequestEntityTooLarge)
			return true
		}
		if err := f.Ingest(body); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrReportSignature) || errors.Is(err, ErrReportRefused) {
				code = http.StatusForbidden
			}
			http.Error(w, err.Error(), code)
			return true
		}
		w.WriteHeader(http.StatusNoContent)
		return true
	case strings.HasPrefix(p, "/v1/rollout/"):
		if !getOnly(w, r) {
			return true
		}
		ch := strings.TrimPrefix(p, "/v1/rollout/")
		if !ValidChannelName(ch) {
			http.Error(w, "bad channel name", http.StatusBadRequest)
			return true
		}
		d := f.RolloutDoc(ch)
		if d == nil {
			http.Error(w, "no rollout on channel "+ch, http.StatusNotFound)
			return true
		}
		writeJSON(w, d)
		return true
	case p == "/v1/fleet":
		if !getOnly(w, r) {
			return true
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("last"))
		writeJSON(w, f.View(n))
		return true
	case p == "/":
		if !getOnly(w, r) {
			return true
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		// The page loads nothing from elsewhere (operators' networks often
		// have no internet): inline style, inline script, inline SVG.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:")
		if err := renderDashboard(w, f.View(dashboardMachines), r.URL.Query().Get("part") == "body"); err != nil {
			s.log.Printf("dashboard: %v", err)
		}
		return true
	}
	return false
}

// dashboardMachines bounds the machine table; /v1/fleet has them all.
const dashboardMachines = 200

func getOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_ = json.NewEncoder(w).Encode(v)
}
