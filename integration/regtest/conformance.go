package regtest

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// conformanceTimeout bounds one run of the suite (about 10 s on a plain directory here).
const conformanceTimeout = 5 * time.Minute

// ConformanceProfile returns the suite's configuration for the distribution registry v3.1.2 and
// olareg v0.1.2 as the tests run them: every setting the registries do not implement is turned
// off, so that a correct registry on a correct filesystem gives 0 failures.
//
//   - OCI_API_REFERRER, OCI_DATA_SUBJECT, OCI_DATA_SUBJECT_MISSING, OCI_DATA_SUBJECT_LIST: the
//     referrers API and the subject field (distribution v3.1.2 lacks them);
//   - OCI_DATA_SHA512: sha512 content (distribution v3.1.2 lacks it);
//   - OCI_DATA_NONDISTRIBUTABLE: an image with non-distributable layers that are never pushed; the
//     distribution registry refuses its manifest (7 failures on a plain directory, measured), so it
//     is off too.
func ConformanceProfile() map[string]string {
	return map[string]string{
		"OCI_TLS":                   "disabled",
		"OCI_VERSION":               "1.1",
		"OCI_REPO1":                 "conformance/repo1",
		"OCI_REPO2":                 "conformance/repo2",
		"OCI_LOG":                   "warn",
		"OCI_API_REFERRER":          "false",
		"OCI_DATA_SHA512":           "false",
		"OCI_DATA_SUBJECT":          "false",
		"OCI_DATA_SUBJECT_MISSING":  "false",
		"OCI_DATA_SUBJECT_LIST":     "false",
		"OCI_DATA_NONDISTRIBUTABLE": "false",
	}
}

// Junit statuses of a test case, as the suite writes them.
const (
	CasePassed  = "passed"
	CaseSkipped = "skipped" // skipped by the suite or disabled by the profile
	CaseFailure = "failure"
	CaseError   = "error"
)

// Case is one leaf test of the conformance suite.
type Case struct {
	Name   string
	Status string
}

// Result is the outcome of one conformance run, read from the junit.xml the suite wrote.
type Result struct {
	// Cases are the leaf tests in the suite's order.
	Cases []Case
	// Counts of Cases by status.
	Passed, Failed, Errors, Skipped int
	// ExitCode is the suite's exit code (1 when it found a failure).
	ExitCode int
	// Output is what the suite printed: its summary tree with the errors of failed tests.
	Output string
	// ResultsDir holds results.yaml, junit.xml and report.html.
	ResultsDir string
}

// Failures lists the names of the failed and errored cases.
func (r Result) Failures() []string {
	var out []string
	for _, c := range r.Cases {
		if c.Status == CaseFailure || c.Status == CaseError {
			out = append(out, c.Name)
		}
	}
	return out
}

// String summarises the counts.
func (r Result) String() string {
	return fmt.Sprintf("%d cases: %d passed, %d failed, %d errors, %d skipped or disabled",
		len(r.Cases), r.Passed, r.Failed, r.Errors, r.Skipped)
}

// Diff lists, one line each, the cases whose status differs between r and other ("name: a -> b"),
// including cases present in only one of them. An empty result means the same outcome.
func (r Result) Diff(other Result) []string {
	a, b := caseMap(r.Cases), caseMap(other.Cases)
	names := map[string]bool{}
	for n := range a {
		names[n] = true
	}
	for n := range b {
		names[n] = true
	}
	var out []string
	for n := range names {
		if a[n] != b[n] {
			out = append(out, fmt.Sprintf("%s: %s -> %s", n, orNone(a[n]), orNone(b[n])))
		}
	}
	sort.Strings(out)
	return out
}

// caseMap keys cases by name; a name repeated in the suite gets its occurrence number appended.
func caseMap(cases []Case) map[string]string {
	m := make(map[string]string, len(cases))
	seen := map[string]int{}
	for _, c := range cases {
		name := c.Name
		if seen[c.Name]++; seen[c.Name] > 1 {
			name = fmt.Sprintf("%s#%d", c.Name, seen[c.Name])
		}
		m[name] = c.Status
	}
	return m
}

func orNone(s string) string {
	if s == "" {
		return "(absent)"
	}
	return s
}

// RunConformance runs the OCI distribution-spec conformance suite against the registry at addr
// (host:port, plain HTTP) with ConformanceProfile, and returns its parsed results. The test fails
// when the suite could not run or wrote no results (it exits 0 when its configuration fails to
// load); failures of the registry are returned, not reported, so the caller decides.
func RunConformance(tb testing.TB, addr string) Result {
	tb.Helper()
	tools := Tools(tb)
	work := tb.TempDir()
	resultsDir := filepath.Join(work, "results")
	env := toolEnv()
	for k, v := range ConformanceProfile() {
		env = append(env, k+"="+v)
	}
	env = append(env,
		"OCI_REGISTRY="+addr,
		"OCI_RESULTS_DIR="+resultsDir,
	)
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tools.Conformance)
	// An empty working directory: the suite would read an oci-conformance.yaml found there.
	cmd.Dir = work
	cmd.Env = env
	var out lockedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	runErr := cmd.Run()
	res := Result{Output: out.String(), ResultsDir: resultsDir}
	var exitErr *exec.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &exitErr) && ctx.Err() == nil:
		res.ExitCode = exitErr.ExitCode()
	default:
		tb.Fatalf("regtest: conformance suite: %v\n%s", runErr, tail(res.Output, 8000))
	}
	if _, err := os.Stat(filepath.Join(resultsDir, "results.yaml")); err != nil {
		tb.Fatalf("regtest: conformance suite wrote no results.yaml (exit %d): %v\n%s", res.ExitCode, err, tail(res.Output, 8000))
	}
	junit, err := os.ReadFile(filepath.Join(resultsDir, "junit.xml"))
	if err != nil {
		tb.Fatalf("regtest: conformance suite wrote no junit.xml: %v\n%s", err, tail(res.Output, 8000))
	}
	if err := res.parseJunit(junit); err != nil {
		tb.Fatalf("regtest: %v", err)
	}
	// The exit code and the cases must tell the same story, or the parse missed something.
	if failed := res.Failed + res.Errors; (failed > 0) != (res.ExitCode != 0) {
		tb.Fatalf("regtest: conformance suite exited %d but junit.xml has %d failed cases\n%s", res.ExitCode, failed, tail(res.Output, 8000))
	}
	return res
}

// junitSuites is the part of the suite's junit.xml the helpers read.
type junitSuites struct {
	XMLName xml.Name `xml:"testsuites"`
	Suites  []struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Cases    []struct {
			Name   string `xml:"name,attr"`
			Status string `xml:"status,attr"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// parseJunit fills Cases and the counts from junit.xml. The suite-level failure count (which also
// counts parent nodes) must be zero exactly when no case failed.
func (r *Result) parseJunit(b []byte) error {
	var js junitSuites
	if err := xml.Unmarshal(b, &js); err != nil {
		return fmt.Errorf("regtest: conformance junit.xml: %w", err)
	}
	suiteFailures := 0
	for _, s := range js.Suites {
		suiteFailures += s.Failures + s.Errors
		for _, c := range s.Cases {
			r.Cases = append(r.Cases, Case{Name: c.Name, Status: c.Status})
			switch c.Status {
			case CasePassed:
				r.Passed++
			case CaseSkipped:
				r.Skipped++
			case CaseFailure:
				r.Failed++
			case CaseError:
				r.Errors++
			default:
				return fmt.Errorf("regtest: conformance junit.xml: case %q has unknown status %q", c.Name, c.Status)
			}
		}
	}
	if len(r.Cases) == 0 {
		return errors.New("regtest: conformance junit.xml lists no test cases")
	}
	if (suiteFailures == 0) != (r.Failed+r.Errors == 0) {
		return fmt.Errorf("regtest: conformance junit.xml: suite counts %d failures, cases %d", suiteFailures, r.Failed+r.Errors)
	}
	return nil
}
