package hashtree

// Diff placeholder.
func Diff(a, b *Tree, fn func(Change) error) error { return nil }
