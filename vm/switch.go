package vm

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"sync"
)

// Switch is the private network between a cluster's nodes: a learning
// Ethernet switch on a unix socket. Each node's second NIC is a QEMU
// `-netdev stream` client of the socket; QEMU frames every Ethernet frame
// with a 4-byte big-endian length.
//
// Why this and not QEMU alone: `-netdev socket,mcast` sends multicast on the
// host's interfaces (not loopback-only), `dgram`/`socket,listen` connect only
// two peers each, so N nodes would need a ring with forwarding in the guests.
// A unix socket keeps every frame off the host's IP stack entirely, and the
// switch lives in the process that owns the machines, so it ends with them.
type Switch struct {
	ln    net.Listener
	mu    sync.Mutex
	ports map[*swPort]struct{}
	macs  map[[6]byte]*swPort
	wg    sync.WaitGroup
}

type swPort struct {
	conn net.Conn
	out  chan []byte
}

// maxFrame bounds a frame's length (QEMU's virtio-net may send up to 64 KiB
// with offloads off; anything larger is a broken peer).
const maxFrame = 65536 + 64

// NewSwitch listens on the unix socket path (replacing a stale one).
func NewSwitch(path string) (*Switch, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	s := &Switch{ln: ln, ports: map[*swPort]struct{}{}, macs: map[[6]byte]*swPort{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Path is the socket nodes connect to.
func (s *Switch) Path() string { return s.ln.Addr().String() }

// Close stops the switch and drops every port.
func (s *Switch) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for p := range s.ports {
		p.conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Switch) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		p := &swPort{conn: c, out: make(chan []byte, 256)}
		s.mu.Lock()
		s.ports[p] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(2)
		go s.read(p)
		go s.write(p)
	}
}

func (s *Switch) read(p *swPort) {
	defer s.wg.Done()
	defer s.drop(p)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(p.conn, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			return
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(p.conn, frame); err != nil {
			return
		}
		if n < 14 {
			continue // not Ethernet
		}
		s.forward(p, frame)
	}
}

func (s *Switch) forward(in *swPort, frame []byte) {
	var dst, src [6]byte
	copy(dst[:], frame[0:6])
	copy(src[:], frame[6:12])
	s.mu.Lock()
	defer s.mu.Unlock()
	if src[0]&1 == 0 {
		s.macs[src] = in
	}
	if dst[0]&1 == 0 {
		if out, ok := s.macs[dst]; ok {
			if out != in {
				send(out, frame)
			}
			return
		}
	}
	for p := range s.ports { // broadcast, multicast, or not learned yet
		if p != in {
			send(p, frame)
		}
	}
}

// send queues without blocking: a node that stops reading loses frames
// (as on a real wire) instead of stalling the others.
func send(p *swPort, frame []byte) {
	select {
	case p.out <- frame:
	default:
	}
}

func (s *Switch) write(p *swPort) {
	defer s.wg.Done()
	buf := make([]byte, 0, 4+maxFrame)
	for frame := range p.out {
		buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(frame)))
		buf = append(buf, frame...)
		if _, err := p.conn.Write(buf); err != nil {
			p.conn.Close()
			for range p.out { // drain until drop closes it
			}
			return
		}
	}
}

func (s *Switch) drop(p *swPort) {
	p.conn.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ports[p]; !ok {
		return
	}
	delete(s.ports, p)
	for mac, q := range s.macs {
		if q == p {
			delete(s.macs, mac)
		}
	}
	close(p.out)
}
