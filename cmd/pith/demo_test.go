package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

// nopWriteCloser records Close.
type nopWriteCloser struct {
	bytes.Buffer
	closed bool
}

func (w *nopWriteCloser) Close() error { w.closed = true; return nil }

// The guestfwd relay carries a whole request to the server and its whole
// answer back, half-closing in both directions.
func TestRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, _ := io.ReadAll(c) // until the relay half-closes
		c.Write([]byte("got " + strings.ToUpper(string(req))))
	}()
	out := &nopWriteCloser{}
	if err := relay(ln.Addr().String(), strings.NewReader("ping"), out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "got PING" || !out.closed {
		t.Errorf("relay answered %q (closed %v), want %q and closed", out.String(), out.closed, "got PING")
	}
	if err := relay("127.0.0.1:1", strings.NewReader(""), &nopWriteCloser{}); err == nil {
		t.Error("relay to a closed port: no error")
	}
}
