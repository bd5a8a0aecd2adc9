package server_test

import (
	"bytes"
	"net"
)

type (
	netConn   = net.Conn
	netDialer = net.Dialer
)

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
