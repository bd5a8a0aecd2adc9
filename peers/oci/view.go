package oci

import (
	"errors"
	"fmt"

	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/crdt"
	"github.com/trowfs/trowfs/registry"
)

// catalogSource is the part of *registry.Registry a view needs.
type catalogSource interface {
	Catalog() registry.Catalog
	CatalogRecorded() registry.Catalog
	Layout() registry.Layout
	Report() registry.Report
}

type viewSource struct {
	r        func() catalogSource
	recorded bool // CatalogRecorded: what the registry records, served or not
}

// errNoModel: the registry model is not loaded (yet), or trow.db could not be read; the node
// observes nothing meanwhile.
var errNoModel = errors.New("the registry model is not loaded yet")

// NewViewSource returns the local registry's content, read from trowfs's registry model (no disk
// scan, no registry request), as the replicated View.
func NewViewSource(r *registry.Registry) peers.ViewSource {
	return viewSource{r: func() catalogSource { return r }}
}

// NewViewSourceFunc is NewViewSource over whichever model model returns at each View (the server
// replaces its model when it detects the layout: pass Server.RegistryModel). A nil model is an
// error, never an empty registry: observed, an empty View would delete everything everywhere.
func NewViewSourceFunc(model func() *registry.Registry) peers.ViewSource {
	return viewSource{r: func() catalogSource {
		if m := model(); m != nil {
			return m
		}
		return nil
	}}
}

// NewRecordedViewSourceFunc is NewViewSourceFunc over registry.CatalogRecorded: the view the node
// observes. A manifest whose blob file went missing is still recorded by the registry, and so
// still in this view: dropped from it, it would be stamped as a delete and every peer would apply
// it, where it is to be healed (the applier, whose local view is the served one, pushes it again).
func NewRecordedViewSourceFunc(model func() *registry.Registry) peers.ViewSource {
	v := NewViewSourceFunc(model).(viewSource)
	v.recorded = true
	return v
}

// View converts the model's Catalog. Repositories without manifests or tags are left out.
func (v viewSource) View() (crdt.View, error) {
	c := v.r()
	if c == nil {
		return nil, errNoModel
	}
	cat := c.Catalog()
	if v.recorded {
		cat = c.CatalogRecorded()
	}
	if len(cat) == 0 && c.Layout() == registry.TrowSQLite {
		// With trow.db never read, the catalog is empty because nothing is known, not because
		// the registry holds nothing: observed, it would delete everything everywhere.
		if e := c.Report().DBError; e != "" {
			return nil, fmt.Errorf("%w: trow.db: %s", errNoModel, e)
		}
	}
	return ToView(cat), nil
}

// ToView converts a registry Catalog to a crdt.View.
func ToView(c registry.Catalog) crdt.View {
	out := crdt.View{}
	for repo, rc := range c {
		if len(rc.Manifests) == 0 && len(rc.Tags) == 0 {
			continue
		}
		r := crdt.Repo{Manifests: make(map[string]struct{}, len(rc.Manifests)), Tags: make(map[string]string, len(rc.Tags))}
		for d := range rc.Manifests {
			r.Manifests[d.String()] = struct{}{}
		}
		for t, d := range rc.Tags {
			r.Tags[t] = d.String()
		}
		out[repo] = r
	}
	return out
}
