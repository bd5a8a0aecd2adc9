// Package bench is the benchmark suite of trowfs (`make bench`): it measures each target of
// BENCHMARKS.md on the native data directory, through a plain go-fuse loopback mount and through
// trowfs in the same run, and reports the ratios with PASS or FAIL. Where it applies (stat, readdir,
// seq write, small-file churn) libfuse's passthrough_hp, the fastest C passthrough, is a fourth
// column, built by bench/passthrough_hp/build.sh; without its binary those workloads add a SKIP row.
//
// Mounts are separate processes (the trowfs binary and bench/cmd/loopback), as in production.
// Every mount the suite starts is recorded in one process-wide set so that [StopAll] can unmount
// it on any exit path: a normal return, an error, a panic or a signal.
//
// What this package must never do: touch anything outside the scratch and cache directories it is
// given; leave a mount or a process behind; signal a process it did not start; report a figure it
// did not measure in this run (a workload that cannot run is reported as skipped, with the reason).
package bench
