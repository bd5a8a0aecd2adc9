// Package trowfsbin runs the real trowfs binary for integration tests: it builds it once per
// test process, starts `trowfs mount` in the foreground and waits for its ready file, stops it
// with SIGTERM or kills it with SIGKILL, runs `trowfs verify --json`, and finds, aborts and
// detaches FUSE mounts that a test left behind.
//
// Every mount started through Start is unmounted when its test ends; a mount that is still
// there after the process exited is a bug and fails the test. LeftoverMounts and AbortUnder let
// a TestMain check that nothing survived the whole run and turn a hang into a fast failure.
//
// # What it must never do
//
// It never touches a mount it did not start or that is not below a directory its caller names:
// the machine may run other engineers' mounts. It never stats a path inside a mountpoint to
// decide whether it is mounted (a hung FUSE server would hang the test); it reads
// /proc/self/mountinfo instead. It never skips a test under CI=true: there a missing /dev/fuse,
// a failed build or a failed mount is a test failure.
package trowfsbin
