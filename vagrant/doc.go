// Package vagrant holds the coreos-vagrant style Vagrantfile and its
// helper scripts (see README.md), with tests that run the Vagrantfile's
// Ruby against sample configs. The box itself is built by vagrant/box.
package vagrant
