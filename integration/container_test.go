package integration

// The Dockerfile and the Kubernetes manifests in deploy/kubernetes stay true to the binary:
// the builder is the Go of go.mod, the binary is static, and every trowfs flag they pass is one
// `trowfs mount --help` lists; the probes ask paths the endpoint of a real mount serves.

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

// flagsMissingFromHelp returns the --flags of args (before a lone "--") that help does not list.
func flagsMissingFromHelp(help string, args []string) []string {
	var missing []string
	for _, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(a, "=")
		if !regexp.MustCompile(`(?m)^\s+(-\w, )?` + regexp.QuoteMeta(name) + `([= ]|$)`).MatchString(help) {
			missing = append(missing, name)
		}
	}
	return missing
}

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := trowfsbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDockerfileBuildsStaticBinaryWithGoModVersion(t *testing.T) {
	gomod := readRepoFile(t, "go.mod")
	want := regexp.MustCompile(`(?m)^toolchain go(\S+)$`).FindStringSubmatch(gomod)
	if want == nil {
		want = regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(gomod)
	}
	if want == nil {
		t.Fatal("go.mod has neither a toolchain nor a go line")
	}
	var stages, froms []string
	var entry string
	var static bool
	for _, line := range strings.Split(readRepoFile(t, "Dockerfile"), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				stages = append(stages, f[3])
			}
		case "RUN":
			if strings.Contains(line, "CGO_ENABLED=0") && strings.Contains(line, "go build") {
				static = true
			}
		case "ENTRYPOINT":
			entry = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), f[0]))
		}
	}
	if len(froms) != 2 || len(stages) != 2 {
		t.Fatalf("Dockerfile stages %v (FROM %v), want two named stages: a builder and a runtime", stages, froms)
	}
	if img, tag, _ := strings.Cut(froms[0], ":"); img != "golang" || (tag != want[1] && !strings.HasPrefix(tag, want[1]+"-")) {
		t.Errorf("builder FROM %s, want golang:%s (go.mod)", froms[0], want[1])
	}
	if strings.HasPrefix(froms[1], "golang") {
		t.Errorf("runtime stage FROM %s: want a small image, not the toolchain", froms[1])
	}
	if !static {
		t.Error("Dockerfile does not build with CGO_ENABLED=0 go build")
	}
	var args []string
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(entry, -1) {
		args = append(args, m[1])
	}
	if len(args) < 2 || args[0] != "/usr/local/bin/trowfs" || args[1] != "mount" {
		t.Fatalf("ENTRYPOINT %v, want [\"/usr/local/bin/trowfs\", \"mount\", ...] (exec form)", args)
	}
	help := trowfsbin.Run(t, "mount", "--help").Stdout
	for _, f := range flagsMissingFromHelp(help, args[2:]) {
		t.Errorf("Dockerfile ENTRYPOINT passes %s, which trowfs mount does not have", f)
	}
}

// yamlList returns the items of every block list under key (e.g. "args:") in a YAML file,
// one slice per occurrence; comments and quotes are dropped. Enough for our manifests.
func yamlLists(doc, key string) [][]string {
	var out [][]string
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		trim := strings.TrimSpace(lines[i])
		if trim != key && trim != "- "+key {
			continue
		}
		var items []string
		for i+1 < len(lines) {
			next := strings.TrimSpace(lines[i+1])
			if strings.HasPrefix(next, "#") || next == "" {
				i++
				continue
			}
			if !strings.HasPrefix(next, "- ") {
				break
			}
			items = append(items, strings.Trim(strings.TrimSpace(strings.TrimPrefix(next, "- ")), `"'`))
			i++
		}
		out = append(out, items)
	}
	return out
}

func TestKubernetesManifestsUseRealFlagsAndProbePaths(t *testing.T) {
	root, err := trowfsbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/kubernetes/*.yaml (%v)", err)
	}
	help := trowfsbin.Run(t, "mount", "--help").Stdout
	kinds := map[string]bool{}
	var paths []string
	var mountArgs int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc := string(b)
		if strings.Contains(doc, "\t") {
			t.Errorf("%s: YAML must not contain tabs", filepath.Base(f))
		}
		for _, m := range regexp.MustCompile(`(?m)^kind: (\w+)`).FindAllStringSubmatch(doc, -1) {
			kinds[m[1]] = true
		}
		for _, args := range yamlLists(doc, "args:") {
			if len(args) > 0 && args[0] == "mount" {
				mountArgs++
				for _, fl := range flagsMissingFromHelp(help, args) {
					t.Errorf("%s passes %s, which trowfs mount does not have", filepath.Base(f), fl)
				}
				if !strings.Contains(strings.Join(args, " "), "--exec -- trow --data-dir /data") {
					t.Errorf("%s: trowfs should run Trow on the mount (--exec -- trow --data-dir /data), args %v", filepath.Base(f), args)
				}
			}
		}
		for _, m := range regexp.MustCompile(`(?m)^\s+path: (/\S*)`).FindAllStringSubmatch(doc, -1) {
			paths = append(paths, m[1])
		}
		for _, m := range regexp.MustCompile(`location = (/\S*)`).FindAllStringSubmatch(doc, -1) {
			paths = append(paths, m[1])
		}
	}
	for _, k := range []string{"StatefulSet", "Service", "ServiceMonitor", "ConfigMap"} {
		if !kinds[k] {
			t.Errorf("deploy/kubernetes has no %s", k)
		}
	}
	if mountArgs == 0 {
		t.Fatal("no container runs trowfs mount (args: [mount, ...])")
	}
	if len(paths) == 0 {
		t.Fatal("no probe or scrape paths found")
	}

	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	trowfsbin.Start(t, "", "", "--listen", "unix:"+sock)
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	for _, p := range paths {
		resp, err := c.Get("http://localhost" + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("manifests use %s, which the endpoint answers %d", p, resp.StatusCode)
		}
	}
}
