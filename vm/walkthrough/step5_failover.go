package walkthrough

// Step 5: failover: switch off the machine running mongo@1.

import (
	"errors"
	"fmt"
	"time"
)

// FailoverResult is step 5's output.
type FailoverResult struct {
	From, To  int           // node that was switched off, node mongo@1 moved to
	Killed    time.Time     // when it was switched off
	Took      time.Duration // switch-off -> list-units shows mongo@1 active elsewhere
	Answering time.Duration // switch-off -> its container answers there
	ListUnits string
	Answer    string
	Message   string // /message read on the new node afterwards
}

// Failover switches off the machine running mongo@1 (QEMU quits: a power
// cut) and waits until the scheduler has started mongo@1 on another one.
func (d *Demo) Failover(sched ScheduleResult) (FailoverResult, error) {
	start := time.Now()
	ctx, cancel := d.stepCtx()
	defer cancel()
	var res FailoverResult
	from, ok := sched.Where["mongo@1.service"]
	if !ok {
		return res, errors.New("failover: mongo@1 was not scheduled")
	}
	res.From, res.To = from, -1
	watch := (from + 1) % d.cfg.Nodes // any node that stays up
	d.heading(5, "Failover: switch off the machine running mongo@1")
	d.say(`Every pithd sends heartbeats to the scheduler's leader; a machine silent for the
agent TTL (5 s) is dead, and its units are placed on the machines left.
Conflicts leaves mongo@1 only the machine not running mongo@2.
Switching off %s (QEMU quits: no clean shutdown)...`, d.NodeName(from))
	m := d.Machine(from)
	killed := time.Now()
	res.Killed = killed
	if err := m.QMP("quit"); err != nil {
		m.Kill()
	}
	<-m.Done()
	d.down[from] = true
	_, err := waitFor(ctx, "mongo@1 rescheduled and active", time.Second, func() (bool, string) {
		rows, o, err := d.ListUnits(ctx, watch)
		for _, r := range rows {
			if r.Unit == "mongo@1.service" && r.Node >= 0 && r.Node != from && r.Active == "active" {
				res.To = r.Node
				return err == nil, o
			}
		}
		return false, o + fmt.Sprint(err)
	})
	if err != nil {
		return res, err
	}
	res.Took = time.Since(killed)
	d.say("mongo@1 is active on %s %s after %s was switched off:", d.NodeName(res.To), res.Took.Round(100*time.Millisecond), d.NodeName(from))
	if res.ListUnits, err = d.show(ctx, watch, "sudo pithctl list-units"); err != nil {
		return res, err
	}
	if res.Answer, err = d.answer(ctx, res.To, "mongo@1"); err != nil {
		return res, err
	}
	res.Answering = time.Since(killed)
	d.say("(its container answered %s after the switch-off)", res.Answering.Round(100*time.Millisecond))
	d.say("\nThe KV lost one of three members and still has a quorum:")
	if res.Message, err = d.show(ctx, res.To, "sudo pithctl kv get /message"); err != nil {
		return res, err
	}
	d.timed("failover", start)
	return res, nil
}
