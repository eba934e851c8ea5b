#!/usr/bin/env bash
# Runs libvirt (and so Vagrant's machines and networks) inside a network
# namespace of its own, on hosts without systemd: the VMs, libvirt's
# dnsmasq and bridges never see the host's networks, and the namespace has
# no route out.
#
#   vagrant/netns.sh start NAME STATEDIR   # netns + virtlogd + libvirtd
#   vagrant/netns.sh exec  NAME CMD...     # run CMD inside it
#   vagrant/netns.sh stop  NAME STATEDIR   # destroy leftover domains, stop daemons, delete netns
#
# Used by e2e/vagrant_test.go and `make vagrant-cluster`. Needs root.
set -euo pipefail

cmd=${1:-}
name=${2:-}
[ -n "$cmd" ] && [ -n "$name" ] || { echo "usage: $0 start|exec|stop NAME [STATEDIR|CMD...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: libvirtd and ip netns need root" >&2; exit 1; }

in_ns() { ip netns exec "$name" "$@"; }

# pid_alive PIDFILE: the daemon the file names still runs.
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {
  local f=$1
  pid_alive "$f" || { rm -f "$f"; return 0; }
  local pid; pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

case $cmd in
start)
  state=${3:?STATEDIR}
  mkdir -p "$state"
  if pgrep -x libvirtd >/dev/null && ! pid_alive "$state/libvirtd.pid"; then
    echo "$0: a libvirtd not started by this script is running (pid $(pgrep -x libvirtd | head -1)): stop it first" >&2
    exit 1
  fi
  ip netns list | grep -qw "^$name" || ip netns add "$name"
  in_ns ip link set lo up
  # A /dev/kvm nobody may open makes libvirt treat KVM as absent at once;
  # root:kvm 0660 is what udev would set. (Nested KVM here cannot run
  # guests: the Vagrantfile uses the qemu driver via PITH_LIBVIRT_DRIVER.)
  if [ -e /dev/kvm ]; then chown root:kvm /dev/kvm 2>/dev/null || true; chmod 0660 /dev/kvm; fi
  mkdir -p /run/libvirt /var/lib/libvirt/images /var/log/libvirt/qemu
  if ! pid_alive "$state/virtlogd.pid"; then
    in_ns virtlogd --daemon --pid-file "$state/virtlogd.pid"
  fi
  if ! pid_alive "$state/libvirtd.pid"; then
    in_ns libvirtd --daemon --pid-file "$state/libvirtd.pid"
  fi
  for _ in $(seq 150); do
    in_ns virsh -c qemu:///system version >/dev/null 2>&1 && exit 0
    sleep 0.2
  done
  echo "$0: libvirtd did not answer on qemu:///system (see /var/log/libvirt)" >&2
  exit 1
  ;;
exec)
  shift 2
  exec ip netns exec "$name" "$@"
  ;;
stop)
  state=${3:?STATEDIR}
  if pid_alive "$state/libvirtd.pid"; then
    # Machines Vagrant could not destroy must not outlive the daemon.
    for d in $(in_ns virsh -c qemu:///system list --all --name 2>/dev/null); do
      in_ns virsh -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
    done
    for n in $(in_ns virsh -c qemu:///system net-list --all --name 2>/dev/null); do
      in_ns virsh -c qemu:///system net-destroy "$n" >/dev/null 2>&1 || true
      # Vagrant's networks would otherwise stay defined in /etc/libvirt.
      [ "$n" = default ] || in_ns virsh -c qemu:///system net-undefine "$n" >/dev/null 2>&1 || true
    done
  fi
  stop_pid "$state/libvirtd.pid"
  stop_pid "$state/virtlogd.pid"
  # dnsmasq of libvirt's networks: only those whose pid files libvirt wrote.
  for f in /run/libvirt/network/*.pid /var/run/libvirt/network/*.pid; do
    [ -e "$f" ] && stop_pid "$f"
  done
  if ip netns list | grep -qw "^$name"; then ip netns delete "$name"; fi
  ;;
*)
  echo "usage: $0 start|exec|stop NAME [STATEDIR|CMD...]" >&2; exit 2 ;;
esac
