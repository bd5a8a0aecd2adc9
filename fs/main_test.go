package fs_test

import (
	"testing"

	"github.com/trowfs/trowfs/fs/fstest"
)

func TestMain(m *testing.M) { fstest.Main(m) }
