// Package fleetapi serves fleet's v1 HTTP API (/fleet/v1/..., its
// resources and client in package fleetv1) over the scheduler's Store,
// with fleet's paths, JSON field names, status codes and error bodies, so
// fleet's own fleetctl works against pithd. It also holds Pith's two
// scheduler endpoints that fleet never had: the agents' heartbeat to the
// leader and the per-machine unit status/journal.
package fleetapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/pith-os/pith/agent/schedule"
	"github.com/pith-os/pith/fleetv1"
	"github.com/pith-os/pith/unitfile"
)

// PageSize is the number of items per page, as in fleet.
const PageSize = 100

// MaxBody bounds a request body: a unit at the model's size limit plus JSON
// overhead. The leader reads PUTs with it and followers forward with it.
const MaxBody = 4 * unitfile.MaxUnitFileSize

// Cluster is the leader's live view (schedule.Liveness satisfies it). On a
// follower, pithd forwards /fleet/v1/machines and /fleet/v1/state to the
// leader or supplies an implementation that asks it.
type Cluster interface {
	Live() []schedule.Machine
	Reports() []schedule.MachineReport
}

type handler struct {
	store   schedule.Store
	cluster Cluster
}

// New returns the /fleet/v1 handler. Mount it at Prefix+"/" (it matches
// full paths).
func New(store schedule.Store, cluster Cluster) http.Handler {
	h := &handler{store: store, cluster: cluster}
	mux := http.NewServeMux()
	mux.HandleFunc(fleetv1.Prefix+"/units", h.units)
	mux.HandleFunc(fleetv1.Prefix+"/units/", h.units)
	mux.HandleFunc(fleetv1.Prefix+"/state", h.state)
	mux.HandleFunc(fleetv1.Prefix+"/state/", h.stateItem)
	mux.HandleFunc(fleetv1.Prefix+"/machines", h.machines)
	mux.HandleFunc(fleetv1.Prefix+"/discovery", discovery)
	mux.HandleFunc(fleetv1.Prefix+"/discovery.json", discovery)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { sendError(w, http.StatusNotFound, nil) })
	return mux
}

func send(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

// SendTooLarge answers 413 for a request body over limit bytes (the
// leader and a forwarding follower say the same).
func SendTooLarge(w http.ResponseWriter, limit int) {
	sendError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes: a unit file may be at most %d bytes, a heartbeat at most %d", limit, unitfile.MaxUnitFileSize, schedule.MaxHeartbeatSize))
}

func sendError(w http.ResponseWriter, code int, err error) {
	var e fleetv1.ErrorBody
	e.Error.Code = code
	if err != nil {
		e.Error.Message = err.Error()
	}
	send(w, code, e)
}

// Page tokens are opaque to clients: the name (or ID) after which the
// next page starts.
func encodeToken(after string) string {
	return base64.URLEncoding.EncodeToString([]byte("v1:" + after))
}

func pageStart(r *http.Request) (string, error) {
	vals := r.URL.Query()["nextPageToken"]
	if len(vals) == 0 {
		return "", nil
	}
	if len(vals) > 1 {
		return "", errors.New("too many values for page token")
	}
	b, err := base64.URLEncoding.DecodeString(vals[0])
	if err != nil || !strings.HasPrefix(string(b), "v1:") || len(b) == 3 {
		return "", errors.New("invalid page token: use the nextPageToken of a previous response")
	}
	return string(b[3:]), nil
}

// page cuts the sorted keys after start into one page.
func page(keys []string, start string) (lo, hi int, next string) {
	lo = sort.SearchStrings(keys, start)
	if start != "" && lo < len(keys) && keys[lo] == start {
		lo++
	}
	hi = min(lo+PageSize, len(keys))
	if hi < len(keys) {
		next = encodeToken(keys[hi-1])
	}
	return lo, hi, next
}

func (h *handler) units(w http.ResponseWriter, r *http.Request) {
	item := strings.TrimPrefix(r.URL.Path, fleetv1.Prefix+"/units")
	if item == "" || item == "/" {
		if r.Method != http.MethodGet {
			sendError(w, http.StatusMethodNotAllowed, errors.New("only GET supported against this resource"))
			return
		}
		h.listUnits(w, r)
		return
	}
	name := item[1:]
	if strings.Contains(name, "/") {
		sendError(w, http.StatusNotFound, nil)
		return
	}
	switch r.Method {
	case http.MethodGet:
		u := h.store.State().Unit(name)
		if u == nil {
			sendError(w, http.StatusNotFound, errors.New("unit does not exist"))
			return
		}
		send(w, http.StatusOK, h.apiUnit(u, h.reportIndex()))
	case http.MethodPut:
		h.set(w, r, name)
	case http.MethodDelete:
		if h.store.State().Unit(name) == nil {
			sendError(w, http.StatusNotFound, errors.New("unit does not exist"))
			return
		}
		if _, err := h.store.Propose(r.Context(), &schedule.Command{Op: schedule.OpDestroyUnit, Name: name}); err != nil {
			if errors.Is(err, schedule.ErrUnitNotFound) {
				sendError(w, http.StatusNotFound, errors.New("unit does not exist"))
				return
			}
			sendError(w, http.StatusInternalServerError, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		sendError(w, http.StatusMethodNotAllowed, errors.New("only GET, PUT and DELETE supported against this resource"))
	}
}

func validateContentType(r *http.Request) error {
	vals := r.Header["Content-Type"]
	if len(vals) != 1 {
		return fmt.Errorf("expected 1 Content-Type, got %d", len(vals))
	}
	if strings.TrimSpace(strings.SplitN(vals[0], ";", 2)[0]) != "application/json" {
		return errors.New("only acceptable Content-Type is application/json")
	}
	return nil
}

func (h *handler) set(w http.ResponseWriter, r *http.Request, name string) {
	if err := validateContentType(r); err != nil {
		sendError(w, http.StatusUnsupportedMediaType, err)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		sendError(w, http.StatusBadRequest, fmt.Errorf("unable to read body: %v", err))
		return
	}
	if len(b) > MaxBody {
		// Not a decode error on a cut body: say what the limit is.
		SendTooLarge(w, MaxBody)
		return
	}
	var su fleetv1.Unit
	if err := json.Unmarshal(b, &su); err != nil {
		sendError(w, http.StatusBadRequest, fmt.Errorf("unable to decode body: %v", err))
		return
	}
	if su.Name == "" {
		su.Name = name
	}
	if su.Name != name {
		sendError(w, http.StatusBadRequest, fmt.Errorf("name in URL %q differs from unit name in request body %q", name, su.Name))
		return
	}
	if err := unitfile.ValidateName(name); err != nil {
		sendError(w, http.StatusBadRequest, err)
		return
	}
	if su.DesiredState != "" {
		if _, err := unitfile.ParseDesiredState(su.DesiredState); err != nil {
			sendError(w, http.StatusBadRequest, err)
			return
		}
	}
	opts := make([]unitfile.UnitOption, 0, len(su.Options))
	for _, o := range su.Options {
		if o == nil {
			sendError(w, http.StatusBadRequest, errors.New("null unit option"))
			return
		}
		opts = append(opts, *o)
	}
	existing := h.store.State().Unit(name)
	var cmd *schedule.Command
	switch {
	case existing == nil && len(opts) == 0:
		sendError(w, http.StatusConflict, errors.New("unit does not exist and options field empty"))
		return
	case existing == nil || len(opts) > 0 && unitfile.Hash(opts) != existing.Hash:
		desired := unitfile.DesiredState(su.DesiredState)
		switch {
		case desired != "":
		case existing != nil:
			// New contents without a state keep the unit's state.
			desired = existing.Desired
		default:
			desired = unitfile.Inactive
		}
		// Validate before proposing so a bad unit costs no log entry.
		if _, err := schedule.NewUnit(name, opts, desired); err != nil {
			sendError(w, http.StatusBadRequest, err)
			return
		}
		cmd = &schedule.Command{Op: schedule.OpCreateUnit, Unit: &schedule.UnitSpec{Name: name, Options: opts, Desired: desired}}
	case su.DesiredState == "":
		sendError(w, http.StatusConflict, errors.New("must provide DesiredState to update existing unit"))
		return
	default:
		cmd = &schedule.Command{Op: schedule.OpSetDesired, Name: name, Desired: unitfile.DesiredState(su.DesiredState)}
	}
	if _, err := h.store.Propose(r.Context(), cmd); err != nil {
		switch {
		case errors.Is(err, schedule.ErrUnitNotFound):
			sendError(w, http.StatusNotFound, errors.New("unit does not exist"))
		case errors.Is(err, schedule.ErrUnitExists):
			// Raced with an identical create: that is what was asked.
			w.WriteHeader(http.StatusNoContent)
		case strings.Contains(err.Error(), "template"):
			sendError(w, http.StatusBadRequest, err)
		default:
			sendError(w, http.StatusInternalServerError, err)
		}
		return
	}
	if existing == nil {
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type reportKey struct{ machine, unit string }

func (h *handler) reportIndex() map[reportKey]schedule.UnitReport {
	idx := map[reportKey]schedule.UnitReport{}
	if h.cluster == nil {
		return idx
	}
	for _, mr := range h.cluster.Reports() {
		for _, u := range mr.Units {
			idx[reportKey{mr.MachineID, u.Name}] = u
		}
	}
	return idx
}

// apiUnit renders a unit. currentState is what the agent on the unit's
// machine reports having reached for this exact unit file; for a global
// unit, the furthest state any machine reached.
func (h *handler) apiUnit(u *schedule.Unit, reports map[reportKey]schedule.UnitReport) *fleetv1.Unit {
	au := &fleetv1.Unit{Name: u.Name, DesiredState: string(u.Desired), MachineID: u.Machine, CurrentState: string(unitfile.Inactive), Reason: u.Reason}
	for i := range u.Options {
		au.Options = append(au.Options, &u.Options[i])
	}
	rank := map[unitfile.DesiredState]int{unitfile.Inactive: 0, unitfile.Loaded: 1, unitfile.Launched: 2}
	if u.Global() {
		for k, r := range reports {
			if k.unit == u.Name && r.Hash == u.Hash && rank[r.Current] > rank[unitfile.DesiredState(au.CurrentState)] {
				au.CurrentState = string(r.Current)
			}
		}
		return au
	}
	if r, ok := reports[reportKey{u.Machine, u.Name}]; ok && u.Machine != "" && r.Hash == u.Hash && r.Current != "" {
		au.CurrentState = string(r.Current)
	}
	return au
}

func (h *handler) listUnits(w http.ResponseWriter, r *http.Request) {
	start, err := pageStart(r)
	if err != nil {
		sendError(w, http.StatusBadRequest, err)
		return
	}
	all := h.store.State().Units()
	keys := make([]string, len(all))
	for i, u := range all {
		keys[i] = u.Name
	}
	lo, hi, next := page(keys, start)
	reports := h.reportIndex()
	p := fleetv1.UnitPage{NextPageToken: next}
	for _, u := range all[lo:hi] {
		p.Units = append(p.Units, h.apiUnit(u, reports))
	}
	send(w, http.StatusOK, p)
}

func (h *handler) state(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		sendError(w, http.StatusMethodNotAllowed, errors.New("only GET supported against this resource"))
		return
	}
	start, err := pageStart(r)
	if err != nil {
		sendError(w, http.StatusBadRequest, err)
		return
	}
	q := r.URL.Query()
	unitFilter := map[string]bool{}
	for _, n := range q["unitName"] {
		unitFilter[n] = true
	}
	machineFilter := map[string]bool{}
	for _, m := range q["machineID"] {
		machineFilter[m] = true
	}
	var all []*fleetv1.UnitState
	if h.cluster != nil {
		for _, mr := range h.cluster.Reports() {
			if len(machineFilter) > 0 && !machineFilter[mr.MachineID] {
				continue
			}
			for _, u := range mr.Units {
				if len(unitFilter) > 0 && !unitFilter[u.Name] {
					continue
				}
				all = append(all, &fleetv1.UnitState{Name: u.Name, Hash: u.Hash, MachineID: mr.MachineID,
					SystemdLoadState: u.LoadState, SystemdActiveState: u.ActiveState, SystemdSubState: u.SubState})
			}
		}
	}
	// Order by unit, then machine, so a global unit's rows stay together.
	sort.Slice(all, func(i, j int) bool {
		if all[i].Name != all[j].Name {
			return all[i].Name < all[j].Name
		}
		return all[i].MachineID < all[j].MachineID
	})
	keys := make([]string, len(all))
	for i, s := range all {
		keys[i] = s.Name + "\x00" + s.MachineID
	}
	lo, hi, next := page(keys, start)
	send(w, http.StatusOK, fleetv1.UnitStatePage{States: all[lo:hi], NextPageToken: next})
}

// stateItem serves GET /state/NAME: one unit's state, which fleetctl start
// polls until systemd reports the unit active (fleetctl dereferences the
// result of a 404, so a missing route made it crash). A global unit has one
// state per machine; like fleet, this answers with the first by machine ID.
func (h *handler) stateItem(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		sendError(w, http.StatusMethodNotAllowed, errors.New("only GET supported against this resource"))
		return
	}
	name := strings.TrimPrefix(r.URL.Path, fleetv1.Prefix+"/state/")
	if name == "" || strings.Contains(name, "/") {
		sendError(w, http.StatusNotFound, nil)
		return
	}
	var found *fleetv1.UnitState
	if h.cluster != nil {
		// The unit's own machine first: a unit that moved may still be
		// reported by the machine it left until that one unloads it.
		owner := ""
		if u := h.store.State().Unit(name); u != nil {
			owner = u.Machine
		}
		for _, mr := range h.cluster.Reports() {
			for _, u := range mr.Units {
				if u.Name != name {
					continue
				}
				if found == nil || mr.MachineID == owner {
					found = &fleetv1.UnitState{Name: u.Name, Hash: u.Hash, MachineID: mr.MachineID,
						SystemdLoadState: u.LoadState, SystemdActiveState: u.ActiveState, SystemdSubState: u.SubState}
				}
			}
		}
	}
	if found == nil {
		sendError(w, http.StatusNotFound, errors.New("unit state does not exist"))
		return
	}
	send(w, http.StatusOK, found)
}

func (h *handler) machines(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		sendError(w, http.StatusMethodNotAllowed, errors.New("only GET supported against this resource"))
		return
	}
	start, err := pageStart(r)
	if err != nil {
		sendError(w, http.StatusBadRequest, err)
		return
	}
	var live []schedule.Machine
	if h.cluster != nil {
		live = h.cluster.Live()
	}
	keys := make([]string, len(live))
	for i, m := range live {
		keys[i] = m.ID
	}
	lo, hi, next := page(keys, start)
	p := fleetv1.MachinePage{NextPageToken: next}
	for _, m := range live[lo:hi] {
		p.Machines = append(p.Machines, &fleetv1.Machine{ID: m.ID, PrimaryIP: m.PublicIP, Metadata: m.Metadata})
	}
	send(w, http.StatusOK, p)
}
