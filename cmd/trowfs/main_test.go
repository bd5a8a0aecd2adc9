package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/trowfs/trowfs/internal/server"
	"github.com/trowfs/trowfs/internal/tracker"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"50MiB": 50 << 20, "1GiB": 1 << 30, "100MB": 100e6, "4096": 4096, "1.5KiB": 1536, "0": 0} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "-1MiB", "MiB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{&server.ConfigError{Err: errors.New("bad")}, ExitUsage},
		{fmt.Errorf("wrapped: %w", &tracker.InUseError{Dir: "/d"}), ExitInUse},
		{&server.MountError{Err: errors.New("no fuse")}, ExitMount},
		{&exitError{code: ExitIntegrity}, ExitIntegrity},
		{errors.New("something else"), ExitInternal},
	} {
		if got := exitFor(c.err); got != c.want {
			t.Errorf("exitFor(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"mount", "--write-mode", "bogus", "a", "b"}, {"verify"}} {
		if got := run(args); got != ExitUsage {
			t.Errorf("run(%v) = %d, want %d", args, got, ExitUsage)
		}
	}
}
