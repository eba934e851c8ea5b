package cluster_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pith-os/pith/agent/cluster"
	"github.com/pith-os/pith/discovery"
)

// TestDiscoveryClientAgainstService runs pithd's discovery client against
// the hardened service (`pith discovery serve`'s code, over a real
// listener): three founders agree, and a late fourth is told it is not
// one, with registrations create-only and listing limited to the token.
func TestDiscoveryClientAgainstService(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d, err := discovery.Open("http://"+ln.Addr().String(), discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go d.Serve(ctx, ln)
	tok, err := d.NewToken(3)
	if err != nil {
		t.Fatal(err)
	}
	run := func(i int) (*cluster.DiscoveryResult, error) {
		peer := fmt.Sprintf("http://10.0.0.%d:2380", i+1)
		c := &cluster.Discovery{URL: tok, Name: fmt.Sprintf("n%d", i), ID: cluster.MemberID([]string{peer}, "t"), PeerURLs: []string{peer}, Poll: 20 * time.Millisecond}
		return c.Run(ctx)
	}
	type result struct {
		r   *cluster.DiscoveryResult
		err error
	}
	ch := make(chan result, 3)
	for i := 0; i < 3; i++ {
		go func() { r, err := run(i); ch <- result{r, err} }()
	}
	for i := 0; i < 3; i++ {
		res := <-ch
		if res.err != nil || !res.r.Founder || len(res.r.Founders) != 3 {
			t.Fatalf("founder: %+v %v", res.r, res.err)
		}
	}
	late, err := run(3)
	if err != nil || late.Founder || len(late.Founders) != 3 {
		t.Fatalf("late member: %+v %v", late, err)
	}
	// A restarted founder registers again: the service answers 105 (its
	// entry stays) and the client carries on as a founder.
	again, err := run(0)
	if err != nil || !again.Founder {
		t.Fatalf("restarted founder: %+v %v", again, err)
	}
}
