package update

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/pith-os/pith/channels"
	"github.com/pith-os/pith/node"
)

// Reboot hooks (cloud-config pith.update.pre-reboot / post-reboot): shell
// commands run before an update's reboot, once the reboot lock is held, and
// after the node is healthy again, e.g. to drain a Kubernetes node and let
// it take work again. A failing pre-reboot hook postpones the reboot (the
// agent tries again at its next check, still holding the lock so no other
// machine goes down meanwhile) and is reported; a rollback's reboot runs
// the hooks but does not wait for them to succeed.

// Hooks are the reboot hooks.
type Hooks struct {
	PreReboot  []string
	PostReboot []string
	// Timeout bounds each command (default 10m).
	Timeout time.Duration
	// Shell runs each command as Shell -c COMMAND (default /bin/sh).
	Shell string
}

// DefaultHookTimeout is Hooks.Timeout's default.
const DefaultHookTimeout = 10 * time.Minute

// maxHookOutput is how much of a failing hook's output a report carries.
const maxHookOutput = 512

// SetHooks makes the agent run h around its reboots; rep, when set, hears
// failures. Call it before AfterBoot and Run.
func SetHooks(a *Agent, h Hooks, rep *Reporter) {
	if len(h.PreReboot) == 0 && len(h.PostReboot) == 0 {
		return
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultHookTimeout
	}
	if h.Shell == "" {
		h.Shell = "/bin/sh"
	}
	hr := &hookRebooter{Rebooter: a.reboot, a: a, h: h, rep: rep}
	a.reboot = hr
	prev := a.Notify
	a.Notify = func(p node.UpdatePhase, ev *node.UpdateEvent) {
		if prev != nil {
			prev(p, ev)
		}
		// Back from an update's reboot, on the new release (marked good
		// once healthy) or the old one (rolled back): post-reboot hooks.
		if ev != nil && (ev.Kind == "updated" || ev.Kind == "rollback") && len(h.PostReboot) > 0 {
			go hr.postReboot(ev.Version, ev.Kind == "rollback")
		}
	}
}

type hookRebooter struct {
	Rebooter
	a   *Agent
	h   Hooks
	rep *Reporter
}

func (hr *hookRebooter) env(event, version string) []string {
	return append(os.Environ(),
		"PITH_UPDATE_HOOK="+event, "PITH_UPDATE_VERSION="+version,
		"PITH_UPDATE_RUNNING="+hr.a.cfg.Running, "PITH_MACHINE_ID="+hr.a.cfg.MachineID)
}

// run runs each command in turn; the first failure stops it.
func (hr *hookRebooter) run(ctx context.Context, which string, cmds []string, version string) error {
	for _, c := range cmds {
		cctx, cancel := context.WithTimeout(ctx, hr.h.Timeout)
		cmd := exec.CommandContext(cctx, hr.h.Shell, "-c", c)
		cmd.Env = hr.env(which, version)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		cancel()
		if err != nil {
			if cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
				err = fmt.Errorf("timed out after %s", hr.h.Timeout)
			}
			o := strings.TrimSpace(out.String())
			if len(o) > maxHookOutput {
				o = "..." + o[len(o)-maxHookOutput:]
			}
			return fmt.Errorf("%s hook %q: %v; output: %s", which, c, err, o)
		}
		hr.a.log.Info("update: hook done", "hook", which, "command", c, "seconds", time.Since(start).Seconds())
	}
	return nil
}

// Reboot runs the pre-reboot hooks, then reboots. Rollbacks (the reason
// starts with "rollback") reboot even when a hook fails.
func (hr *hookRebooter) Reboot(ctx context.Context, reason string) error {
	version := ""
	if p := hr.a.Status().Pending; p != nil {
		version = p.Version
	}
	if err := hr.run(ctx, "pre-reboot", hr.h.PreReboot, version); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		hr.a.log.Warn("update: hook", "err", err)
		if hr.rep != nil {
			hr.rep.Report(channels.EventHookFailed, version, err.Error())
		}
		if !strings.HasPrefix(reason, "rollback") {
			return fmt.Errorf("update: reboot postponed: %w", err)
		}
	}
	return hr.Rebooter.Reboot(ctx, reason)
}

// postReboot runs the post-reboot hooks once the node is healthy.
func (hr *hookRebooter) postReboot(version string, rolledBack bool) {
	ctx := context.Background()
	if rolledBack {
		// Marking good waited for health; a rollback did not: wait here.
		hctx, cancel := context.WithTimeout(ctx, hr.a.cfg.VerifyTimeout)
		err := hr.a.Healthy(hctx)
		cancel()
		if err != nil {
			err = fmt.Errorf("post-reboot hooks not run: node not healthy after the rollback: %w", err)
			hr.a.log.Warn("update: hook", "err", err)
			if hr.rep != nil {
				hr.rep.Report(channels.EventHookFailed, version, err.Error())
			}
			return
		}
	}
	if err := hr.run(ctx, "post-reboot", hr.h.PostReboot, version); err != nil {
		hr.a.log.Warn("update: hook", "err", err)
		if hr.rep != nil && !errors.Is(err, context.Canceled) {
			hr.rep.Report(channels.EventHookFailed, version, err.Error())
		}
	}
}
