package walkthrough

// Step 4: schedule a service: the mongo@.service template.

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// UnitRow is a line of pithctl list-units.
type UnitRow struct {
	Unit, Machine, IP, Active string
	Node                      int // index of the node with that IP, -1 if none
}

// ListUnits runs list-units on node i and parses it.
func (d *Demo) ListUnits(ctx context.Context, i int) ([]UnitRow, string, error) {
	out, err := d.try(ctx, i, "sudo pithctl list-units --no-legend --full --fields unit,machine,active")
	if err != nil {
		return nil, out, err
	}
	return parseUnits(out, d.cfg.Nodes), out, nil
}

func parseUnits(out string, nodes int) []UnitRow {
	var rows []UnitRow
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		r := UnitRow{Unit: f[0], Machine: f[1], Node: -1}
		if id, ip, ok := strings.Cut(f[1], "/"); ok {
			r.Machine, r.IP = id, ip
		}
		for n := 0; n < nodes; n++ {
			if privateIP(n) == r.IP {
				r.Node = n
			}
		}
		if len(f) > 2 {
			r.Active = f[2]
		}
		rows = append(rows, r)
	}
	return rows
}

// ScheduleResult is step 4's output.
type ScheduleResult struct {
	Units     []UnitRow
	ListUnits string         // pithctl list-units as printed
	Where     map[string]int // mongo@N.service -> node
	Global    map[int]bool   // nodes running announce.service
	Answers   map[string]string
	Announced string // pithctl kv ls /announce
}

// Schedule submits the mongo@ template and a global unit, starts mongo@1,
// mongo@2 and the global unit, and shows where they run.
func (d *Demo) Schedule() (ScheduleResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	res := ScheduleResult{Where: map[string]int{}, Global: map[int]bool{}, Answers: map[string]string{}}
	d.heading(4, "Schedule a service: the mongo@.service template")
	d.say(`A unit file is a systemd unit plus an [X-Fleet] section saying where it may run.
mongo@.service is a template: mongo@1 and mongo@2 are two instances of it.
Conflicts=mongo@*.service keeps two instances off the same machine. The
container image (a small HTTP server standing in for MongoDB) was loaded on
every node offline, with docker import.`)
	write := "mkdir -p units && cat > 'units/mongo@.service' <<'EOF'\n" + MongoUnit + "EOF\ncat > units/announce.service <<'EOF'\n" + AnnounceUnit + "EOF"
	if _, err := d.Exec(ctx, 0, write); err != nil {
		return res, err
	}
	if _, err := d.show(ctx, 0, "cat units/mongo@.service"); err != nil {
		return res, err
	}
	d.say("\nannounce.service has Global=true: it runs on every machine, and keeps a key with a TTL in the KV for its host:")
	if _, err := d.show(ctx, 0, "cat units/announce.service"); err != nil {
		return res, err
	}
	if _, err := d.show(ctx, 0, "cd units && sudo pithctl submit mongo@.service announce.service"); err != nil {
		return res, err
	}
	if _, err := d.show(ctx, 0, "sudo pithctl list-unit-files"); err != nil {
		return res, err
	}
	d.say("\npithctl start waits until the units are launched on their machines:")
	t0 := time.Now()
	if _, err := d.show(ctx, 0, "sudo pithctl start mongo@1 mongo@2 announce.service"); err != nil {
		return res, err
	}
	d.say("(launched %s after pithctl start)", time.Since(t0).Round(time.Second))
	want := 2 + d.cfg.Nodes
	if _, err := waitFor(ctx, "mongo@1, mongo@2 and announce.service active", 2*time.Second, func() (bool, string) {
		rows, out, err := d.ListUnits(ctx, 0)
		res.Units = rows
		active := 0
		for _, r := range rows {
			if r.Active == "active" {
				active++
			}
		}
		return err == nil && len(rows) == want && active == want, out + fmt.Sprint(err)
	}); err != nil {
		return res, err
	}
	var err error
	if res.ListUnits, err = d.show(ctx, 0, "sudo pithctl list-units"); err != nil {
		return res, err
	}
	for _, r := range res.Units {
		if r.Node < 0 {
			return res, fmt.Errorf("list-units: %s on %s/%s, which is none of the nodes", r.Unit, r.Machine, r.IP)
		}
		if r.Unit == "announce.service" {
			res.Global[r.Node] = true
		} else {
			res.Where[r.Unit] = r.Node
		}
	}
	d.say("\nEach instance answers on its machine (the container prints where it runs):")
	for _, u := range []string{"mongo@1", "mongo@2"} {
		n, ok := res.Where[u+".service"]
		if !ok {
			return res, fmt.Errorf("list-units has no %s.service", u)
		}
		ans, err := d.answer(ctx, n, u)
		if err != nil {
			return res, err
		}
		res.Answers[u] = ans
	}
	if _, err := waitFor(ctx, "every machine announced in /announce", 2*time.Second, func() (bool, string) {
		out, err := d.try(ctx, 0, "sudo pithctl kv ls /announce")
		res.Announced = out
		return err == nil && len(strings.Split(out, "\n")) == d.cfg.Nodes, out + fmt.Sprint(err)
	}); err != nil {
		return res, err
	}
	d.transcript("core@"+d.NodeName(0)+" ", "sudo pithctl kv ls /announce", res.Announced)
	d.timed("schedule", start)
	return res, nil
}

// answer waits until the container of instance inst (mongo@N) answers on
// node n's port 27017 and shows it.
func (d *Demo) answer(ctx context.Context, n int, inst string) (string, error) {
	const get = `bash -c 'exec 3<>/dev/tcp/127.0.0.1/27017 && printf "GET / HTTP/1.0\r\n\r\n" >&3 && sed "1,/^\r*$/d" <&3'`
	want := inst + " on " + d.NodeName(n)
	var got string
	if _, err := waitFor(ctx, inst+" answering on "+d.NodeName(n), 2*time.Second, func() (bool, string) {
		out, err := d.try(ctx, n, get)
		got = out
		return err == nil && out == want, out + fmt.Sprint(err)
	}); err != nil {
		return got, err
	}
	d.transcript("core@"+d.NodeName(n)+" ", get, got)
	return got, nil
}
