// Package firstboot is pithd's first-boot stage (`pithd firstboot`): it
// applies the OEM partition's cloud-config, finds user-data through
// agent/datasource, has cloudconfig/apply validate and apply it, and
// records what happened under node.StateDir. It runs as its own oneshot
// unit before pithd.service (which reads the ETCD_*/FLEET_* drop-in the
// stage writes) and before sshd (so SSH keys are in place); the image ships
// it as image/rootfs/overlay/usr/lib/systemd/system/pithd-firstboot.service.
// An Ignition config that a boot's run cannot apply stops the boot there
// (stopBoot: emergency.target), as Ignition does; other failures let the
// node boot on with the report.
// `pithd firstboot --now` (RunNow) runs it again on demand, in full (Boot
// with Now): pithctl userdata apply execs it, so pithctl imports nothing of
// agent/.
//
// cloudconfig/apply turns a config into system changes and imports nothing
// from agent/; this package is where the two meet.
package firstboot
