package oci

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/trowfs/trowfs/registry"
)

// The verifying reader passes a blob on whole only when it matches; otherwise it ends in an error
// and its last byte is never handed out (a registry that commits what it was sent gets nothing
// whole of a lying source).
func TestVerifyingReaderHoldsTheLastByteUntilVerified(t *testing.T) {
	blob := bytes.Repeat([]byte("trowfs-"), 1000)
	d := digest.FromBytes(blob)
	flip := append([]byte(nil), blob...)
	flip[len(flip)-1] ^= 1
	for _, c := range []struct {
		name string
		body []byte
		size int64
		ok   bool
	}{
		{"matching", blob, int64(len(blob)), true},
		{"last byte wrong", flip, int64(len(blob)), false},
		{"one byte more", append(append([]byte(nil), blob...), 'x'), int64(len(blob)), false},
		{"one byte short", blob[:len(blob)-1], int64(len(blob)), false},
		{"empty, matching", nil, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := d
			if c.size == 0 {
				want = digest.FromBytes(nil)
			}
			b := &streamedBlob{desc: registry.Descriptor{Digest: want, Size: c.size}, open: func() (io.ReadCloser, error) {
				return io.NopCloser(iotestHalf{bytes.NewReader(c.body)}), nil
			}}
			rc, err := b.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if c.ok {
				if err != nil || !bytes.Equal(got, c.body) || b.failure() != nil {
					t.Fatalf("got %d bytes, err %v, failure %v", len(got), err, b.failure())
				}
				return
			}
			var mm *MismatchError
			if !errors.As(err, &mm) || !errors.As(b.failure(), &mm) {
				t.Fatalf("err %v, failure %v: want a *MismatchError", err, b.failure())
			}
			if int64(len(got)) >= c.size {
				t.Fatalf("%d bytes handed out of a %d-byte blob that did not match", len(got), c.size)
			}
		})
	}
}

// iotestHalf reads at most half of what is asked (at least one byte), as a network body does.
type iotestHalf struct{ r io.Reader }

func (h iotestHalf) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:len(p)/2]
	}
	return h.r.Read(p)
}
