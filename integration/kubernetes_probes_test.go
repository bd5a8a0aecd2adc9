package integration

// The kubelet resolves a probe's named port among the ports of the probed container only (a
// port another container of the pod declares is "not found", and a liveness probe that cannot
// resolve its port fails: the container is restarted for ever). A Service's named targetPort is
// looked up in every container of the pod; a ServiceMonitor's port is a Service port's name.

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/trowfs/trowfs/integration/trowfsbin"
)

type k8sPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Port any `yaml:"port"`
	} `yaml:"httpGet"`
	TCPSocket *struct {
		Port any `yaml:"port"`
	} `yaml:"tcpSocket"`
	GRPC *struct {
		Port any `yaml:"port"`
	} `yaml:"grpc"`
}

type k8sContainer struct {
	Name           string    `yaml:"name"`
	Ports          []k8sPort `yaml:"ports"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
}

type k8sDoc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers     []k8sContainer `yaml:"containers"`
				InitContainers []k8sContainer `yaml:"initContainers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		Ports []struct {
			Name       string `yaml:"name"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
		Endpoints []struct {
			Port string `yaml:"port"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

func readK8sDocs(t *testing.T) []k8sDoc {
	t.Helper()
	root, err := trowfsbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/kubernetes/*.yaml (%v)", err)
	}
	var docs []k8sDoc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var d k8sDoc
			if err := dec.Decode(&d); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			docs = append(docs, d)
		}
	}
	return docs
}

func TestKubernetesNamedPortsResolve(t *testing.T) {
	docs := readK8sDocs(t)
	podPorts := map[string]bool{}
	servicePorts := map[string]bool{}
	probes := 0
	for _, d := range docs {
		if d.Kind != "StatefulSet" && d.Kind != "Deployment" {
			continue
		}
		spec := d.Spec.Template.Spec
		numbers := map[int]bool{} // every containerPort of the pod: a numeric probe port must be one
		for _, c := range spec.Containers {
			for _, p := range c.Ports {
				numbers[p.ContainerPort] = true
			}
		}
		for _, c := range append(spec.Containers, spec.InitContainers...) {
			own := map[string]bool{}
			for _, p := range c.Ports {
				own[p.Name] = true
				podPorts[p.Name] = true
			}
			for kind, pr := range map[string]*k8sProbe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
				if pr == nil {
					continue
				}
				probes++
				var port any
				switch {
				case pr.HTTPGet != nil:
					port = pr.HTTPGet.Port
				case pr.TCPSocket != nil:
					port = pr.TCPSocket.Port
				case pr.GRPC != nil:
					port = pr.GRPC.Port
				}
				if n, ok := port.(int); ok && !numbers[n] {
					t.Errorf("%s %s: container %s's %s uses port %d, which no container of the pod declares", d.Kind, d.Metadata.Name, c.Name, kind, n)
				}
				if name, ok := port.(string); ok && !own[name] {
					t.Errorf("%s %s: container %s's %s uses port %q, which container %s does not declare (the kubelet looks there only)",
						d.Kind, d.Metadata.Name, c.Name, kind, name, c.Name)
				}
			}
		}
	}
	if probes == 0 {
		t.Fatal("no probes found")
	}
	for _, d := range docs {
		if d.Kind != "Service" {
			continue
		}
		for _, p := range d.Spec.Ports {
			servicePorts[p.Name] = true
			if name, ok := p.TargetPort.(string); ok && !podPorts[name] {
				t.Errorf("Service %s: targetPort %q is declared by no container", d.Metadata.Name, name)
			}
		}
	}
	for _, d := range docs {
		if d.Kind != "ServiceMonitor" {
			continue
		}
		for _, e := range d.Spec.Endpoints {
			if !servicePorts[e.Port] {
				t.Errorf("ServiceMonitor %s: port %q is no Service port's name", d.Metadata.Name, e.Port)
			}
		}
	}
}
