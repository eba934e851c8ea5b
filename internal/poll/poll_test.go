package poll

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	for _, tc := range []struct {
		name     string
		doneAt   int // the check call that reports done; 0: never
		states   []string
		reported []string
		err      string
	}{
		{name: "at once", doneAt: 1, states: []string{"a"}},
		{name: "third call", doneAt: 3, states: []string{"a", "a", "b"}, reported: []string{"a"}},
		{name: "reports changes only", doneAt: 5, states: []string{"a", "a", "b", "b", "c"}, reported: []string{"a", "b"}},
		{name: "never", states: []string{"a", "b", "b"}, reported: []string{"a", "b"}, err: "the thing never happened (context canceled); last: b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0
			var reported []string
			_, err := Until(ctx, "the thing", time.Millisecond, func() (bool, string) {
				calls++
				s := tc.states[min(calls, len(tc.states))-1]
				if tc.doneAt == 0 && calls == len(tc.states) {
					cancel() // the caller gives up after the last state
				}
				return calls == tc.doneAt, s
			}, func(s string) { reported = append(reported, s) })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
			} else if err != nil || calls != tc.doneAt {
				t.Fatalf("err = %v after %d calls, want done at call %d", err, calls, tc.doneAt)
			}
			if fmt.Sprint(reported) != fmt.Sprint(tc.reported) {
				t.Errorf("reported %q, want %q", reported, tc.reported)
			}
		})
	}
}
