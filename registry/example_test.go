package registry_test

import (
	"fmt"

	"github.com/trowfs/trowfs/registry"
)

func ExampleParseManifest() {
	m, err := registry.ParseManifest([]byte(`{
		"schemaVersion": 2,
		"mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": {"digest": "sha256:` + "1111111111111111111111111111111111111111111111111111111111111111" + `", "size": 2},
		"layers": [{"digest": "sha256:` + "2222222222222222222222222222222222222222222222222222222222222222" + `", "size": 3}],
		"subject": {"digest": "sha256:` + "3333333333333333333333333333333333333333333333333333333333333333" + `", "size": 4}
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range m.References() { // the subject is not a reference
		fmt.Println(d.Digest.Encoded()[:4])
	}
	_, err = registry.ParseManifest([]byte(`{"schemaVersion":1}`))
	fmt.Println(err)
	// Output:
	// 1111
	// 2222
	// unparsable manifest: docker schema1 manifests are not supported
}

func ExampleLayout_BlobDigest() {
	d, ok := registry.Distribution.BlobDigest("docker/registry/v2/blobs/sha256/ab/" +
		"ab00000000000000000000000000000000000000000000000000000000000000/data")
	fmt.Println(d.Encoded()[:4], ok)
	_, ok = registry.TrowSQLite.BlobDigest("uploads/sha256:ab00000000000000000000000000000000000000000000000000000000000000")
	fmt.Println(ok)
	// Output:
	// ab00 true
	// false
}
