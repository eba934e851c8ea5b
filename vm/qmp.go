package vm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// QMPCommand connects to a QMP socket, negotiates capabilities and runs one
// command, returning its "return" value. Asynchronous events are skipped.
func QMPCommand(sock, command string, args any) (json.RawMessage, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %v", command, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := readQMP(r, &greeting); err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("qmp %s: no greeting (%v)", command, err)
	}
	if _, err := qmpExec(c, r, "qmp_capabilities", nil); err != nil {
		return nil, fmt.Errorf("qmp %s: %v", command, err)
	}
	ret, err := qmpExec(c, r, command, args)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %v", command, err)
	}
	return ret, nil
}

func qmpExec(c net.Conn, r *bufio.Reader, command string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := readQMP(r, &resp); err != nil {
			// "quit" closes the socket before or after answering.
			if command == "quit" {
				return nil, nil
			}
			return nil, err
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			return nil, fmt.Errorf("%s: %s", resp.Error.Class, resp.Error.Desc)
		default:
			return resp.Return, nil
		}
	}
}

func readQMP(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}
