package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/trowfs/trowfs/peers"
	"github.com/trowfs/trowfs/peers/crdt"
	"github.com/trowfs/trowfs/registry"
)

// Options configure an Applier. Zero values take the defaults.
type Options struct {
	// LocalURL is this node's own registry (--registry-url), e.g. http://127.0.0.1:8000.
	LocalURL string
	// Local reads what the local registry holds (NewViewSource over the registry model). Required.
	Local peers.ViewSource
	// Store keeps, across restarts, what was last seen replicated (so that a delete made while this
	// node was down still reaches its registry). nil: kept in memory only.
	Store peers.Store
	// Transport carries every registry request (nil: http.DefaultTransport); tests inject faults.
	Transport http.RoundTripper
	// Jobs bounds the manifests fetched and pushed at once (default 4).
	Jobs int
	// MemLimit is the largest blob spooled in memory; larger ones go to a temporary file in
	// TempDir (default 4 MiB; TempDir default os.TempDir()).
	MemLimit int64
	TempDir  string
	// BackoffStart and BackoffMax bound how long a failing or lying source is skipped (doubled per
	// failure; defaults 1s and 1 min). RefusedRetry is how long a delete the local registry refused
	// waits before it is tried again (default 10 min).
	BackoffStart, BackoffMax, RefusedRetry time.Duration
	// StallTimeout and MinRate bound a slow registry request: a request is abandoned (a failure of
	// that source) when a StallTimeout window passes without its response headers, or with fewer
	// than MinRate bytes per second of its body (defaults 30 s and 1 KiB/s). The node gives Apply
	// no deadline: without this a hung or slowloris peer would stall every round.
	StallTimeout time.Duration
	MinRate      int64
	Logger       *slog.Logger
	Now          func() time.Time
}

// MaxDepth is the deepest chain of manifests applied: an index holding an index holding ... an
// image, or referrers of referrers through their subject (an image below one index is depth 2).
const MaxDepth = 8

// Result counts what one Apply did.
type Result struct {
	Manifests        int              // manifests pushed (by digest)
	Blobs            int              // blobs pushed
	BlobBytes        int64            // their bytes
	Tags             int              // tags set
	DeletedManifests int              //
	DeletedTags      int              //
	RefusedDeletes   int              // deletes the local registry refused (reported, retried later)
	Rejected         map[string]int64 // source name -> bytes refused because they did not match
	Failed           []string         // repo@digest or repo:tag that could not be applied this round
	Skipped          []string         // names the OCI API cannot carry (invalid repository, tag or digest)
}

// SourceStats is what is known of one source.
type SourceStats struct {
	Rejected      uint64    `json:"rejected"`       // objects whose bytes did not match their digest or size
	RejectedBytes int64     `json:"rejected_bytes"` //
	Failures      uint64    `json:"failures"`       // transport or HTTP failures
	BackoffUntil  time.Time `json:"backoff_until"`  // skipped until then
	LastError     string    `json:"last_error,omitempty"`

	backoff time.Duration // the last back-off, doubled at the next failure
}

// Stats are the Applier's counters since start.
type Stats struct {
	Applies          uint64                 `json:"applies"`
	Manifests        uint64                 `json:"manifests_pushed"`
	Blobs            uint64                 `json:"blobs_pushed"`
	BlobBytes        int64                  `json:"blob_bytes_pushed"`
	Tags             uint64                 `json:"tags_set"`
	DeletedManifests uint64                 `json:"manifests_deleted"`
	DeletedTags      uint64                 `json:"tags_deleted"`
	RefusedDeletes   uint64                 `json:"deletes_refused"`
	Healed           uint64                 `json:"blobs_healed"`
	Refused          []string               `json:"refused,omitempty"` // deletes currently refused, with the reason
	Sources          map[string]SourceStats `json:"sources"`
	Last             Result                 `json:"-"`
	LastError        string                 `json:"last_error,omitempty"`
}

// Applier makes the local registry hold a replicated View. It implements peers.Applier. Apply calls
// are serialised; Stats may be called at any time.
type Applier struct {
	o      Options
	log    *slog.Logger
	rt     http.RoundTripper // uploads, manifest PUTs and DELETEs to the local registry
	readRT http.RoundTripper // every GET and HEAD: rt, abandoning stalled requests

	// applyMu serialises Apply.
	applyMu sync.Mutex

	// mu guards everything below (never held during I/O).
	mu      sync.Mutex
	st      Stats
	sources map[string]*SourceStats
	refused map[string]refusal // delete key -> when to try again
	synced  *synced            // loaded at the first Apply

	budget healBudget // DATA's free space that heals of unknown size share (heal.go)
}

type refusal struct {
	until  time.Time
	reason string
}

var _ peers.Applier = (*Applier)(nil)

// New returns an Applier.
func New(o Options) (*Applier, error) {
	if o.Local == nil {
		return nil, errors.New("oci: Options.Local is required")
	}
	if _, err := parseRegistryURL(o.LocalURL); err != nil {
		return nil, fmt.Errorf("oci: local registry: %w", err)
	}
	if o.Jobs <= 0 {
		o.Jobs = 4
	}
	if o.MemLimit <= 0 {
		o.MemLimit = 4 << 20
	}
	if o.BackoffStart <= 0 {
		o.BackoffStart = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Minute
	}
	if o.RefusedRetry <= 0 {
		o.RefusedRetry = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 30 * time.Second
	}
	if o.MinRate <= 0 {
		o.MinRate = 1 << 10
	}
	a := &Applier{o: o, log: o.Logger, rt: o.Transport, sources: map[string]*SourceStats{}, refused: map[string]refusal{}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.rt == nil {
		a.rt = http.DefaultTransport
	}
	// Reads (GETs and HEADs, from sources and the local registry) are abandoned when they stall;
	// uploads are not (a large blob's response comes only once its body is sent).
	a.readRT = &stallTransport{rt: a.rt, d: o.StallTimeout, min: max(1, o.MinRate*int64(o.StallTimeout)/int64(time.Second))}
	return a, nil
}

// Stats returns a copy of the counters.
func (a *Applier) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st
	s.Sources = make(map[string]SourceStats, len(a.sources))
	for k, v := range a.sources {
		s.Sources[k] = *v
	}
	s.Refused = nil
	for k, r := range a.refused {
		s.Refused = append(s.Refused, strings.ReplaceAll(k, "\x00", " ")+": "+r.reason)
	}
	sort.Strings(s.Refused)
	return s
}

// Apply implements peers.Applier: it makes the local registry hold live, fetching what is missing
// from sources, and returns an error when something could not be applied (the node retries).
func (a *Applier) Apply(ctx context.Context, live crdt.View, sources []peers.Source) error {
	_, err := a.ApplyResult(ctx, live, sources)
	return err
}

// ApplyResult is Apply with the counts of the round.
func (a *Applier) ApplyResult(ctx context.Context, live crdt.View, sources []peers.Source) (Result, error) {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	res, err := a.apply(ctx, live, sources)
	a.mu.Lock()
	a.st.Applies++
	a.st.Manifests += uint64(res.Manifests)
	a.st.Blobs += uint64(res.Blobs)
	a.st.BlobBytes += res.BlobBytes
	a.st.Tags += uint64(res.Tags)
	a.st.DeletedManifests += uint64(res.DeletedManifests)
	a.st.DeletedTags += uint64(res.DeletedTags)
	a.st.RefusedDeletes += uint64(res.RefusedDeletes)
	a.st.Last = res
	a.st.LastError = ""
	if err != nil {
		a.st.LastError = err.Error()
	}
	a.mu.Unlock()
	return res, err
}

// round is the state of one Apply.
type round struct {
	a       *Applier
	ctx     context.Context
	local   *endpoint
	pusher  *remote.Pusher
	sources []*endpoint

	// mu guards everything below.
	mu      sync.Mutex
	res     Result
	flights map[string]*flight
	blobSem chan struct{} // bounds concurrent blob transfers
}

type flight struct {
	done chan struct{}
	err  error
}

func (a *Applier) apply(ctx context.Context, live crdt.View, sources []peers.Source) (Result, error) {
	if err := a.loadSynced(); err != nil {
		return Result{}, err
	}
	t0 := time.Now()
	localView, err := a.o.Local.View()
	if err != nil {
		return Result{}, fmt.Errorf("oci: reading the local registry's view: %w", err)
	}
	local, _ := newEndpoint("local", a.o.LocalURL, a.readRT)
	pusher, err := remote.NewPusher(remote.WithTransport(a.rt), remote.WithContext(ctx),
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 2}))
	if err != nil {
		return Result{}, err
	}
	r := &round{a: a, ctx: ctx, local: local, pusher: pusher, flights: map[string]*flight{}, blobSem: make(chan struct{}, a.o.Jobs)}
	r.res.Rejected = map[string]int64{}
	for _, s := range sources {
		ep, err := newEndpoint(s.Name, s.RegistryURL, a.readRT)
		if err != nil {
			a.sourceFailed(s.Name, err, false)
			continue
		}
		r.sources = append(r.sources, ep)
	}

	// Names the OCI API cannot carry (an OCI layout at the root of DATA is repository ".") are
	// reported and left alone, never retried as failures.
	live = r.valid(live, "live")
	localView = r.valid(localView, "local")

	// 1. Manifests (and everything they reference) that live has and the local registry lacks.
	type job struct{ repo, d string }
	var jobs []job
	for _, repo := range sortedKeys(live) {
		want := live[repo]
		have := localView[repo]
		need := map[string]struct{}{}
		for d := range want.Manifests {
			need[d] = struct{}{}
		}
		for _, d := range want.Tags { // a tag needs its manifest, even one deleted elsewhere
			need[d] = struct{}{}
		}
		for _, d := range sortedKeys(need) {
			if _, ok := have.Manifests[d]; !ok {
				jobs = append(jobs, job{repo, d})
			}
		}
	}
	failed := map[string]error{}
	var fmu sync.Mutex
	sem := make(chan struct{}, a.o.Jobs)
	var wg sync.WaitGroup
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := r.ensureManifest(j.repo, j.d, 0); err != nil {
				fmu.Lock()
				failed[j.repo+"@"+j.d] = err
				fmu.Unlock()
			}
		}()
	}
	wg.Wait()
	tManifests := time.Now()

	// 2. Tags, each only once its manifest is present.
	for _, repo := range sortedKeys(live) {
		have := localView[repo]
		for _, tag := range sortedKeys(live[repo].Tags) {
			d := live[repo].Tags[tag]
			if have.Tags[tag] == d {
				continue
			}
			if err := failed[repo+"@"+d]; err != nil {
				failed[repo+":"+tag] = fmt.Errorf("manifest %s not applied: %w", d, err)
				continue
			}
			if err := r.setTag(repo, tag, d); err != nil {
				failed[repo+":"+tag] = err
			}
		}
	}

	tTags := time.Now()

	// 3. Deletes: what was replicated before, is still in the local registry unchanged, and live
	// no longer holds.
	a.mu.Lock()
	prev := a.synced
	a.mu.Unlock()
	next := newSynced() // what is replicated and present after this round
	for _, repo := range sortedKeys(localView) {
		have, want := localView[repo], live[repo]
		// A manifest a tag still points at is kept: a live tag needs it, and a local tag live does
		// not know (a push not observed yet) would be deleted with it (distribution deletes the
		// tags of a manifest deleted by digest).
		targets := map[string]bool{}
		for _, d := range want.Tags {
			targets[d] = true
		}
		for _, tag := range sortedKeys(have.Tags) {
			d := have.Tags[tag]
			if _, ok := want.Tags[tag]; ok {
				continue
			}
			if d != "" && prev.tag(repo, tag) == d {
				if r.delete(repo, tag, false) {
					continue
				}
				next.addTag(repo, tag, d) // still there: try again later
			}
			targets[d] = true
		}
		for _, d := range sortedKeys(have.Manifests) {
			if _, ok := want.Manifests[d]; ok {
				continue
			}
			if targets[d] {
				if prev.manifest(repo, d) {
					next.addManifest(repo, d) // deleted once no tag points at it
				}
				continue
			}
			if prev.manifest(repo, d) && !r.delete(repo, d, true) {
				next.addManifest(repo, d)
			}
		}
	}

	// Remember what is replicated and present now: live, minus what failed.
	for repo, rp := range live {
		for d := range rp.Manifests {
			if failed[repo+"@"+d] == nil {
				next.addManifest(repo, d)
			}
		}
		for t, d := range rp.Tags {
			if failed[repo+":"+t] == nil {
				next.addTag(repo, t, d)
			}
		}
	}
	a.mu.Lock()
	a.synced = next
	a.mu.Unlock()
	tDeletes := time.Now()
	if err := a.saveSynced(next); err != nil {
		a.log.Warn("peers: saving the applied view failed", "err", err)
	}
	a.log.Debug("peers: apply phases", "manifests_jobs", len(jobs), "manifests", tManifests.Sub(t0), "tags", tTags.Sub(tManifests),
		"deletes", tDeletes.Sub(tTags), "save", time.Since(tDeletes))

	r.mu.Lock()
	res := r.res
	r.mu.Unlock()
	for _, k := range sortedKeys(failed) {
		res.Failed = append(res.Failed, k)
	}
	if len(failed) > 0 {
		k := res.Failed[0]
		return res, fmt.Errorf("oci: %d of the replicated manifests and tags could not be applied; first %s: %w", len(failed), k, failed[k])
	}
	return res, ctx.Err()
}

// valid returns v without the repositories, tags and manifests whose names the OCI API cannot
// carry, recording them in the result.
func (r *round) valid(v crdt.View, which string) crdt.View {
	out := crdt.View{}
	skip := func(what string) {
		r.res.Skipped = append(r.res.Skipped, which+" "+what)
	}
	for _, repo := range sortedKeys(v) {
		rp := v[repo]
		if _, err := name.NewRepository(r.local.repoRef(repo), r.local.nameOpts()...); err != nil || !repoNameRE.MatchString(repo) {
			skip("repository " + repo)
			continue
		}
		c := crdt.Repo{Manifests: map[string]struct{}{}, Tags: map[string]string{}}
		for d := range rp.Manifests {
			if _, err := digest.Parse(d); err != nil {
				skip("manifest " + repo + "@" + d)
				continue
			}
			c.Manifests[d] = struct{}{}
		}
		for t, d := range rp.Tags {
			_, terr := name.NewTag(r.local.repoRef(repo)+":"+t, r.local.nameOpts()...)
			if _, derr := digest.Parse(d); terr != nil || derr != nil {
				skip("tag " + repo + ":" + t)
				continue
			}
			c.Tags[t] = d
		}
		out[repo] = c
	}
	return out
}

// repoNameRE is the distribution reference grammar for a repository path (go-containerregistry
// checks only the characters, so "org/../app" or "org//app" would pass it and reach the registry,
// which cleans such a path into another repository or refuses it every round).
var repoNameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// once runs f once per key in a round; concurrent callers wait for the first.
func (r *round) once(key string, f func() error) error {
	r.mu.Lock()
	if fl, ok := r.flights[key]; ok {
		r.mu.Unlock()
		<-fl.done
		return fl.err
	}
	fl := &flight{done: make(chan struct{})}
	r.flights[key] = fl
	r.mu.Unlock()
	fl.err = f()
	close(fl.done)
	return fl.err
}

// ensureManifest makes the local repo hold manifest d and everything it references; it returns the
// verified bytes when it had to fetch them (nil when the local registry already had d).
//
// depth is how many manifests (indexes, or referrers through their subject) lead to d; past
// MaxDepth d is refused: each level keeps its verified bytes (up to 4 MiB) while its children are
// applied, so an unbounded chain from a hostile peer would be unbounded memory.
func (r *round) ensureManifest(repo, d string, depth int) ([]byte, error) {
	if depth >= MaxDepth {
		return nil, fmt.Errorf("manifest %s@%s: nested deeper than %d manifests: refused", repo, d, MaxDepth)
	}
	var raw []byte
	err := r.once("m\x00"+repo+"@"+d, func() error {
		ok, err := r.local.has(r.ctx, repo, "manifests", d)
		if err != nil {
			return fmt.Errorf("local registry: %w", err)
		}
		if ok {
			return nil
		}
		b, src, err := r.fetchManifest(repo, d)
		if err != nil {
			return err
		}
		m, err := registry.ParseManifest(b)
		if err != nil {
			return fmt.Errorf("manifest %s from %s: %w", d, src.name, err)
		}
		if m.Kind == registry.KindIndex {
			for _, c := range m.Manifests {
				if c.MediaType != "" && !isManifestType(c.MediaType) {
					if err := r.ensureBlob(repo, c, src); err != nil {
						return err
					}
					continue
				}
				if _, err := r.ensureManifest(repo, c.Digest.String(), depth+1); err != nil {
					return fmt.Errorf("child %s: %w", c.Digest, err)
				}
			}
		} else if err := r.ensureBlobs(repo, m.References(), src); err != nil {
			return err
		}
		if m.Subject != nil {
			// Best effort: a registry may accept a referrer whose subject is absent.
			if _, err := r.ensureManifest(repo, m.Subject.Digest.String(), depth+1); err != nil {
				r.a.log.Debug("peers: subject not applied", "repo", repo, "subject", m.Subject.Digest, "err", err)
			}
		}
		ref, err := name.NewDigest(r.local.repoRef(repo) + "@" + d)
		if err != nil {
			return err
		}
		if err := r.pusher.Put(r.ctx, ref, rawManifest{b, m.MediaType}); err != nil {
			return fmt.Errorf("local registry refused manifest %s@%s: %w", repo, d, err)
		}
		raw = b
		r.mu.Lock()
		r.res.Manifests++
		r.mu.Unlock()
		return nil
	})
	return raw, err
}

// fetchManifest takes manifest d from the first source that serves matching bytes.
func (r *round) fetchManifest(repo, d string) ([]byte, *endpoint, error) {
	want, err := digest.Parse(d)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest %q: %w", d, err)
	}
	var errs []string
	for _, src := range r.usable() {
		b, err := src.getManifest(r.ctx, repo, want)
		if err == nil {
			return b, src, nil
		}
		errs = append(errs, src.name+": "+err.Error())
		r.failed(src, err)
	}
	return nil, nil, fmt.Errorf("manifest %s@%s: no source served it (%s)", repo, d, orNone(errs))
}

// ensureBlobs makes the local repo hold every blob of descs, at most Jobs transfers at once in the
// round (blobs reference nothing, so the bound cannot deadlock).
// A slot is taken before its goroutine starts, so a manifest of tens of thousands of descriptors
// costs Jobs goroutines, not one per descriptor.
func (r *round) ensureBlobs(repo string, descs []registry.Descriptor, first *endpoint) error {
	errs := make([]error, len(descs))
	type key struct {
		d    digest.Digest
		size int64
		mt   string
	}
	seen := make(map[key]bool, len(descs))
	var wg sync.WaitGroup
	for i, d := range descs {
		k := key{d.Digest, d.Size, d.MediaType}
		if seen[k] {
			continue
		}
		seen[k] = true
		select {
		case r.blobSem <- struct{}{}:
		case <-r.ctx.Done():
			errs[i] = r.ctx.Err()
			wg.Wait()
			return errors.Join(errs...)
		}
		wg.Add(1)
		go func() {
			defer func() { <-r.blobSem; wg.Done() }()
			errs[i] = r.ensureBlob(repo, d, first)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ensureBlob makes the local repo hold blob desc, preferring source first.
func (r *round) ensureBlob(repo string, desc registry.Descriptor, first *endpoint) error {
	return r.once("b\x00"+repo+"@"+desc.Digest.String(), func() error {
		ok, err := r.local.has(r.ctx, repo, "blobs", desc.Digest.String())
		if err != nil {
			return fmt.Errorf("local registry: %w", err)
		}
		if ok {
			return nil
		}
		if desc.Size > r.a.o.MemLimit {
			// Streamed or spooled, a blob larger than the disk's free space is not fetched.
			if err := checkFree(r.a.o.TempDir, desc.Size); err != nil {
				return fmt.Errorf("blob %s@%s: %w", repo, desc.Digest, err) // no source is to blame
			}
		}
		srcs := r.usable()
		sort.SliceStable(srcs, func(i, j int) bool { return srcs[i] == first && srcs[j] != first })
		var errs []string
		for _, src := range srcs {
			if desc.Size >= 0 {
				// Streamed from the source into the local registry, verified on the way.
				t0 := time.Now()
				srcErr, err := r.stream(repo, desc, src)
				r.a.log.Debug("peers: blob streamed", "repo", repo, "digest", desc.Digest, "bytes", desc.Size, "from", src.name,
					"took", time.Since(t0), "source_err", srcErr, "err", err)
				var mm *MismatchError
				switch {
				case srcErr == nil && err == nil:
					return nil
				case srcErr == nil:
					return fmt.Errorf("local registry refused blob %s@%s: %w", repo, desc.Digest, err)
				case !errors.As(srcErr, &mm):
					errs = append(errs, src.name+": "+srcErr.Error())
					r.failed(src, srcErr)
					continue
				}
				// The bytes did not match: nothing was committed. Spooled again below, which
				// tells a lying source from a wrong descriptor and counts what it refused.
			}
			t0 := time.Now()
			sp, err := src.getBlob(r.ctx, repo, desc, r.a.o.MemLimit, r.a.o.TempDir)
			var de *DescriptorError
			if errors.As(err, &de) {
				return fmt.Errorf("blob %s@%s from %s: %w", repo, desc.Digest, src.name, err) // every source would serve the same
			}
			if err != nil {
				errs = append(errs, src.name+": "+err.Error())
				r.failed(src, err)
				continue
			}
			t1 := time.Now()
			err = r.upload(repo, desc, sp)
			sp.close()
			r.a.log.Debug("peers: blob applied", "repo", repo, "digest", desc.Digest, "bytes", desc.Size, "from", src.name,
				"fetch", t1.Sub(t0), "upload", time.Since(t1), "err", err)
			if err != nil {
				return fmt.Errorf("local registry refused blob %s@%s: %w", repo, desc.Digest, err)
			}
			return nil
		}
		return fmt.Errorf("blob %s@%s: no source served it (%s)", repo, desc.Digest, orNone(errs))
	})
}

func (r *round) upload(repo string, desc registry.Descriptor, sp *spool) error {
	h, err := v1.NewHash(desc.Digest.String())
	if err != nil {
		return err
	}
	l, err := partial.CompressedToLayer(&verifiedBlob{h: h, sp: sp, mt: types.MediaType(desc.MediaType)})
	if err != nil {
		return err
	}
	repoRef, err := name.NewRepository(r.local.repoRef(repo), r.local.nameOpts()...)
	if err != nil {
		return err
	}
	if err := r.pusher.Upload(r.ctx, repoRef, l); err != nil {
		return err
	}
	r.mu.Lock()
	r.res.Blobs++
	r.res.BlobBytes += sp.size
	r.mu.Unlock()
	return nil
}

// stream uploads blob desc to the local repo while reading it from src: the bytes reach the local
// registry as they arrive (fetch and upload overlap, nothing is spooled) and are verified on the
// way, the last byte held back until the size and digest match, so the registry, which commits an
// upload only once its body ended, never commits bytes that were not verified. srcErr is src's
// failure (a *MismatchError when its bytes did not match), err the local registry's.
func (r *round) stream(repo string, desc registry.Descriptor, src *endpoint) (srcErr, err error) {
	h, err := v1.NewHash(desc.Digest.String())
	if err != nil {
		return nil, err
	}
	b := &streamedBlob{h: h, desc: desc, mt: types.MediaType(desc.MediaType), open: func() (io.ReadCloser, error) {
		resp, err := src.do(r.ctx, http.MethodGet, repo, "blobs", desc.Digest.String())
		if err != nil {
			return nil, err
		}
		if err := checkStatus(resp, "blob "+repo+"@"+desc.Digest.String()); err != nil {
			resp.Body.Close()
			return nil, err
		}
		return resp.Body, nil
	}}
	l, err := partial.CompressedToLayer(b)
	if err != nil {
		return nil, err
	}
	repoRef, err := name.NewRepository(r.local.repoRef(repo), r.local.nameOpts()...)
	if err != nil {
		return nil, err
	}
	err = r.pusher.Upload(r.ctx, repoRef, l)
	if srcErr = b.failure(); srcErr != nil {
		return srcErr, nil // whatever the registry said: it answered a body that failed
	}
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.res.Blobs++
	r.res.BlobBytes += desc.Size
	r.mu.Unlock()
	return nil, nil
}

// streamedBlob is a blob read from a source as the pusher uploads it.
type streamedBlob struct {
	h    v1.Hash
	desc registry.Descriptor
	mt   types.MediaType
	open func() (io.ReadCloser, error)

	mu  sync.Mutex
	err error // the source's last failure
}

func (b *streamedBlob) Digest() (v1.Hash, error) { return b.h, nil }
func (b *streamedBlob) Size() (int64, error)     { return b.desc.Size, nil }
func (b *streamedBlob) MediaType() (types.MediaType, error) {
	if b.mt == "" {
		return types.OCILayer, nil
	}
	return b.mt, nil
}

// Compressed opens the source (again, when the pusher retries).
func (b *streamedBlob) Compressed() (io.ReadCloser, error) {
	rc, err := b.open()
	b.fail(err)
	if err != nil {
		return nil, err
	}
	return &verifyingReader{b: b, rc: rc, r: io.LimitReader(rc, b.desc.Size+1), h: b.desc.Digest.Algorithm().Hash()}, nil
}

// fail records err (nil: a new attempt, nothing failed yet).
func (b *streamedBlob) fail(err error) {
	b.mu.Lock()
	b.err = err
	b.mu.Unlock()
}

func (b *streamedBlob) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// verifyingReader passes a source's body on, hashing it, and holds back the blob's last byte until
// the source ended with exactly the blob's size and digest: a body that does not match ends in an
// error, never in io.EOF, and its last byte is never sent.
type verifyingReader struct {
	b    *streamedBlob
	rc   io.ReadCloser
	r    io.Reader // rc, at most size+1 bytes
	h    hash.Hash
	n    int64 // bytes read from r
	last []byte
	ok   bool // verified: last may go, then io.EOF
	err  error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.ok {
		if len(v.last) > 0 && len(p) > 0 {
			p[0], v.last = v.last[0], nil
			return 1, nil
		}
		return 0, io.EOF
	}
	size := v.b.desc.Size
	for len(p) > 0 {
		if v.n < size {
			k, err := v.r.Read(p[:min(int64(len(p)), size-v.n)])
			v.h.Write(p[:k])
			v.n += int64(k)
			if v.n == size && k > 0 { // hold the last byte back
				v.last = []byte{p[k-1]}
				k--
			}
			if err != nil && err != io.EOF {
				return k, v.failed(err)
			}
			if err == io.EOF && v.n < size {
				return k, v.failed(&MismatchError{What: "blob", Digest: v.b.desc.Digest.String(), Size: size, Bytes: v.n})
			}
			if k > 0 {
				return k, nil
			}
			continue
		}
		// All size bytes read: the source must end here, with the right digest.
		var extra [1]byte
		k, err := io.ReadFull(v.r, extra[:])
		if k > 0 {
			return 0, v.failed(&MismatchError{What: "blob", Digest: v.b.desc.Digest.String(), Size: size, Bytes: v.n + int64(k)})
		}
		if err != io.EOF {
			return 0, v.failed(err)
		}
		if got := digest.NewDigest(v.b.desc.Digest.Algorithm(), v.h); got != v.b.desc.Digest {
			return 0, v.failed(&MismatchError{What: "blob", Digest: v.b.desc.Digest.String(), Got: got.String(), Size: size, Bytes: v.n})
		}
		v.ok = true
		return v.Read(p)
	}
	return 0, nil
}

func (v *verifyingReader) failed(err error) error {
	v.err = err
	v.b.fail(err)
	return err
}

func (v *verifyingReader) Close() error { return v.rc.Close() }

// setTag points repo:tag at d (already present locally).
func (r *round) setTag(repo, tag, d string) error {
	b, err := r.ensureManifest(repo, d, 0)
	if err != nil {
		return err
	}
	if b == nil {
		if b, err = r.local.getManifest(r.ctx, repo, digest.Digest(d)); err != nil {
			return fmt.Errorf("reading %s@%s back: %w", repo, d, err)
		}
	}
	m, err := registry.ParseManifest(b)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(r.local.repoRef(repo)+":"+tag, r.local.nameOpts()...)
	if err != nil {
		return err
	}
	if err := r.pusher.Put(r.ctx, ref, rawManifest{b, m.MediaType}); err != nil {
		return fmt.Errorf("local registry refused tag %s:%s: %w", repo, tag, err)
	}
	r.mu.Lock()
	r.res.Tags++
	r.mu.Unlock()
	return nil
}

// delete removes a tag or a manifest from the local registry and reports whether it is gone. A
// refusal is recorded and not retried before RefusedRetry; a 404 is success.
func (r *round) delete(repo, ref string, isManifest bool) bool {
	a := r.a
	key := repo + "\x00" + ref
	a.mu.Lock()
	rf, refused := a.refused[key]
	a.mu.Unlock()
	if refused && a.o.Now().Before(rf.until) {
		r.mu.Lock()
		r.res.RefusedDeletes++
		r.mu.Unlock()
		return false
	}
	var nref name.Reference
	var err error
	if isManifest {
		nref, err = name.NewDigest(r.local.repoRef(repo)+"@"+ref, r.local.nameOpts()...)
	} else {
		nref, err = name.NewTag(r.local.repoRef(repo)+":"+ref, r.local.nameOpts()...)
	}
	if err == nil {
		err = r.pusher.Delete(r.ctx, nref)
	}
	var terr *transport.Error
	if err != nil && errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		err = nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		a.refused[key] = refusal{until: a.o.Now().Add(a.o.RefusedRetry), reason: err.Error()}
		r.res.RefusedDeletes++
		a.log.Warn("peers: the local registry refused a delete; retrying later", "repo", repo, "ref", ref, "err", err, "retry_in", a.o.RefusedRetry)
		return false
	}
	delete(a.refused, key)
	if isManifest {
		r.res.DeletedManifests++
	} else {
		r.res.DeletedTags++
	}
	return true
}

// usable returns the sources not backed off, in order.
func (r *round) usable() []*endpoint {
	a := r.a
	now := a.o.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*endpoint
	for _, s := range r.sources {
		if st := a.sources[s.name]; st != nil && now.Before(st.BackoffUntil) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// failed counts a source's failure and backs it off; a mismatch is counted as rejected bytes.
func (r *round) failed(src *endpoint, err error) {
	var nf *notFoundError
	if errors.As(err, &nf) {
		return // the source lacks it: not its fault
	}
	var mm *MismatchError
	if errors.As(err, &mm) {
		r.mu.Lock()
		r.res.Rejected[src.name] += mm.Bytes
		r.mu.Unlock()
	}
	r.a.sourceFailed(src.name, err, mm != nil)
}

func (a *Applier) sourceFailed(name string, err error, mismatch bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.sources[name]
	if st == nil {
		st = &SourceStats{}
		a.sources[name] = st
	}
	var mm *MismatchError
	if mismatch && errors.As(err, &mm) {
		st.Rejected++
		st.RejectedBytes += mm.Bytes
	} else {
		st.Failures++
	}
	st.LastError = err.Error()
	// Back off twice as long as the last time, from BackoffStart to BackoffMax (a source that
	// ran BackoffMax without failing starts again from BackoffStart: content that did match does
	// not reset it, a liar may serve some right). Failures of requests already in flight while
	// backed off do not lengthen it again.
	now := a.o.Now()
	if now.Before(st.BackoffUntil) {
		return
	}
	wait := a.o.BackoffStart
	if st.backoff > 0 && now.Sub(st.BackoffUntil) < a.o.BackoffMax {
		wait = 2 * st.backoff
	}
	wait = min(wait, a.o.BackoffMax)
	st.backoff = wait
	st.BackoffUntil = now.Add(wait)
	a.log.Warn("peers: source failed; backing off", "source", name, "err", err, "for", wait, "mismatch", mismatch)
}

// MismatchError is content from a source that did not match its digest or size.
type MismatchError struct {
	What   string // "manifest" or "blob"
	Digest string // wanted
	Got    string // digest of what was served ("" when the size was wrong)
	Size   int64  // wanted size (-1: unknown)
	Bytes  int64  // bytes read and refused
}

func (e *MismatchError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("%s %s: served %d bytes, want %d: refused", e.What, e.Digest, e.Bytes, e.Size)
	}
	return fmt.Sprintf("%s %s: served content hashes to %s: refused", e.What, e.Digest, e.Got)
}

type notFoundError struct{ what string }

func (e *notFoundError) Error() string { return e.what + " not found" }

// rawManifest is a verified manifest to PUT as is.
type rawManifest struct {
	b  []byte
	mt string
}

func (m rawManifest) RawManifest() ([]byte, error) { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) {
	return types.MediaType(m.mt), nil
}

// verifiedBlob is a spooled, verified blob as a compressed layer for the pusher.
type verifiedBlob struct {
	h  v1.Hash
	sp *spool
	mt types.MediaType
}

func (b *verifiedBlob) Digest() (v1.Hash, error)           { return b.h, nil }
func (b *verifiedBlob) Compressed() (io.ReadCloser, error) { return b.sp.open() }
func (b *verifiedBlob) Size() (int64, error)               { return b.sp.size, nil }
func (b *verifiedBlob) MediaType() (types.MediaType, error) {
	if b.mt == "" {
		return types.OCILayer, nil
	}
	return b.mt, nil
}

// spool holds verified bytes in memory or in a temporary file.
type spool struct {
	mem  []byte
	f    *os.File
	size int64
}

func (s *spool) open() (io.ReadCloser, error) {
	if s.f == nil {
		return io.NopCloser(bytes.NewReader(s.mem)), nil
	}
	return io.NopCloser(io.NewSectionReader(s.f, 0, s.size)), nil
}

func (s *spool) close() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
	}
}

func isManifestType(mt string) bool {
	switch mt {
	case registry.MediaTypeOCIManifest, registry.MediaTypeOCIIndex, registry.MediaTypeDockerManifest,
		registry.MediaTypeDockerList, registry.MediaTypeOCIArtifact:
		return true
	}
	return false
}

// endpoint is one registry (a source or the local one).
type endpoint struct {
	name     string
	base     *url.URL
	rt       http.RoundTripper
	insecure bool

	// mu guards clients.
	mu      sync.Mutex
	clients map[string]*http.Client // repo -> authenticated client
}

func parseRegistryURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return nil, fmt.Errorf("registry URL %q: want http(s)://host[:port]", s)
	}
	return u, nil
}

func newEndpoint(nm, raw string, rt http.RoundTripper) (*endpoint, error) {
	u, err := parseRegistryURL(raw)
	if err != nil {
		return nil, err
	}
	return &endpoint{name: nm, base: u, rt: rt, insecure: u.Scheme == "http", clients: map[string]*http.Client{}}, nil
}

func (e *endpoint) nameOpts() []name.Option {
	if e.insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

func (e *endpoint) repoRef(repo string) string { return e.base.Host + "/" + repo }

// client returns an authenticated client for repo (pull and push scope: the local registry is
// written, the sources are only read).
func (e *endpoint) client(ctx context.Context, repo string) (*http.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.clients[repo]; c != nil {
		return c, nil
	}
	r, err := name.NewRepository(e.repoRef(repo), e.nameOpts()...)
	if err != nil {
		return nil, err
	}
	t, err := transport.NewWithContext(ctx, r.Registry, authn.Anonymous, e.rt, []string{r.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	c := &http.Client{Transport: t}
	e.clients[repo] = c
	return c, nil
}

func (e *endpoint) url(repo, kind, ref string) string {
	return e.base.Scheme + "://" + e.base.Host + "/v2/" + repo + "/" + kind + "/" + ref
}

var manifestAccept = strings.Join([]string{registry.MediaTypeOCIManifest, registry.MediaTypeOCIIndex,
	registry.MediaTypeDockerManifest, registry.MediaTypeDockerList, registry.MediaTypeOCIArtifact}, ", ")

func (e *endpoint) do(ctx context.Context, method, repo, kind, ref string) (*http.Response, error) {
	c, err := e.client(ctx, repo)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, e.url(repo, kind, ref), nil)
	if err != nil {
		return nil, err
	}
	if kind == "manifests" {
		req.Header.Set("Accept", manifestAccept)
	}
	return c.Do(req)
}

// has reports whether the registry holds repo's manifest or blob ref (HEAD).
func (e *endpoint) has(ctx context.Context, repo, kind, ref string) (bool, error) {
	resp, err := e.do(ctx, http.MethodHead, repo, kind, ref)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("HEAD %s: %s", e.url(repo, kind, ref), resp.Status)
}

// getManifest fetches a manifest by digest and verifies it.
func (e *endpoint) getManifest(ctx context.Context, repo string, d digest.Digest) ([]byte, error) {
	resp, err := e.do(ctx, http.MethodGet, repo, "manifests", d.String())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp, "manifest "+repo+"@"+d.String()); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, registry.MaxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > registry.MaxManifestSize {
		return nil, &MismatchError{What: "manifest", Digest: d.String(), Size: -1, Bytes: int64(len(b))}
	}
	if got := d.Algorithm().FromBytes(b); got != d {
		return nil, &MismatchError{What: "manifest", Digest: d.String(), Got: got.String(), Size: -1, Bytes: int64(len(b))}
	}
	return b, nil
}

// getBlob fetches a blob, verifying its digest and size while spooling it (memory up to memLimit,
// else a temporary file in dir). Nothing is returned unless both match.
func (e *endpoint) getBlob(ctx context.Context, repo string, desc registry.Descriptor, memLimit int64, dir string) (*spool, error) {
	resp, err := e.do(ctx, http.MethodGet, repo, "blobs", desc.Digest.String())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp, "blob "+repo+"@"+desc.Digest.String()); err != nil {
		return nil, err
	}
	return spoolVerified(resp.Body, desc.Digest, desc.Size, memLimit, dir)
}

// spoolVerified reads at most size+1 bytes of r, hashing them, and returns them only when the size
// and digest match.
func spoolVerified(r io.Reader, want digest.Digest, size, memLimit int64, dir string) (*spool, error) {
	if err := want.Validate(); err != nil {
		return nil, err
	}
	sp := &spool{}
	var w io.Writer
	var buf bytes.Buffer
	if size >= 0 && size <= memLimit {
		w = &buf
	} else {
		f, err := os.CreateTemp(dir, ".trowfs-peer-blob-*")
		if err != nil {
			return nil, err
		}
		sp.f, w = f, f
	}
	n, err := copyVerified(w, r, want, size, 1<<62)
	if err != nil {
		sp.close()
		return nil, err
	}
	sp.size, sp.mem = n, buf.Bytes()
	return sp, nil
}

// checkFree fails when the file system of dir (os.TempDir() when "") has fewer than size bytes
// free: a blob declared larger could never be spooled, and fetching it would fill the disk first.
func checkFree(dir string, size int64) error {
	if dir == "" {
		dir = os.TempDir()
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return err
	}
	if free := int64(fs.Bavail) * int64(fs.Bsize); fs.Bavail < 1<<62/uint64(max(fs.Bsize, 1)) && size > free {
		return fmt.Errorf("declared %d bytes, more than the %d free in %s: not fetched", size, free, dir)
	}
	return nil
}

// sizeSlack is how far past a descriptor's size a blob is still read (hashed, not kept) to tell a
// descriptor that lies about the size from a source that serves too much.
const sizeSlack = 64 << 20

// copyVerified copies r to w (at most size+1 bytes when size is known, else at most maxUnknown)
// and fails unless the size and digest match. When the size differs but the bytes (up to sizeSlack past the size) hash to
// the digest, the source served the real blob and the descriptor is wrong: a *DescriptorError.
func copyVerified(w io.Writer, r io.Reader, want digest.Digest, size, maxUnknown int64) (int64, error) {
	h := want.Algorithm().Hash()
	limit := maxUnknown
	if size >= 0 {
		limit = size + 1
	}
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, limit))
	if err != nil {
		return n, err
	}
	if size < 0 && n == maxUnknown {
		return n, fmt.Errorf("blob %s of unknown size: more than %d bytes served: abandoned", want, maxUnknown)
	}
	if size >= 0 && n != size {
		total := n
		if n > size {
			m, err := io.Copy(h, io.LimitReader(r, sizeSlack))
			if err != nil || m == sizeSlack {
				total = -1 // not the whole blob: cannot tell
			} else {
				total += m
			}
		}
		if total >= 0 && digest.NewDigest(want.Algorithm(), h) == want {
			return n, &DescriptorError{Digest: want.String(), Size: size, Actual: total}
		}
		return n, &MismatchError{What: "blob", Digest: want.String(), Size: size, Bytes: n}
	}
	if got := digest.NewDigest(want.Algorithm(), h); got != want {
		return n, &MismatchError{What: "blob", Digest: want.String(), Got: got.String(), Size: size, Bytes: n}
	}
	return n, nil
}

// DescriptorError is a descriptor whose size is not its blob's: the manifest that holds it is
// wrong, not the source that served the blob, so no source is blamed and the manifest is not
// applied.
type DescriptorError struct {
	Digest       string
	Size, Actual int64
}

func (e *DescriptorError) Error() string {
	return fmt.Sprintf("blob %s: the descriptor's size is %d but the blob (digest verified) is %d bytes: the manifest is refused", e.Digest, e.Size, e.Actual)
}

func checkStatus(resp *http.Response, what string) error {
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return &notFoundError{what}
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("%s: %s %s", what, resp.Status, bytes.TrimSpace(b))
}

func orNone(errs []string) string {
	if len(errs) == 0 {
		return "no usable source"
	}
	return strings.Join(errs, "; ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// synced is what the last Apply left replicated and present: the base for deletes.
type synced struct {
	Manifests map[string]map[string]struct{} `json:"manifests"` // repo -> digests
	Tags      map[string]map[string]string   `json:"tags"`      // repo -> tag -> digest
}

func newSynced() *synced {
	return &synced{Manifests: map[string]map[string]struct{}{}, Tags: map[string]map[string]string{}}
}

func (s *synced) addManifest(repo, d string) {
	if s.Manifests[repo] == nil {
		s.Manifests[repo] = map[string]struct{}{}
	}
	s.Manifests[repo][d] = struct{}{}
}

func (s *synced) addTag(repo, t, d string) {
	if s.Tags[repo] == nil {
		s.Tags[repo] = map[string]string{}
	}
	s.Tags[repo][t] = d
}

func (s *synced) manifest(repo, d string) bool {
	_, ok := s.Manifests[repo][d]
	return ok
}

func (s *synced) tag(repo, t string) string { return s.Tags[repo][t] }

func (a *Applier) loadSynced() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.synced != nil {
		return nil
	}
	s := newSynced()
	if a.o.Store != nil {
		b, err := a.o.Store.Load()
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("oci: loading the applied view: %w", err)
		default:
			if err := json.Unmarshal(b, s); err != nil {
				a.log.Warn("peers: the applied view does not parse; starting without (no deletes until it is rebuilt)", "err", err)
				s = newSynced()
			}
			if s.Manifests == nil || s.Tags == nil {
				s = newSynced()
			}
		}
	}
	a.synced = s
	return nil
}

func (a *Applier) saveSynced(s *synced) error {
	if a.o.Store == nil {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return a.o.Store.Save(b)
}
