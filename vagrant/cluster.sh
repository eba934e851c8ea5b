#!/usr/bin/env bash
# `make vagrant-cluster`: an N-node Pith cluster (default 3) with the
# repository's Vagrantfile, libvirt running in its own network namespace.
#
#   vagrant/cluster.sh up [N]     # build image + box, vagrant up, check the cluster
#   vagrant/cluster.sh ssh NODE   # vagrant ssh NODE inside the namespace
#   vagrant/cluster.sh destroy    # vagrant destroy -f, stop libvirtd, delete the netns
#
# Environment: OUT (default _out), CACHE (default ~/.cache/pith),
# PITH_LIBVIRT_DRIVER (default qemu unless /dev/kvm runs guests: set kvm).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$(realpath -m "${OUT:-$repo/_out}")
cache=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pith}
bin=$out/bin
state=$out/vagrant-cluster
netns=pith-vagrant
export VAGRANT_HOME=$state/vagrant.d VAGRANT_CHECKPOINT_DISABLE=1
export PITH_LIBVIRT_DRIVER=${PITH_LIBVIRT_DRIVER:-qemu}
export PITH_VAGRANT_CONSOLE_DIR=$state/console
export LIBVIRT_DEFAULT_URI=qemu:///system

in_ns() {
  (cd "$state/project" && "$here/netns.sh" exec "$netns" env VAGRANT_HOME="$VAGRANT_HOME" \
    VAGRANT_CHECKPOINT_DISABLE=1 PITH_LIBVIRT_DRIVER="$PITH_LIBVIRT_DRIVER" \
    PITH_VAGRANT_CONSOLE_DIR="$PITH_VAGRANT_CONSOLE_DIR" LIBVIRT_DEFAULT_URI="$LIBVIRT_DEFAULT_URI" \
    PATH="$bin:$PATH" "$@")
}

case ${1:-up} in
up)
  n=${2:-3}
  mkdir -p "$state/project" "$PITH_VAGRANT_CONSOLE_DIR"
  printf 'platform: vagrant\nformats: [qcow2]\n' > "$state/pith.yaml"
  "$bin/pith" build --config "$state/pith.yaml" --out "$state/image" --cache "$cache" --agent-bin-dir "$bin"
  "$bin/pith" box --image "$state/image/pith.qcow2" --out "$state/pith.box"
  "$here/netns.sh" start "$netns" "$state/libvirt"
  cp "$here/Vagrantfile" "$state/project/Vagrantfile"
  [ -e "$state/project/user-data" ] || cp "$here/user-data.sample" "$state/project/user-data"
  printf '$num_instances = %d\n' "$n" > "$state/project/config.rb"
  in_ns vagrant box add --force "$state/pith.json"
  start=$(date +%s)
  in_ns vagrant up
  echo "vagrant-cluster: $n nodes up in $(( $(date +%s) - start ))s"
  # pithd starts once the provisioner applied the user-data, so the members
  # may still be electing a leader: ask until they answer (5 min at most).
  for i in $(seq 60); do
    if in_ns vagrant ssh core-01 -c 'pithctl member list' 2>/dev/null; then break; fi
    [ "$i" = 60 ] && { echo "vagrant-cluster: the KV did not answer on core-01" >&2; exit 1; }
    sleep 5
  done
  echo "vagrant-cluster: log in with: $0 ssh core-01; tear down with: make vagrant-cluster-destroy"
  ;;
ssh)
  in_ns vagrant ssh "${2:-core-01}" -- -A
  ;;
destroy)
  if [ -d "$state/project" ] && ip netns list | grep -qw "^$netns"; then
    in_ns vagrant destroy -f || true
    in_ns sh -c 'for v in $(virsh vol-list default 2>/dev/null | awk "/_vagrant_box_image_/ {print \$1}"); do virsh vol-delete --pool default "$v"; done' || true
  fi
  "$here/netns.sh" stop "$netns" "$state/libvirt"
  ;;
*)
  echo "usage: $0 up [N] | ssh NODE | destroy" >&2; exit 2 ;;
esac
