package main

// pithctl bench: load generator for any etcd v2 keys endpoint (Pith or etcd
// itself), printing throughput and latency percentiles.

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
)

var benchOpts struct {
	clients  int
	conns    int
	total    int
	keySize  int
	valSize  int
	keySpace int
	quorum   bool
	watchers int
	prefix   string
}

func init() {
	bench := &cobra.Command{Use: "bench", Short: "Benchmark an etcd v2 keys endpoint (put, get, watch)"}
	addClientFlags(bench)
	fs := bench.PersistentFlags()
	fs.IntVar(&benchOpts.clients, "clients", 1, "concurrent clients")
	fs.IntVar(&benchOpts.conns, "conns", 1, "HTTP connection pools shared by the clients")
	fs.IntVar(&benchOpts.total, "total", 10000, "total requests")
	fs.IntVar(&benchOpts.keySize, "key-size", 8, "key size in bytes")
	fs.IntVar(&benchOpts.valSize, "val-size", 8, "value size in bytes")
	fs.IntVar(&benchOpts.keySpace, "key-space-size", 1000, "distinct keys")
	fs.StringVar(&benchOpts.prefix, "prefix", "/pithbench", "directory the benchmark writes under")
	get := &cobra.Command{Use: "get", Short: "Benchmark reads (fills the key space first)", Args: cobra.NoArgs, RunE: runBench("get")}
	get.Flags().BoolVar(&benchOpts.quorum, "quorum", false, "linearizable reads (quorum=true)")
	watch := &cobra.Command{Use: "watch", Short: "Benchmark event delivery: --watchers streams, --total puts", Args: cobra.NoArgs, RunE: runBench("watch")}
	watch.Flags().IntVar(&benchOpts.watchers, "watchers", 16, "streaming watchers")
	bench.AddCommand(&cobra.Command{Use: "put", Short: "Benchmark writes", Args: cobra.NoArgs, RunE: runBench("put")}, get, watch)
	rootCmd.AddCommand(bench)
}

type benchClient struct {
	clients  []*http.Client
	eps      []string
	keys     []string
	body     string
	failures atomic.Int64
	firstErr atomic.Value
	// watchTransport carries watch streams, apart from the request pools.
	watchTransport *http.Transport
}

func newBenchClient() (*benchClient, error) {
	o := benchOpts
	if o.clients < 1 || o.conns < 1 || o.total < 1 || o.keySize < 1 || o.valSize < 0 || o.keySpace < 1 {
		return nil, errors.New("--clients, --conns, --total, --key-size and --key-space-size must be positive")
	}
	var tlsConf *tls.Config
	var err error
	if !kvOpts.tls.Empty() || kvOpts.tls.InsecureSkipVerify {
		if tlsConf, err = kvOpts.tls.ClientConfig(); err != nil {
			return nil, err
		}
	}
	b := &benchClient{eps: kvOpts.endpoints}
	perPool := (o.clients + o.conns - 1) / o.conns
	for i := 0; i < o.conns; i++ {
		tr := &http.Transport{DialContext: (&net.Dialer{Timeout: kvOpts.timeout}).DialContext, TLSClientConfig: tlsConf,
			MaxIdleConns: perPool * len(b.eps), MaxIdleConnsPerHost: perPool, MaxConnsPerHost: perPool}
		b.clients = append(b.clients, &http.Client{Transport: tr, Timeout: 30 * time.Second})
	}
	b.watchTransport = &http.Transport{DialContext: (&net.Dialer{Timeout: kvOpts.timeout}).DialContext, TLSClientConfig: tlsConf}
	for i := 0; i < o.keySpace; i++ {
		k := fmt.Sprintf("%0*d", o.keySize, i)
		if len(k) > o.keySize {
			k = k[len(k)-o.keySize:]
		}
		b.keys = append(b.keys, strings.TrimRight(o.prefix, "/")+"/"+k)
	}
	b.body = url.Values{"value": {strings.Repeat("v", o.valSize)}}.Encode()
	return b, nil
}

func (b *benchClient) fail(err error) {
	b.failures.Add(1)
	b.firstErr.CompareAndSwap(nil, err)
}

func (b *benchClient) do(c *http.Client, method, u, body string) error {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d", method, u, resp.StatusCode)
	}
	return nil
}

// run issues total requests from the clients; op returns the error of one.
func (b *benchClient) run(total int, op func(client, n int, c *http.Client) error) ([]time.Duration, time.Duration) {
	var next atomic.Int64
	lat := make([][]time.Duration, benchOpts.clients)
	var wg sync.WaitGroup
	start := time.Now()
	for cl := 0; cl < benchOpts.clients; cl++ {
		wg.Add(1)
		go func(cl int) {
			defer wg.Done()
			c := b.clients[cl%len(b.clients)]
			for {
				n := int(next.Add(1)) - 1
				if n >= total {
					return
				}
				t0 := time.Now()
				if err := op(cl, n, c); err != nil {
					b.fail(err)
					continue
				}
				lat[cl] = append(lat[cl], time.Since(t0))
			}
		}(cl)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return all, elapsed
}

func report(w io.Writer, what string, lat []time.Duration, elapsed time.Duration, failures int64, firstErr any) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		i := int(float64(len(lat))*p/100+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(lat) {
			i = len(lat) - 1
		}
		return lat[i]
	}
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	avg := time.Duration(0)
	if len(lat) > 0 {
		avg = sum / time.Duration(len(lat))
	}
	fmt.Fprintf(w, "%s: clients=%d conns=%d total=%d key-size=%d val-size=%d\n", what, benchOpts.clients, benchOpts.conns, benchOpts.total, benchOpts.keySize, benchOpts.valSize)
	fmt.Fprintf(w, "  Total:        %.4f s\n", elapsed.Seconds())
	fmt.Fprintf(w, "  Requests/sec: %.1f\n", float64(len(lat))/elapsed.Seconds())
	fmt.Fprintf(w, "  Latency:      avg %s  p50 %s  p90 %s  p99 %s  max %s\n", r(avg), r(pct(50)), r(pct(90)), r(pct(99)), r(pct(100)))
	fmt.Fprintf(w, "  Succeeded:    %d  Failed: %d\n", len(lat), failures)
	if failures > 0 {
		fmt.Fprintf(w, "  First error:  %v\n", firstErr)
	}
}

func r(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }

func runBench(kind string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		b, err := newBenchClient()
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		switch kind {
		case "put":
			// Request n goes to endpoint n mod len: writes are spread over
			// every endpoint however few the clients (one client included).
			lat, el := b.run(benchOpts.total, func(cl, n int, c *http.Client) error {
				return b.do(c, "PUT", b.eps[n%len(b.eps)]+"/v2/keys"+b.keys[n%len(b.keys)], b.body)
			})
			report(out, "put", lat, el, b.failures.Load(), b.firstErr.Load())
		case "get":
			fill := len(b.keys)
			if _, _ = b.run(fill, func(cl, n int, c *http.Client) error {
				return b.do(c, "PUT", b.eps[cl%len(b.eps)]+"/v2/keys"+b.keys[n], b.body)
			}); b.failures.Load() > 0 {
				return fmt.Errorf("filling the key space: %v", b.firstErr.Load())
			}
			q := ""
			if benchOpts.quorum {
				q = "?quorum=true"
			}
			lat, el := b.run(benchOpts.total, func(cl, n int, c *http.Client) error {
				return b.do(c, "GET", b.eps[cl%len(b.eps)]+"/v2/keys"+b.keys[n%len(b.keys)]+q, "")
			})
			report(out, "get", lat, el, b.failures.Load(), b.firstErr.Load())
		case "watch":
			return b.watch(out)
		}
		return nil
	}
}

// watch starts streaming watchers on the prefix, then puts; the latency of
// an event is from the put's start to its arrival at a watcher.
func (b *benchClient) watch(out io.Writer) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Index the sends by value so watchers can find the start time.
	sent := make([]atomic.Int64, benchOpts.total)
	var lmu sync.Mutex
	var lat []time.Duration
	var received atomic.Int64
	want := int64(benchOpts.total) * int64(benchOpts.watchers)
	ready := make(chan error, benchOpts.watchers)
	var wg sync.WaitGroup
	base := time.Now()
	for i := 0; i < benchOpts.watchers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			u := b.eps[i%len(b.eps)] + "/v2/keys" + strings.TrimRight(benchOpts.prefix, "/") + "?wait=true&recursive=true&stream=true"
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
			// Own connection: a stream holds it for the whole run, and the
			// put pools are sized for the put clients.
			resp, err := (&http.Client{Transport: b.watchTransport}).Do(req)
			if err != nil {
				ready <- err
				return
			}
			defer resp.Body.Close()
			ready <- nil
			dec := json.NewDecoder(bufio.NewReader(resp.Body))
			var local []time.Duration
			for {
				var ev struct {
					Node struct {
						Value string `json:"value"`
					} `json:"node"`
				}
				if err := dec.Decode(&ev); err != nil {
					break
				}
				var n int
				if _, err := fmt.Sscanf(ev.Node.Value, "%d", &n); err == nil && n >= 0 && n < len(sent) {
					if t := sent[n].Load(); t != 0 {
						local = append(local, time.Duration(time.Since(base).Nanoseconds()-t))
					}
				}
				if received.Add(1) >= want {
					cancel()
				}
			}
			lmu.Lock()
			lat = append(lat, local...)
			lmu.Unlock()
		}(i)
	}
	for i := 0; i < benchOpts.watchers; i++ {
		if err := <-ready; err != nil {
			return fmt.Errorf("start watcher: %w", err)
		}
	}
	start := time.Now()
	_, _ = b.run(benchOpts.total, func(cl, n int, c *http.Client) error {
		sent[n].Store(time.Since(base).Nanoseconds())
		body := url.Values{"value": {fmt.Sprintf("%d", n)}}.Encode()
		return b.do(c, "PUT", b.eps[cl%len(b.eps)]+"/v2/keys"+b.keys[n%len(b.keys)], body)
	})
	// Watchers end when every event arrived, or when the puts are done and
	// nothing more arrives for a while (a watcher dropped by the server).
	for last := received.Load(); received.Load() < want; {
		time.Sleep(500 * time.Millisecond)
		now := received.Load()
		if now == last {
			break
		}
		last = now
	}
	cancel()
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Fprintf(out, "watch: %d watchers, %d puts, %d of %d events delivered\n", benchOpts.watchers, benchOpts.total, received.Load(), want)
	report(out, "watch events", lat, elapsed, b.failures.Load(), b.firstErr.Load())
	return nil
}
