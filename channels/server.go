package channels

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"time"
)

// Server serves a release repository read-only over HTTP(S): GET and HEAD,
// range requests (http.ServeContent) for resumable downloads, no directory
// listings, and nothing outside the repository (os.Root refuses "..",
// absolute paths and symlinks that leave it).
type Server struct {
	root *os.Root
	log  *log.Logger
	// stallTimeout drops a client that stops reading for this long, while a
	// slow but moving download may take as long as it needs.
	stallTimeout time.Duration
	// Fleet, when set, adds the fleet API (reports, rollouts) and the
	// dashboard at / (fleethttp.go).
	Fleet *Fleet
}

// NewServer opens the repository at dir. logger may be nil.
func NewServer(dir string, logger *log.Logger) (*Server, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("repository %s is not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	return &Server{root: root, log: logger, stallTimeout: time.Minute}, nil
}

// Close releases the repository directory.
func (s *Server) Close() error { return s.root.Close() }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lw := &logWriter{ResponseWriter: w, rc: http.NewResponseController(w), stall: s.stallTimeout, status: http.StatusOK}
	s.serve(lw, r)
	s.log.Printf("%s %s %q %d %d %q", r.RemoteAddr, r.Method, r.URL.Path, lw.status, lw.n, r.Header.Get("Range"))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.Fleet != nil && s.serveFleet(w, r) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := repoPath(r.URL.Path)
	if !ok {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	if name == "." {
		// A tiny index so a person pointing a browser at the server sees
		// what it is; no listing of the repository.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Pith release channel server. Channels: /channels/<name>.json (+ .sig)")
		return
	}
	f, err := s.root.Open(name)
	if err != nil {
		// Missing, or an escape os.Root refused (a symlink out of the
		// repository): never reveal more than "not found".
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	// Channel files change on release and promote; versioned payloads never do.
	if strings.HasPrefix(name, "channels/") {
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	// A strong validator lets clients resume with If-Range and restart
	// cleanly if the file was replaced in between.
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, st.Size(), st.ModTime().UnixNano()))
	switch path.Ext(name) {
	case ".json":
		w.Header().Set("Content-Type", "application/json")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// repoPath turns a URL path into a clean path relative to the repository.
func repoPath(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, "\x00") || strings.Contains(p, "\\") {
		return "", false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || (strings.HasPrefix(seg, ".") && seg != "") {
			return "", false // also hides temporary files of a release in progress
		}
	}
	c := path.Clean(p)
	if c == "/" {
		return ".", true
	}
	return strings.TrimPrefix(c, "/"), true
}

type logWriter struct {
	http.ResponseWriter
	rc     *http.ResponseController
	stall  time.Duration
	status int
	n      int64
}

func (l *logWriter) WriteHeader(code int) {
	l.status = code
	l.ResponseWriter.WriteHeader(code)
}

func (l *logWriter) Write(p []byte) (int, error) {
	// Extend the write deadline per chunk: no whole-response timeout to cut
	// a large download, but a stalled reader is dropped.
	_ = l.rc.SetWriteDeadline(time.Now().Add(l.stall))
	n, err := l.ResponseWriter.Write(p)
	l.n += int64(n)
	return n, err
}

// HTTPServer wraps the handler in an http.Server with timeouts suited to
// large downloads from slow clients.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
		ErrorLog:          s.log,
	}
}

// Serve serves on ln (TLS when certFile and keyFile are set) until the
// server is shut down.
func Serve(srv *http.Server, ln net.Listener, certFile, keyFile string) error {
	var err error
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return errors.New("TLS needs both --tls-cert and --tls-key")
		}
		err = srv.ServeTLS(ln, certFile, keyFile)
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
