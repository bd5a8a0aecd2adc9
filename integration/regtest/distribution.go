package regtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gcTimeout bounds one `registry garbage-collect` run.
const gcTimeout = 2 * time.Minute

// distributionConfig is the minimal configuration of the distribution registry the tests use:
// filesystem storage in rootDir, deletes enabled, no background upload purging (it would change the
// directory at a random time), no redirects, a fixed HTTP secret (uploads survive a restart).
const distributionConfig = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
  redirect:
    disable: true
http:
  addr: 127.0.0.1:%d
  secret: trowfs-regtest-fixed-secret
`

// WriteDistributionConfig writes the registry configuration for rootDir and port into dir and
// returns its path. StartDistribution uses it; garbage-collect only needs the storage section, so
// any port will do for an offline run.
func WriteDistributionConfig(dir, rootDir string, port int) (string, error) {
	abs, err := filepath.Abs(rootDir)
	if err != nil {
		return "", fmt.Errorf("regtest: registry root: %w", err)
	}
	// A JSON string is a valid YAML double-quoted scalar, whatever the path holds.
	quoted, err := json.Marshal(abs)
	if err != nil {
		return "", fmt.Errorf("regtest: registry root: %w", err)
	}
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(distributionConfig, quoted, port)), 0o644); err != nil {
		return "", fmt.Errorf("regtest: registry config: %w", err)
	}
	return path, nil
}

// StartDistribution starts the CNCF distribution registry serving rootDir on a free 127.0.0.1 port
// and waits until /v2/ answers. It is stopped on t.Cleanup (SIGTERM, then SIGKILL).
func StartDistribution(tb testing.TB, rootDir string) *Registry {
	tb.Helper()
	tools := Tools(tb)
	cfgDir := tb.TempDir()
	var cfg string
	p, addr := startServer(tb, "distribution registry", func(port int) ([]string, error) {
		var err error
		cfg, err = WriteDistributionConfig(cfgDir, rootDir, port)
		return []string{tools.Registry, "serve", cfg}, err
	})
	return &Registry{Addr: addr, Dir: rootDir, ConfigPath: cfg, proc: p}
}

// gcEligibleBlob matches garbage-collect's line for a blob it deletes (or would delete).
var gcEligibleBlob = regexp.MustCompile(`^blob eligible for deletion: ((?:sha256|sha384|sha512):[0-9a-f]+)$`)

// gcSummary matches garbage-collect's summary line.
var gcSummary = regexp.MustCompile(`^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion$`)

// GarbageCollect runs `registry garbage-collect` (offline: the registry using configPath must be
// stopped) and returns the sorted digests of the blobs it deletes, or with dryRun would delete, and
// its whole output. A non-zero exit, or a blob count that disagrees with its own summary line, fails
// the test.
func GarbageCollect(tb testing.TB, configPath string, dryRun, deleteUntagged bool) (eligibleBlobs []string, output string) {
	tb.Helper()
	tools := Tools(tb)
	args := []string{"garbage-collect"}
	if dryRun {
		args = append(args, "--dry-run")
	}
	if deleteUntagged {
		args = append(args, "--delete-untagged")
	}
	args = append(args, configPath)
	ctx, cancel := context.WithTimeout(context.Background(), gcTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tools.Registry, args...)
	cmd.Env = toolEnv()
	var stdout, stderr lockedBuffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	output = stdout.String() + stderr.String()
	if err != nil {
		tb.Fatalf("regtest: registry %s: %v\n%s", strings.Join(args, " "), err, tail(output, 8000))
	}
	blobs, err := ParseGarbageCollect(stdout.String())
	if err != nil {
		tb.Fatalf("regtest: %v\n%s", err, tail(output, 8000))
	}
	return blobs, output
}

// ParseGarbageCollect extracts the sorted blob digests from `registry garbage-collect` output and
// checks them against the summary line ("N blobs marked, M blobs and K manifests eligible for
// deletion"), which must be present.
func ParseGarbageCollect(stdout string) ([]string, error) {
	var blobs []string
	summary := -1
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := gcEligibleBlob.FindStringSubmatch(line); m != nil {
			blobs = append(blobs, m[1])
			continue
		}
		if m := gcSummary.FindStringSubmatch(line); m != nil {
			n, err := strconv.Atoi(m[2])
			if err != nil {
				return nil, fmt.Errorf("regtest: garbage-collect summary %q: %w", line, err)
			}
			summary = n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("regtest: reading garbage-collect output: %w", err)
	}
	if summary < 0 {
		return nil, fmt.Errorf("regtest: garbage-collect printed no summary line")
	}
	slices.Sort(blobs)
	blobs = slices.Compact(blobs)
	if len(blobs) != summary {
		return nil, fmt.Errorf("regtest: garbage-collect listed %d blobs but its summary says %d", len(blobs), summary)
	}
	return blobs, nil
}
