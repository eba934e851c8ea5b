#!/usr/bin/env bash
# What the Vagrant test and `make vagrant-cluster` need: the base set plus
# Vagrant with the libvirt provider (see install-deps.sh).
exec bash "$(dirname "$0")/install-deps.sh" vagrant
