package registry

import "testing"

// TestDigestVectors pins the digest definitions documented in
// docs/registry.md.
func TestDigestVectors(t *testing.T) {
	a, b := "sha256:"+repeat("a", 64), "sha256:"+repeat("b", 64)
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{[]string{b, a}, "sha256:864f51ecf848c035c5c4549e5a7c5151e6786d7eb37a91e1cec7f674e81fa821"},
	} {
		if got := setDigest(c.in); got != c.want {
			t.Errorf("setDigest(%v) = %s, want %s", c.in, got, c.want)
		}
	}
	one := "sha256:" + repeat("1", 64)
	lines := []string{
		serialiseRow("tag", "org/app", "v1", one),
		serialiseRow("manifest", one, nil, hashField([]byte("{}"))),
	}
	if lines[0] != "tag\torg/app\tv1\t"+one+"\n" {
		t.Errorf("tag row = %q", lines[0])
	}
	const want = "sha256:e3932c6ed9d5ebae4cb3bc6532a72b77828e8377fa6be590d0a4f9dff934a87f"
	if got := logicalDigest(lines).String(); got != want {
		t.Errorf("logicalDigest = %s, want %s", got, want)
	}
	if got := escapeField([]byte("a b\t~%é")); got != "a%20b%09%7E%25%C3%A9" {
		t.Errorf("escapeField = %q", got)
	}
}

func repeat(s string, n int) string {
	out := ""
	for i := 0; i < n; i++ {
		out += s
	}
	return out
}
