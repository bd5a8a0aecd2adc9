package peers

import (
	"encoding/binary"
	"fmt"

	"github.com/trowfs/trowfs/peers/crdt"
)

// metaVersion is the format of node meta; a node ignores meta of another version (and says so).
const metaVersion = 1

// MetaLimit is memberlist's bound on node meta.
const MetaLimit = 512

// Meta is what a node gossips about itself: bounded facts only, never a list that grows.
type Meta struct {
	Root        crdt.Digest
	ClockWall   int64  // the node's clock (Last stamp), Unix ms
	ClockLogic  uint32 // its logical part
	DataAddr    string // host:port of the data plane, at most MaxAddrLen bytes
	RegistryURL string // --registry-advertise, at most MaxURLLen bytes
}

// Encode is: version(1) root(32) wall(8, big endian) logical(4), then the data-plane address and
// the registry URL, each as a length (one byte, or 255 and a second byte adding to it) and the
// bytes. With the longest allowed values that is 1+32+8+4+2+261+1+200 = 509 bytes.
func (m Meta) Encode() ([]byte, error) {
	if len(m.DataAddr) > MaxAddrLen || len(m.RegistryURL) > MaxURLLen {
		return nil, fmt.Errorf("node meta: address %d bytes (max %d) or URL %d bytes (max %d)", len(m.DataAddr), MaxAddrLen, len(m.RegistryURL), MaxURLLen)
	}
	b := make([]byte, 0, 64+len(m.DataAddr)+len(m.RegistryURL))
	b = append(b, metaVersion)
	b = append(b, m.Root[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.ClockWall))
	b = binary.BigEndian.AppendUint32(b, m.ClockLogic)
	b = appendShort(b, m.DataAddr)
	b = appendShort(b, m.RegistryURL)
	if len(b) > MetaLimit {
		return nil, fmt.Errorf("node meta is %d bytes, memberlist allows %d", len(b), MetaLimit)
	}
	return b, nil
}

// appendShort writes a string of at most 255+MaxAddrLen bytes: one length byte counts past 255
// by a second byte only when the first is 255.
func appendShort(b []byte, s string) []byte {
	if len(s) >= 255 {
		b = append(b, 255, byte(len(s)-255))
	} else {
		b = append(b, byte(len(s)))
	}
	return append(b, s...)
}

func readShort(b []byte) (string, []byte, bool) {
	if len(b) < 1 {
		return "", nil, false
	}
	n, b := int(b[0]), b[1:]
	if n == 255 {
		if len(b) < 1 {
			return "", nil, false
		}
		n, b = 255+int(b[0]), b[1:]
	}
	if len(b) < n {
		return "", nil, false
	}
	return string(b[:n]), b[n:], true
}

// DecodeMeta reads what Encode wrote.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) < 1+32+12 {
		return m, fmt.Errorf("node meta: %d bytes, too short", len(b))
	}
	if b[0] != metaVersion {
		return m, fmt.Errorf("node meta: format %d, this trowfs reads %d", b[0], metaVersion)
	}
	copy(m.Root[:], b[1:33])
	m.ClockWall = int64(binary.BigEndian.Uint64(b[33:41]))
	m.ClockLogic = binary.BigEndian.Uint32(b[41:45])
	rest := b[45:]
	var ok1, ok2 bool
	m.DataAddr, rest, ok1 = readShort(rest)
	if ok1 {
		m.RegistryURL, rest, ok2 = readShort(rest)
	}
	if !ok1 || !ok2 || len(rest) != 0 || len(m.DataAddr) > MaxAddrLen || len(m.RegistryURL) > MaxURLLen {
		return Meta{}, fmt.Errorf("node meta: malformed addresses")
	}
	return m, nil
}
