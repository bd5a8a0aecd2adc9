package api

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// Names on Linux are bytes, JSON strings are Unicode: encoding/json writes every byte that is not
// valid UTF-8 as U+FFFD, so "\xfe" and "\xff" would both come out as "\ufffd". Every JSON document
// trowfs produces (the endpoint's answers, .state, `trowfs verify --json`) is written by [Marshal]
// or [MarshalIndent], which keep such strings exactly (docs/api.md, "Names that are not UTF-8"):
//
//   - a member "k" whose string value is not valid UTF-8 keeps its display form (what
//     encoding/json writes) and is followed by "k_b64": the exact bytes in standard base64;
//   - a member "k" whose value is a list holding such strings (or objects with such keys) is
//     followed by "k_b64": a list of the same length, null where the element needed nothing, the
//     base64 string, or the object of moved members (next rule);
//   - a map entry whose key or value needs base64 is moved out of the map "k" into the sibling
//     object "k_b64", under the base64 of its key, with its value (and that value's own "_b64"
//     sibling, if any) as above; so no sibling can collide with a key of the map.
//
// The same applies to strings holding a NUL byte (never a name). Valid UTF-8 is written exactly
// as encoding/json writes it, so documents without such names are byte-for-byte unchanged.

// B64Suffix is appended to a JSON key for the sibling that carries exact bytes.
const B64Suffix = "_b64"

// needsB64 reports whether s cannot travel through a JSON string as is.
func needsB64(s string) bool { return !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 }

// sentinel marks a string replaced before encoding/json sees it; both NULs make it impossible
// in an original string (every original string with a NUL is replaced too).
const sentinelPrefix, sentinelSuffix = "\x00trowfs-b64:", "\x00"

// Marshal is json.Marshal, keeping strings that are not valid UTF-8 exactly (see above).
func Marshal(v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// encoding/json writes an invalid byte as the escape \ufffd (a real U+FFFD as its UTF-8
	// bytes) and NUL as \u0000: without either, nothing was lost. A literal backslash before
	// "ufffd" is a false alarm that only costs the slow path below.
	if !bytes.Contains(plain, []byte(`\ufffd`)) && !bytes.Contains(plain, []byte(`\u0000`)) {
		return plain, nil
	}
	nv, changed := substitute(reflect.ValueOf(v))
	if !changed {
		return plain, nil
	}
	raw, err := json.Marshal(nv.Interface())
	if err != nil {
		return nil, err
	}
	return rewrite(raw)
}

// MarshalIndent is [Marshal] with json.MarshalIndent's layout.
func MarshalIndent(v any, prefix, indent string) ([]byte, error) {
	b, err := Marshal(v)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, prefix, indent); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// DecodeString returns the exact string a JSON member stands for: the decoded b64 sibling when
// there is one, the display value otherwise.
func DecodeString(display, b64 string) (string, error) {
	if b64 == "" {
		return display, nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("bad %s value %q: %w", B64Suffix, b64, err)
	}
	return string(b), nil
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// opaqueTypes caches opaque by type (reflect.Type -> bool).
var opaqueTypes sync.Map

// opaque types encode themselves; their strings are not ours to look into.
func opaque(t reflect.Type) bool {
	if v, ok := opaqueTypes.Load(t); ok {
		return v.(bool)
	}
	o := t.Implements(jsonMarshaler) || t.Implements(textMarshaler) ||
		reflect.PointerTo(t).Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(textMarshaler)
	opaqueTypes.Store(t, o)
	return o
}

// substitute returns a copy of v in which every string needing base64 is replaced by a sentinel,
// and whether there was any. Nothing is allocated when there is none.
func substitute(v reflect.Value) (reflect.Value, bool) {
	if !v.IsValid() {
		return v, false
	}
	t := v.Type()
	if v.Kind() != reflect.Pointer && v.Kind() != reflect.Interface && opaque(t) {
		return v, false
	}
	switch v.Kind() {
	case reflect.String:
		if !needsB64(v.String()) {
			return v, false
		}
		return sentinelOf(v), true
	case reflect.Pointer:
		if v.IsNil() || opaque(t.Elem()) {
			return v, false
		}
		e, ok := substitute(v.Elem())
		if !ok {
			return v, false
		}
		np := reflect.New(t.Elem())
		np.Elem().Set(e)
		return np, true
	case reflect.Interface:
		if v.IsNil() {
			return v, false
		}
		e, ok := substitute(v.Elem())
		if !ok {
			return v, false
		}
		ni := reflect.New(t).Elem()
		ni.Set(e)
		return ni, true
	case reflect.Struct:
		var nv reflect.Value
		for i := 0; i < t.NumField(); i++ {
			if !t.Field(i).IsExported() {
				continue
			}
			f, ok := substitute(v.Field(i))
			if !ok {
				continue
			}
			if !nv.IsValid() {
				nv = reflect.New(t).Elem()
				nv.Set(v)
			}
			nv.Field(i).Set(f)
		}
		if nv.IsValid() {
			return nv, true
		}
		return v, false
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && (v.IsNil() || t.Elem().Kind() == reflect.Uint8) {
			return v, false
		}
		var nv reflect.Value
		for i := 0; i < v.Len(); i++ {
			e, ok := substitute(v.Index(i))
			if !ok {
				continue
			}
			if !nv.IsValid() {
				if v.Kind() == reflect.Slice {
					nv = reflect.MakeSlice(t, v.Len(), v.Len())
					reflect.Copy(nv, v)
				} else {
					nv = reflect.New(t).Elem()
					nv.Set(v)
				}
			}
			nv.Index(i).Set(e)
		}
		if nv.IsValid() {
			return nv, true
		}
		return v, false
	case reflect.Map:
		if v.IsNil() {
			return v, false
		}
		changed := false
		type kv struct{ k, v reflect.Value }
		var all []kv
		for it := v.MapRange(); it.Next(); {
			k, kc := it.Key(), false
			e, ec := substitute(it.Value())
			if k.Kind() == reflect.String && !opaque(k.Type()) && (ec || needsB64(k.String())) {
				// The whole entry moves to the b64 sibling, so that no sibling key can
				// collide with another key of the map.
				k, kc = sentinelOf(k), true
			}
			changed = changed || kc || ec
			all = append(all, kv{k, e})
		}
		if !changed {
			return v, false
		}
		nm := reflect.MakeMapWithSize(t, len(all))
		for _, p := range all {
			nm.SetMapIndex(p.k, p.v)
		}
		return nm, true
	}
	return v, false
}

// sentinelOf returns a string value of v's type standing for v's bytes.
func sentinelOf(v reflect.Value) reflect.Value {
	nv := reflect.New(v.Type()).Elem()
	nv.SetString(sentinelPrefix + base64.StdEncoding.EncodeToString([]byte(v.String())) + sentinelSuffix)
	return nv
}

// node is a JSON value in document order; strings and scalars keep their raw JSON text.
type node struct {
	kind byte     // 'o' object, 'a' array, 'r' raw (a string, number, bool or null)
	keys []string // raw JSON strings, quotes included
	vals []*node
	raw  string
}

// rewrite turns the sentinels in raw, a document json.Marshal wrote, into display values and
// b64 siblings.
func rewrite(raw []byte) ([]byte, error) {
	p := jsonSplitter{b: raw}
	n, err := p.value()
	if err != nil {
		return nil, err
	}
	if p.skipSpace(); p.i != len(p.b) {
		return nil, errors.New("api: trailing data after the JSON document")
	}
	n, _ = transform(n)
	var out bytes.Buffer
	out.Grow(len(raw))
	writeNode(&out, n)
	return out.Bytes(), nil
}

// jsonSplitter splits valid JSON into nodes without decoding strings.
type jsonSplitter struct {
	b []byte
	i int
}

var errSyntax = errors.New("api: malformed JSON from encoding/json")

func (p *jsonSplitter) skipSpace() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *jsonSplitter) value() (*node, error) {
	p.skipSpace()
	if p.i >= len(p.b) {
		return nil, errSyntax
	}
	switch p.b[p.i] {
	case '{':
		p.i++
		n := &node{kind: 'o'}
		for {
			p.skipSpace()
			if p.i < len(p.b) && p.b[p.i] == '}' {
				p.i++
				return n, nil
			}
			if len(n.keys) > 0 {
				if p.b[p.i] != ',' {
					return nil, errSyntax
				}
				p.i++
				p.skipSpace()
			}
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			p.skipSpace()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return nil, errSyntax
			}
			p.i++
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, k)
			n.vals = append(n.vals, v)
		}
	case '[':
		p.i++
		n := &node{kind: 'a'}
		for {
			p.skipSpace()
			if p.i < len(p.b) && p.b[p.i] == ']' {
				p.i++
				return n, nil
			}
			if len(n.vals) > 0 {
				if p.b[p.i] != ',' {
					return nil, errSyntax
				}
				p.i++
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, v)
		}
	case '"':
		s, err := p.str()
		return &node{kind: 'r', raw: s}, err
	}
	start := p.i
	for p.i < len(p.b) && !strings.ContainsRune(",}] \t\n\r", rune(p.b[p.i])) {
		p.i++
	}
	if p.i == start {
		return nil, errSyntax
	}
	return &node{kind: 'r', raw: string(p.b[start:p.i])}, nil
}

// str returns the raw JSON string at p.i, quotes included.
func (p *jsonSplitter) str() (string, error) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", errSyntax
	}
	start := p.i
	for p.i++; p.i < len(p.b); p.i++ {
		switch p.b[p.i] {
		case '\\':
			p.i++
		case '"':
			p.i++
			return string(p.b[start:p.i]), nil
		}
	}
	return "", errSyntax
}

// rawSentinelPrefix and rawSentinelSuffix are the sentinel's delimiters as json.Marshal writes them.
const rawSentinelPrefix, rawSentinelSuffix = `"\u0000trowfs-b64:`, `\u0000"`

// unsentinel returns the display JSON and the raw JSON base64 string a raw sentinel stands for.
func unsentinel(raw string) (display, b64 string, ok bool) {
	rest, ok := strings.CutPrefix(raw, rawSentinelPrefix)
	if !ok {
		return "", "", false
	}
	enc, ok := strings.CutSuffix(rest, rawSentinelSuffix)
	if !ok {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", "", false
	}
	d, _ := json.Marshal(string(b)) // the display form: invalid bytes become U+FFFD
	return string(d), `"` + enc + `"`, true
}

// withSuffix returns the raw JSON string k with B64Suffix appended to its content.
func withSuffix(k string) string { return k[:len(k)-1] + B64Suffix + `"` }

// transform replaces sentinels inside n and returns what n's b64 sibling must hold (nil: none).
func transform(n *node) (*node, *node) {
	switch n.kind {
	case 'r':
		display, b64, ok := unsentinel(n.raw)
		if !ok {
			return n, nil
		}
		return &node{kind: 'r', raw: display}, &node{kind: 'r', raw: b64}
	case 'a':
		var side *node
		for i, v := range n.vals {
			nv, s := transform(v)
			n.vals[i] = nv
			if s != nil {
				if side == nil {
					side = &node{kind: 'a', vals: make([]*node, len(n.vals))}
				}
				side.vals[i] = s
			}
		}
		if side != nil {
			for i, v := range side.vals {
				if v == nil {
					side.vals[i] = &node{kind: 'r', raw: "null"}
				}
			}
		}
		return n, side
	case 'o':
		out := &node{kind: 'o'}
		var moved *node
		for i, k := range n.keys {
			v, s := transform(n.vals[i])
			if _, b64, ok := unsentinel(k); ok {
				if moved == nil {
					moved = &node{kind: 'o'}
				}
				moved.keys = append(moved.keys, b64)
				moved.vals = append(moved.vals, v)
				if s != nil { // base64 has no "_": this key cannot collide
					moved.keys = append(moved.keys, withSuffix(b64))
					moved.vals = append(moved.vals, s)
				}
				continue
			}
			out.keys = append(out.keys, k)
			out.vals = append(out.vals, v)
			if s != nil {
				out.keys = append(out.keys, withSuffix(k))
				out.vals = append(out.vals, s)
			}
		}
		return out, moved
	}
	return n, nil
}

func writeNode(w *bytes.Buffer, n *node) {
	switch n.kind {
	case 'o':
		w.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(k)
			w.WriteByte(':')
			writeNode(w, n.vals[i])
		}
		w.WriteByte('}')
	case 'a':
		w.WriteByte('[')
		for i, v := range n.vals {
			if i > 0 {
				w.WriteByte(',')
			}
			writeNode(w, v)
		}
		w.WriteByte(']')
	default:
		w.WriteString(n.raw)
	}
}
