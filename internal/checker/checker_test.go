package checker

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestCheckNameEveryVerdict(t *testing.T) {
	content := []byte("layer bytes")
	good256 := digest.FromBytes(content)
	good512 := digest.SHA512.FromBytes(content)
	bad256 := digest.FromString("other")
	bad512 := digest.SHA512.FromString("other")

	s, n, err := Sum(bytes.NewReader(content), good512)
	if err != nil || n != int64(len(content)) {
		t.Fatalf("Sum: %d bytes, %v", n, err)
	}
	if s.SHA256 != sha256.Sum256(content) {
		t.Fatal("Sum: wrong sha256")
	}
	if want := sha512.Sum512(content); s.Other != digest.NewDigestFromBytes(digest.SHA512, want[:]) {
		t.Fatalf("Sum: sha512 %s", s.Other)
	}
	only256, _, _ := Sum(bytes.NewReader(content), good256)
	if only256.Other != "" {
		t.Fatalf("Sum hashed another algorithm for a sha256 name: %s", only256.Other)
	}

	for _, tc := range []struct {
		name string
		want digest.Digest
		sums Sums
		v    Verdict
	}{
		{"sha256 match", good256, only256, Match},
		{"sha256 mismatch", bad256, only256, Mismatch},
		{"sha256 never hashed", good256, Sums{}, Mismatch},
		{"sha512 match", good512, s, Match},
		{"sha512 mismatch", bad512, s, Mismatch},
		{"sha512 not hashed in its algorithm", good512, only256, Unchecked},
	} {
		c := CheckName(tc.want, tc.sums)
		if c.Verdict != tc.v {
			t.Errorf("%s: verdict %d, want %d (%+v)", tc.name, c.Verdict, tc.v, c)
		}
		if c.Expected != tc.want.String() {
			t.Errorf("%s: expected %q", tc.name, c.Expected)
		}
		if c.Verdict == Mismatch && c.Actual == c.Expected {
			t.Errorf("%s: a mismatch with equal digests", tc.name)
		}
		if c.Verdict == Match && (c.Actual != c.Expected || !strings.HasPrefix(c.Actual, string(tc.want.Algorithm())+":")) {
			t.Errorf("%s: actual %q", tc.name, c.Actual)
		}
	}
}
