// Package e2e holds Pith's VM tests: each boots the image `make image`
// built under QEMU (KVM when usable, TCG otherwise) through harness.go and
// checks a promise end to end (boot, first boot and user-data, the
// cluster walkthrough, updates and rollback, EC2, Vagrant, reproducible
// images). They skip, saying how to run them, unless PITH_E2E_IMAGE_DIR
// and its siblings are set, as `make e2e` sets them.
//
// # Sharing the machine
//
// The suite's budget is 45 minutes for lint, unit and e2e on two cores
// under TCG, where a guest keeps about one core busy and a boot costs
// 1.5-3 minutes. So:
//
//   - Every VM test starts with NeedVMs(t, guests, typical) (vmslots.go):
//     it runs in parallel with the others, holding one VM slot per guest
//     it runs at once (PITH_E2E_VM_SLOTS, default one per CPU); a test with
//     more guests than slots (TestFirstBoot's four) has the machine to
//     itself. A test whose guests mostly wait once up holds fewer slots
//     than guests (NeedVMsShared: TestDemo's three nodes hold one, and a
//     one-guest test runs beside them in the core time they leave idle).
//     A test that builds an image holds a slot for it.
//     Boot refuses to start more guests than the test declared.
//     Tests needing the most slots start first, then longer (typical)
//     ones, so the one-guest tests pair up instead of the longest running
//     alone at the end; a shorter test fills a free slot only if it ends
//     before the next cluster test could start.
//   - The VM tests are bound by CPU, not by the order they run in: a boot
//     keeps a core busy from QEMU's start to SSH (52 s of CPU for 51 s),
//     and outside TestDemo's waits the two cores are 0-4% idle. More
//     slots than cores (three on two) only stretched each test about
//     1.5x (measured 2026-12-04). Time comes back by doing less: fewer or
//     cheaper boots.
//   - A new check rides on a boot that already happens: a step in
//     TestDemo's cluster (cluster behaviour, failover, power cuts,
//     rollouts), TestUpdate's machine (update, rollback, crash points of
//     the agent), TestFirstBoot's three machines (user-data, first-boot
//     crash points), TestFirstBootOEM's BIOS and TestEC2's UEFI machine
//     (checkBooted: firmware, boot chain, dm-verity, ROOT's growth). A
//     new top-level VM test is for a machine none of these can be
//     (another platform, another installer), and its boot's minutes come
//     out of the same budget.
//   - Nothing the tests share may collide when they run side by side:
//     state lives in os.MkdirTemp/t.TempDir directories (QEMU overlays,
//     OVMF vars copies, user-data, sockets), host ports are picked free on
//     127.0.0.1 (QEMU's hostfwd retries when one was taken in between),
//     guestfwd addresses are inside each QEMU's own user network, image
//     builds write only below their own --out, replace cache entries by
//     rename and refresh apt's indexes under a lock (apt.Lists.Lock),
//     TestUpdate's channel server binds port 0 itself (the walkthrough's
//     servers pick a free port just before they start, while its test has
//     every slot), and no test changes the process environment (t.Setenv).
//   - Soaks and repetitions (make kv-check, make soak) stay out of the
//     suite; a capability is covered in it once.
package e2e
