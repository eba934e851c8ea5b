package daemon

import (
	"net"
	"net/http"
	"net/http/pprof"
)

// registerPprof routes /debug/pprof/ (--enable-pprof) on mux for loopback
// callers only: a profile shows memory, command line and goroutine stacks,
// and a CPU profile or trace ties up the process, so it must never answer
// on the network listeners (client or peer port on 0.0.0.0 or the node's
// address), only to a request that came in on 127.0.0.1/::1 from there.
func registerPprof(mux *http.ServeMux) {
	for p, h := range map[string]http.HandlerFunc{
		"/debug/pprof/":        pprof.Index,
		"/debug/pprof/cmdline": pprof.Cmdline,
		"/debug/pprof/profile": pprof.Profile,
		"/debug/pprof/symbol":  pprof.Symbol,
		"/debug/pprof/trace":   pprof.Trace,
	} {
		mux.Handle(p, loopbackOnly(h))
	}
}

// loopbackOnly answers 403 unless both ends of the connection are
// loopback addresses: the listener's (so a 0.0.0.0 listener serves it only
// on 127.0.0.1) and the caller's.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		if !isLoopback(local) || !isLoopbackHostPort(r.RemoteAddr) {
			http.Error(w, "/debug/pprof is served only on 127.0.0.1 and ::1 (curl http://127.0.0.1:PORT/debug/pprof/ on the node)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func isLoopbackHostPort(hp string) bool {
	host, _, err := net.SplitHostPort(hp)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
