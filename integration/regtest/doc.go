// Package regtest drives real container registries and their tools from Go tests: the CNCF
// distribution registry, olareg, the OCI distribution-spec conformance suite and a small OCI
// push/pull client, on a plain directory or on a trowfs mount.
//
// The tools are built outside the repository by integration/tools/install.sh (`make tools`) at the
// versions pinned in integration/tools/versions.txt; [Tools] finds them. Under CI=true a missing or
// stale tool fails the test with "run make tools"; elsewhere the test is skipped, so a developer
// without the tools can still run the rest of the suite.
//
// Every process a helper starts is bound to the test: it listens on a free loopback port, is
// stopped on t.Cleanup (SIGTERM, then SIGKILL after a grace period), and its output is shown when
// the test fails.
//
// What this package must never do: write outside the directories a test hands it or t.TempDir();
// listen on anything but 127.0.0.1; leave a process or a mount behind; import trowfs's own packages
// (it tests the trowfs binary from the outside, through the contract in docs/testing-registries.md);
// report success from a tool that did not produce its results (the conformance suite exits 0 when
// its configuration fails to load, so its result files are required).
package regtest
