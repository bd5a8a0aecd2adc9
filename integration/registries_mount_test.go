package integration

// The real registries on a trowfs mount. Each test compares what trowfs reports with what the
// registry's own tools say on the same data, then unmounts and checks that the tree trowfs kept
// inline equals an offline rescan (`trowfs verify DATA --json`, exit 0).
//
// They drive trowfs through regtest.Mounter; newMounter (registries_mounter_test.go) implements it
// with integration/trowfsbin.

import (
	"slices"
	"testing"

	"github.com/trowfs/trowfs/integration/regtest"
)

// settled accepts a root .state once nothing is waiting to be hashed and the registry report is
// there.
func settled(s regtest.State) bool {
	return s.Status != "pending" && s.Registry != nil
}

// danglingIs returns a condition on .state: the registry report is settled and its dangling
// digests are exactly want (sorted), with nothing missing or mismatched.
func danglingIs(want []string) func(regtest.State) bool {
	return func(s regtest.State) bool {
		return settled(s) && !s.Registry.Truncated && s.Registry.MissingCount == 0 && s.Registry.MismatchedCount == 0 &&
			slices.Equal(s.Registry.DanglingDigests(), want)
	}
}

// checkLayout fails the test unless trowfs detected the layout.
func checkLayout(t *testing.T, s regtest.State, want string) {
	t.Helper()
	if s.Registry == nil || s.Registry.Layout != want {
		t.Fatalf("trowfs should see a %s layout; root .state:\n%s", want, s.Raw)
	}
}

func TestRegistriesDistributionConformanceMount(t *testing.T) {
	m := newMounter(t)
	data := t.TempDir()
	mnt := m.Mount(t, data, "--layout", "distribution")
	reg := regtest.StartDistribution(t, mnt)
	res := regtest.RunConformance(t, reg.Addr)
	reg.Stop(t)
	plainReg := regtest.StartDistribution(t, t.TempDir())
	plain := regtest.RunConformance(t, plainReg.Addr)
	plainReg.Stop(t)
	checkConformance(t, "a trowfs mount", res)
	if d := plain.Diff(res); len(d) > 0 {
		t.Errorf("conformance differs between a plain directory and the mount (plain -> mount):\n  %v", d)
	}

	// The suite leaves deleted manifests, indexes and artifacts behind: trowfs's dangling list
	// must be what the registry's own collector would delete.
	eligible, out := regtest.GarbageCollect(t, reg.ConfigPath, true, false)
	st := regtest.WaitState(t, mnt, stateTimeout, func(s regtest.State) bool {
		return settled(s) && slices.Equal(s.Registry.DanglingDigests(), eligible)
	})
	checkLayout(t, st, "distribution")
	t.Logf("after conformance: %d dangling blobs, garbage-collect output %d bytes", len(eligible), len(out))
	regtest.CheckRescan(t, m, data, mnt, st.Digest)
}

func TestRegistriesDistributionGCMount(t *testing.T) {
	m := newMounter(t)
	data := t.TempDir()
	mnt := m.Mount(t, data, "--layout", "distribution")
	reg, _, kept, reclaimable := gcWorkload(t, mnt)

	eligible, out := regtest.GarbageCollect(t, reg.ConfigPath, true, false)
	if !slices.Equal(eligible, reclaimable) {
		t.Fatalf("on the mount, garbage-collect --dry-run would delete\n  %v\nthe deleted image frees\n  %v\n%s", eligible, reclaimable, out)
	}
	st := regtest.WaitState(t, mnt, stateTimeout, danglingIs(eligible))
	checkLayout(t, st, "distribution")
	if st.Registry.InSync {
		t.Errorf("in_sync with %d dangling blobs:\n%s", len(eligible), st.Raw)
	}

	// The collector deletes through the mount; then nothing dangles and nothing is missing.
	if deleted, _ := regtest.GarbageCollect(t, reg.ConfigPath, false, false); !slices.Equal(deleted, eligible) {
		t.Errorf("garbage-collect deleted %v, its dry run announced %v", deleted, eligible)
	}
	st = regtest.WaitState(t, mnt, stateTimeout, danglingIs(nil))
	if !st.Registry.InSync {
		t.Errorf("not in_sync after garbage-collect:\n%s", st.Raw)
	}
	if again, out := regtest.GarbageCollect(t, reg.ConfigPath, true, false); len(again) != 0 {
		t.Errorf("after garbage-collect, a dry run still finds %v\n%s", again, out)
	}

	reg2 := regtest.StartDistribution(t, mnt)
	regtest.PullImages(t, reg2.Addr, kept)
	reg2.Stop(t)
	st = regtest.WaitState(t, mnt, stateTimeout, danglingIs(nil))
	v := regtest.CheckRescan(t, m, data, mnt, st.Digest)
	if v.Registry == nil || v.Registry.DanglingCount != 0 || v.Registry.MissingCount != 0 {
		t.Errorf("offline verify disagrees with the mount's registry report:\n%s", v.Raw)
	}
}

func TestRegistriesDistributionGCUntaggedMount(t *testing.T) {
	m := newMounter(t)
	data := t.TempDir()
	mnt := m.Mount(t, data, "--layout", "distribution", "--delete-untagged")
	reg, reclaimable := untaggedWorkload(t, mnt)
	eligible, out := regtest.GarbageCollect(t, reg.ConfigPath, true, true)
	if !slices.Equal(eligible, reclaimable) {
		t.Fatalf("on the mount, garbage-collect --dry-run --delete-untagged would delete\n  %v\nthe untagged image frees\n  %v\n%s", eligible, reclaimable, out)
	}
	st := regtest.WaitState(t, mnt, stateTimeout, danglingIs(eligible))
	checkLayout(t, st, "distribution")
	regtest.CheckRescan(t, m, data, mnt, st.Digest)
}

func TestRegistriesOlaregConformanceMount(t *testing.T) {
	m := newMounter(t)
	data := t.TempDir()
	mnt := m.Mount(t, data, "--layout", "oci-layout")
	reg := regtest.StartOlareg(t, mnt)
	res := regtest.RunConformance(t, reg.Addr)
	reg.Stop(t)
	plainReg := regtest.StartOlareg(t, t.TempDir())
	plain := regtest.RunConformance(t, plainReg.Addr)
	plainReg.Stop(t)
	checkConformance(t, "a trowfs mount (olareg)", res)
	if d := plain.Diff(res); len(d) > 0 {
		t.Errorf("olareg conformance differs between a plain directory and the mount (plain -> mount):\n  %v", d)
	}
	st := regtest.WaitState(t, mnt, stateTimeout, settled)
	regtest.CheckRescan(t, m, data, mnt, st.Digest)
}

func TestRegistriesOlaregMount(t *testing.T) {
	m := newMounter(t)
	data := t.TempDir()
	mnt := m.Mount(t, data, "--layout", "oci-layout")
	reg := regtest.StartOlareg(t, mnt)
	const repo = "trowfs/olareg"
	images, _ := regtest.PushImages(t, reg.Addr, repo, 4, 3)
	var total int64
	for _, im := range images {
		total += im.Bytes
	}
	if got := regtest.PullImages(t, reg.Addr, images); got != total {
		t.Fatalf("pulled %d bytes through the mount, the images hold %d", got, total)
	}
	st := regtest.WaitState(t, mnt, stateTimeout, danglingIs(nil))
	checkLayout(t, st, "oci-layout")
	if !st.Registry.InSync {
		t.Errorf("not in_sync after pushes only:\n%s", st.Raw)
	}

	// olareg's collection is off: the deleted image's own blobs stay, unreferenced.
	kept := []regtest.Image{images[0], images[1], images[3]}
	regtest.DeleteManifest(t, reg.Addr, repo, images[2].Digest)
	want := regtest.Unreferenced(images[2:3], kept)
	regtest.WaitState(t, mnt, stateTimeout, danglingIs(want))
	regtest.PullImages(t, reg.Addr, kept)
	reg.Stop(t)

	st = regtest.WaitState(t, mnt, stateTimeout, danglingIs(want))
	v := regtest.CheckRescan(t, m, data, mnt, st.Digest)
	if v.Registry == nil || !slices.Equal(v.Registry.DanglingDigests(), want) {
		t.Errorf("offline verify's dangling list differs from the mount's (%v):\n%s", want, v.Raw)
	}
}
