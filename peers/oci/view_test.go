package oci

import (
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/peers/crdt"
	"github.com/trowfs/trowfs/registry"
)

// TestToViewConvertsCatalog converts digests to strings and drops empty repositories.
func TestToViewConvertsCatalog(t *testing.T) {
	d1, d2 := digest.FromString("one"), digest.FromString("two")
	c := registry.Catalog{
		"org/app": {Manifests: map[digest.Digest]struct{}{d1: {}, d2: {}}, Tags: map[string]digest.Digest{"v1": d1}},
		"empty":   {Manifests: map[digest.Digest]struct{}{}, Tags: map[string]digest.Digest{}},
	}
	want := crdt.View{"org/app": {Manifests: map[string]struct{}{d1.String(): {}, d2.String(): {}}, Tags: map[string]string{"v1": d1.String()}}}
	if got := ToView(c); !reflect.DeepEqual(got, want) {
		t.Fatalf("ToView = %v", got)
	}
	// No model yet is an error, never an empty registry, which the node would observe as the
	// deletion of everything.
	if v, err := NewViewSourceFunc(func() *registry.Registry { return nil }).View(); err == nil || v != nil {
		t.Fatalf("nil model: %v, %v (want an error)", v, err)
	}
}
