package runemu

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// frontProxy is a service's HTTP entry point: one listener for the service URL, which
// splits requests across revisions by the current traffic statuses, and one listener per
// traffic tag, served only by the tagged revision.
type frontProxy struct {
	s       *Server
	service string
	main    *endpoint
	tags    map[string]*endpoint // guarded by Server.mu
	closed  bool                 // guarded by Server.mu; no listener opens once set
}

// endpoint is one listening HTTP server.
type endpoint struct {
	url string
	srv *http.Server
}

// targetKey carries the chosen revision address from the handler to the reverse proxy.
type targetKey struct{}

// unreachedKey carries a *bool the reverse proxy sets when the revision's process could not
// be reached (the request never got to the container).
type unreachedKey struct{}

// newReverseProxy returns the reverse proxy shared by all front proxies of s.
func (s *Server) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			addr, _ := pr.In.Context().Value(targetKey{}).(string)
			pr.SetURL(&url.URL{Scheme: "http", Host: addr})
			pr.Out.Host = pr.In.Host // the container sees the service's host, as on Cloud Run
			pr.SetXForwarded()
		},
		Transport: s.transport,
		ErrorLog:  slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if unreached, ok := r.Context().Value(unreachedKey{}).(*bool); ok {
				*unreached = true
			}
			s.log.Debug("proxy to revision failed", "url", r.URL.String(), "error", err)
			http.Error(w, "upstream revision unavailable: "+err.Error(), http.StatusBadGateway)
		},
	}
}

// newFrontProxy opens the service URL listener of service.
func (s *Server) newFrontProxy(service string) (*frontProxy, error) {
	p := &frontProxy{s: s, service: service, tags: make(map[string]*endpoint)}
	ep, err := s.serveEndpoint(p.handler(""))
	if err != nil {
		return nil, fmt.Errorf("open the front proxy of service %s: %w", service, err)
	}
	p.main = ep
	return p, nil
}

// serveEndpoint serves h on a new 127.0.0.1 port.
func (s *Server) serveEndpoint(h http.Handler) (*endpoint, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() { _ = srv.Serve(ln) }()
	return &endpoint{url: "http://" + ln.Addr().String(), srv: srv}, nil
}

// tagURI returns the URL serving tag, opening its listener the first time. Called with
// Server.mu held. It returns "" (and logs) when no listener can be opened.
func (p *frontProxy) tagURI(tag string) string {
	if ep, ok := p.tags[tag]; ok {
		return ep.url
	}
	if p.closed {
		return ""
	}
	ep, err := p.s.serveEndpoint(p.handler(tag))
	if err != nil {
		p.s.log.Error("open tag listener", "service", p.service, "tag", tag, "error", err)
		return ""
	}
	p.tags[tag] = ep
	return ep.url
}

// retainTags closes the listeners of tags not in keep. Called with Server.mu held.
func (p *frontProxy) retainTags(keep map[string]bool) {
	for tag, ep := range p.tags {
		if !keep[tag] {
			delete(p.tags, tag)
			go ep.srv.Close()
		}
	}
}

// endpoints detaches and returns every listener. Called with Server.mu held.
func (p *frontProxy) endpoints() []*endpoint {
	p.closed = true
	eps := []*endpoint{p.main}
	for tag, ep := range p.tags {
		eps = append(eps, ep)
		delete(p.tags, tag)
	}
	return eps
}

// closeEndpoints closes listeners and their connections.
func closeEndpoints(eps []*endpoint) {
	for _, ep := range eps {
		if ep != nil {
			_ = ep.srv.Close()
		}
	}
}

// handler serves the service URL (tag "") or a tag URL, recording every request.
func (p *frontProxy) handler(tag string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		rev, addr := p.s.route(p.service, tag)
		unreached := addr == ""
		if addr == "" {
			msg := fmt.Sprintf("no ready revision of service %s can serve this request", p.service)
			if rev != "" {
				msg = fmt.Sprintf("revision %s of service %s is not ready", rev, p.service)
			}
			http.Error(rec, msg, http.StatusServiceUnavailable)
		} else {
			ctx := context.WithValue(context.WithValue(r.Context(), targetKey{}, addr), unreachedKey{}, &unreached)
			p.s.rproxy.ServeHTTP(rec, r.WithContext(ctx))
		}
		p.s.reqs.record(Request{
			Service:  p.service,
			Revision: rev,
			Time:     start,
			Status:   rec.code(),
			Latency:  time.Since(start),
			Tag:      tag,
			Reached:  !unreached,
		})
	})
}

// statusRecorder remembers the status written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (flushing, deadlines).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
