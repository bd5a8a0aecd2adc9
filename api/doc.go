// Package api is trowfs's HTTP endpoint: a small, read-mostly JSON API over a
// running mount (the .state documents, directory listings with digests, the
// registry consistency report, verification runs) plus Prometheus metrics and
// a health check.
//
// The package knows nothing about how trowfs works inside. It talks to the
// rest of the program only through the [Backend] interface, which the server
// package implements; it must never import fs, tracker, registry or hashtree,
// never touch the data directory itself, and never let a request path reach
// the backend before it has been validated (clean, relative, no "..", no NUL).
//
// # Routes
//
//	GET  /v1/state?path=P                 the .state JSON of P, verbatim (path_b64=B: P's bytes in base64)
//	GET  /v1/tree?path=P&after=N&limit=L  children of directory P, paginated
//	GET  /v1/registry                     the consistency report (404 for the plain layout)
//	POST /v1/verify?kind=full|quick       start a verification run (202, Location header)
//	GET  /v1/verify                       the current or last run
//	GET  /v1/verify/{id}                  one run by id
//	GET  /metrics                         Prometheus metrics (client_golang promhttp; text 0.0.4 by default)
//	GET  /healthz                         "ok" or 503 with the reason
//
// Every GET route also answers HEAD. docs/api.md describes each route with
// examples.
//
// # Security
//
// [Listen] binds only loopback TCP addresses or unix sockets unless
// [ListenConfig.AllowNonLoopback] is set. On TCP the Host header must name a
// loopback address or localhost (or one of [Options.AllowedHosts]), which
// defeats DNS rebinding from a browser. POST requests need the bearer token
// when [Options.Token] is set (compared in constant time) and are refused when
// a browser marks them as cross-origin.
//
// # Names
//
// Names are bytes. Every answer is written by [Marshal], which adds a "k_b64"
// sibling with the exact bytes to any string that is not valid UTF-8, and
// "next" in /v1/tree is [EncodeAfter] of the last name, which "after" accepts.
//
// # Errors
//
// The backend reports conditions with the sentinel errors [ErrNotFound],
// [ErrBadPath], [ErrBusy] and [ErrNotDir], possibly wrapped; the handler maps
// them to HTTP status codes with errors.Is in one place (statusFor). Every
// error response is a JSON object {"error": "..."}, except /healthz which
// answers in plain text. Unexpected backend errors are logged and answered
// with 500 and a generic message.
package api
