//go:build !race

package hashtree

// raceEnabled scales down tests that would take minutes under the race detector.
const raceEnabled = false
