// Command tcprelay carries one QEMU guestfwd connection (its stdin and
// stdout) to a TCP address on the host, for the EC2 boot test's fake
// metadata service on 127.0.0.1.
package main

import (
	"io"
	"net"
	"os"
)

func main() {
	c, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		os.Exit(1)
	}
	go func() {
		io.Copy(c, os.Stdin)
		c.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(os.Stdout, c)
}
