package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits of GET /v1/tree.
const (
	DefaultTreeLimit = 1000  // entries per page when limit is absent
	MaxTreeLimit     = 10000 // larger limits are capped to this
)

// Default timeouts of the http.Server; Options may override them.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
)

// maxHeaderBytes bounds request headers; no route needs more.
const maxHeaderBytes = 64 << 10

// Options configures a Server.
type Options struct {
	// Token is the bearer token POST requests must present
	// ("Authorization: Bearer <token>"); empty means POST is open to anyone
	// who can reach the endpoint. Surrounding white space is ignored, so the
	// content of a token file can be passed as is.
	Token string
	// Logger receives request logs at debug level and unexpected errors at
	// error level; nil discards everything.
	Logger *slog.Logger
	// AllowedHosts lists extra Host header names accepted on TCP connections
	// besides localhost and loopback addresses (needed only with
	// ListenConfig.AllowNonLoopback); "*" accepts any Host. Unix socket
	// connections are not checked.
	AllowedHosts []string
	// Timeouts of the http.Server; zero selects the Default* constants.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// Server is the HTTP endpoint. It is safe for concurrent use; Serve may be
// called on several listeners at once (say TCP and a unix socket).
type Server struct {
	backend Backend
	log     *slog.Logger
	// tokenSum is the SHA-256 of Options.Token, or nil when no token is set.
	// Comparing fixed-size sums in constant time also hides the length.
	tokenSum     []byte
	allowedHosts map[string]bool // lower-case extra Host names
	anyHost      bool            // AllowedHosts contains "*"
	csrf         *http.CrossOriginProtection
	handler      http.Handler
	reg          *prometheus.Registry // served on /metrics; nil if its collectors clash
	srv          *http.Server
}

// New returns a Server answering from b.
func New(b Backend, opts Options) *Server {
	s := &Server{
		backend:      b,
		log:          opts.Logger,
		allowedHosts: make(map[string]bool),
		csrf:         http.NewCrossOriginProtection(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Token != "" {
		// A token of only white space fails closed: authorized refuses an
		// empty presented token, so nothing matches it.
		sum := sha256.Sum256([]byte(strings.TrimSpace(opts.Token)))
		s.tokenSum = sum[:]
	}
	for _, h := range opts.AllowedHosts {
		if h == "*" {
			s.anyHost = true
		}
		s.allowedHosts[strings.ToLower(h)] = true
	}
	reg, err := metricsRegistry(b)
	if err != nil {
		// A backend collector that clashes with another is a programming
		// error; the rest of the endpoint still serves.
		s.log.Error("api: cannot register metrics collectors", "err", err)
	}
	s.reg = reg
	s.handler = s.logRequests(s.guard(http.HandlerFunc(s.route)))
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: orDefault(opts.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       orDefault(opts.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      orDefault(opts.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       orDefault(opts.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Handler returns the endpoint's handler, with request logging and the Host
// and cross-origin checks, for use in tests or another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on l until Shutdown or Close; like
// http.Server.Serve it then returns http.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error { return s.srv.Serve(l) }

// Shutdown stops accepting connections and waits, until ctx ends, for the
// requests in progress to finish.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close closes the listeners and connections at once.
func (s *Server) Close() error { return s.srv.Close() }

// route dispatches by path, then by method.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; p {
	case "/":
		s.methods(w, r, s.getStatus, nil)
	case "/v1/state":
		s.methods(w, r, s.getState, nil)
	case "/v1/tree":
		s.methods(w, r, s.getTree, nil)
	case "/v1/registry":
		s.methods(w, r, s.getRegistry, nil)
	case "/v1/verify":
		s.methods(w, r, s.getLastVerify, s.postVerify)
	case "/metrics":
		s.methods(w, r, s.getMetrics, nil)
	case "/v1/peers":
		s.methods(w, r, s.getPeers, nil)
	case "/healthz":
		s.methods(w, r, s.getHealth, nil)
	default:
		id, ok := strings.CutPrefix(p, "/v1/verify/")
		if ok && id != "" && !strings.Contains(id, "/") {
			s.methods(w, r, func(w http.ResponseWriter, r *http.Request) { s.getVerify(w, r, id) }, nil)
			return
		}
		s.writeError(w, r, http.StatusNotFound, fmt.Sprintf("no route %s", p))
	}
}

// methods calls get for GET and HEAD, post for POST (when not nil), and
// answers 405 with an Allow header otherwise.
func (s *Server) methods(w http.ResponseWriter, r *http.Request, get, post http.HandlerFunc) {
	switch {
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		get(w, r)
		return
	case r.Method == http.MethodPost && post != nil:
		post(w, r)
		return
	}
	allow := "GET, HEAD"
	if post != nil {
		allow += ", POST"
	}
	w.Header().Set("Allow", allow)
	s.writeError(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; allowed: %s", r.Method, allow))
}

// query parses the query string strictly: a malformed escape is an error
// rather than a silently dropped parameter.
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &PathError{Param: "query", Value: r.URL.RawQuery, Reason: "malformed query string"}
	}
	for k, v := range q {
		if len(v) > 1 {
			return nil, &PathError{Param: k, Value: strings.Join(v, ","), Reason: "given more than once"}
		}
	}
	return q, nil
}

// pathParam returns the validated "path" (or "path_b64") parameter ("" when
// absent: the root).
func pathParam(q url.Values) (string, error) {
	raw, err := pathFromQuery(q.Get, q.Has)
	if err != nil {
		return "", err
	}
	return CleanPath(raw)
}

func (s *Server) getState(w http.ResponseWriter, r *http.Request) {
	q, err := query(r)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	p, err := pathParam(q)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	doc, err := s.backend.State(p)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	w.Write(doc)
}

func (s *Server) getTree(w http.ResponseWriter, r *http.Request) {
	q, err := query(r)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	p, err := pathParam(q)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	after, err := DecodeAfter(q.Get("after"))
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	limit := DefaultTreeLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.backendError(w, r, &PathError{Param: "limit", Value: v, Reason: "not a positive integer"})
			return
		}
		limit = min(n, MaxTreeLimit)
	}
	page, err := s.backend.Tree(p, after, limit)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	if page.Entries == nil {
		page.Entries = []TreeEntry{}
	}
	if page.Next != "" {
		page.Next = EncodeAfter(page.Next)
		next := url.Values{"path": {p}, "after": {page.Next}, "limit": {strconv.Itoa(limit)}}
		w.Header().Set("Link", fmt.Sprintf("</v1/tree?%s>; rel=\"next\"", next.Encode()))
	}
	s.writeJSON(w, r, http.StatusOK, page)
}

func (s *Server) getRegistry(w http.ResponseWriter, r *http.Request) {
	report, ok := s.backend.Registry()
	if !ok {
		s.writeError(w, r, http.StatusNotFound, "no registry layout detected (plain layout)")
		return
	}
	s.writeJSON(w, r, http.StatusOK, report)
}

func (s *Server) postVerify(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="trowfs"`)
		s.writeError(w, r, http.StatusUnauthorized, "a valid bearer token is required")
		return
	}
	q, err := query(r)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	kind := q.Get("kind")
	switch kind {
	case "":
		kind = VerifyFull
	case VerifyFull, VerifyQuick:
	default:
		s.writeError(w, r, http.StatusBadRequest, fmt.Sprintf("kind %q: want %q or %q", kind, VerifyFull, VerifyQuick))
		return
	}
	run, err := s.backend.StartVerify(kind)
	if errors.Is(err, ErrBusy) {
		body := struct {
			Error string     `json:"error"`
			Run   *VerifyRun `json:"run,omitempty"`
		}{Error: err.Error()}
		if cur, ok := s.backend.LastVerifyRun(); ok {
			cur = normalizeRun(cur)
			body.Run = &cur
			w.Header().Set("Location", runLocation(cur.ID))
		}
		s.writeJSON(w, r, http.StatusConflict, body)
		return
	}
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	w.Header().Set("Location", runLocation(run.ID))
	s.writeJSON(w, r, http.StatusAccepted, normalizeRun(run))
}

func runLocation(id string) string { return "/v1/verify/" + url.PathEscape(id) }

// normalizeRun makes Findings an empty list rather than null in JSON.
func normalizeRun(run VerifyRun) VerifyRun {
	if run.Findings == nil {
		run.Findings = []Finding{}
	}
	return run
}

func (s *Server) getLastVerify(w http.ResponseWriter, r *http.Request) {
	run, ok := s.backend.LastVerifyRun()
	if !ok {
		s.writeError(w, r, http.StatusNotFound, "no verification run yet")
		return
	}
	s.writeJSON(w, r, http.StatusOK, normalizeRun(run))
}

func (s *Server) getVerify(w http.ResponseWriter, r *http.Request, id string) {
	run, ok := s.backend.VerifyRun(id)
	if !ok {
		s.writeError(w, r, http.StatusNotFound, fmt.Sprintf("no verification run %q", id))
		return
	}
	s.writeJSON(w, r, http.StatusOK, normalizeRun(run))
}

func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.backend.Healthy(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("ok\n"))
}

// authorized reports whether r may make a POST request: always when no token
// is configured, otherwise when it carries "Authorization: Bearer <token>".
func (s *Server) authorized(r *http.Request) bool {
	if s.tokenSum == nil {
		return true
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum) == 1
}

// statusFor maps an error from the backend (or from parameter validation)
// to an HTTP status. This is the only place that does so.
func statusFor(err error) int {
	switch {
	case errors.Is(err, ErrBadPath), errors.Is(err, ErrNotDir):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrBusy):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// backendError answers with the status statusFor chooses. The message of an
// unexpected error is logged, not sent: it may describe internals.
func (s *Server) backendError(w http.ResponseWriter, r *http.Request, err error) {
	code := statusFor(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		s.log.Error("api: backend error", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery, "err", err)
		msg = "internal error"
	}
	s.writeError(w, r, code, msg)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.writeJSON(w, r, code, struct {
		Error string `json:"error"`
	}{msg})
}

func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, code int, v any) {
	body, err := Marshal(v)
	if err != nil {
		s.log.Error("api: cannot encode response", "path", r.URL.Path, "err", err)
		code = http.StatusInternalServerError
		body = []byte(`{"error":"internal error encoding the response"}`)
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

// guard sets the common response headers and refuses requests whose Host
// header is not a loopback name (DNS rebinding) on TCP connections, and
// non-safe cross-origin browser requests.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if !s.hostAllowed(r) {
			s.writeError(w, r, http.StatusForbidden, fmt.Sprintf("host %q is not allowed", r.Host))
			return
		}
		if err := s.csrf.Check(r); err != nil {
			s.writeError(w, r, http.StatusForbidden, "cross-origin request refused")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hostAllowed(r *http.Request) bool {
	if s.anyHost || r.Host == "" {
		return true
	}
	if _, isUnix := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); isUnix {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if host == "localhost" || s.allowedHosts[host] {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// statusRecorder remembers the status and size of a response for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs every request at debug level. The Authorization header
// is never logged.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.log.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "api request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.String("query", r.URL.RawQuery),
			slog.Int("status", rec.status),
			slog.Int64("bytes", rec.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
		)
	})
}
