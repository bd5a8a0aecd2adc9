package cache

import (
	"errors"
	"testing"
)

func TestGetSetStats(t *testing.T) {
	c, err := New[string, int](1<<20, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.Get("a"); ok {
		t.Fatal("empty cache returned a value")
	}
	c.Set("a", 42, 8)
	c.Wait()
	v, ok := c.Get("a")
	if !ok || v != 42 {
		t.Fatalf("Get(a) = %d, %v; want 42, true", v, ok)
	}
	s := c.Stats()
	if s.Hits != 1 || s.Misses != 1 || s.Ratio != 0.5 {
		t.Fatalf("stats = %+v, want 1 hit, 1 miss, ratio 0.5", s)
	}
	c.Del("a")
	c.Wait()
	if _, ok := c.Get("a"); ok {
		t.Fatal("value survived Del")
	}
}

func TestNewRejectsZeroCost(t *testing.T) {
	if _, err := New[string, int](0, 1); !errors.Is(err, ErrInvalidSize) {
		t.Fatalf("New(0) error = %v, want ErrInvalidSize", err)
	}
}

func TestEmptyStatsRatio(t *testing.T) {
	c, err := New[uint64, string](100, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r := c.Stats().Ratio; r != 0 {
		t.Fatalf("ratio of unused cache = %v, want 0", r)
	}
}
