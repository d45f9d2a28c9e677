// crd-apiserver runs the real Kubernetes API server for custom resources
// (k8s.io/apiextensions-apiserver, the server behind CustomResourceDefinitions in kube-apiserver),
// backed by etcd, so that tests can use CRDs and custom objects (create, get, list, watch, patch,
// server-side apply, status subresource, delete) with kubectl and kube-rs.
//
// It reuses the upstream options and server (k8s.io/apiextensions-apiserver/pkg/cmd/server/options
// and pkg/apiserver) and changes only what a standalone server needs to be usable by clients:
//
//   - discovery is turned on (upstream sets EnableDiscovery=false because kube-apiserver's aggregator
//     serves /apis): /apis lists apiextensions.k8s.io and every group of an Established CRD with a
//     served version (kept current by an informer), aggregated discovery (v2) lists the CRD groups;
//   - /api and /api/v1 answer with "v1" and an empty resource list (there is no core/v1 here);
//   - list and watch of namespaces and services answer with empty lists and watches that send no
//     event (the server's own informers ask for them through --kubeconfig);
//   - TokenReview and SubjectAccessReview are served when their flags are given (reviews.go), with
//     GET /test/counters counting them.
//
// Every flag is upstream's (see docs/testing.md for the set the tests use), plus
// --exit-on-stdin-eof: stop when stdin is closed, so that a test process that dies never leaves
// the server behind; --token-auth-file (kube-apiserver's static token CSV) and
// --token-auth-audience: serve TokenReview; --access-review-policy-file: serve
// SubjectAccessReview (see reviews.go).
//
// Build (offline, GOPATH mode, Debian sid's golang-k8s-* packages; see docs/testing.md):
//
//	GO111MODULE=off GOPROXY=off GOPATH=<this dir>:<root>/usr/share/gocode go build -o crd-apiserver .
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	listers "k8s.io/apiextensions-apiserver/pkg/client/listers/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/endpoints/discovery"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/cli"
	"k8s.io/klog/v2"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	os.Exit(cli.Run(newCommand(ctx)))
}

func newCommand(ctx context.Context) *cobra.Command {
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	exitOnStdinEOF := false
	var tokenAuthFile, policyFile string
	tokenAudience := "https://kubernetes.default.svc"
	cmd := &cobra.Command{
		Use:   "crd-apiserver",
		Short: "k8s.io/apiextensions-apiserver with discovery and empty core/v1 stubs, for tests",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			runCtx := c.Context()
			if exitOnStdinEOF {
				var cancel context.CancelFunc
				runCtx, cancel = context.WithCancel(runCtx)
				defer cancel()
				go func() {
					_, _ = io.Copy(io.Discard, os.Stdin)
					klog.Info("stdin closed: shutting down")
					cancel()
				}()
			}
			rv, err := newReviews(tokenAuthFile, tokenAudience, policyFile)
			if err != nil {
				return err
			}
			return run(runCtx, o, rv)
		},
	}
	cmd.SetContext(ctx)
	fs := cmd.Flags()
	o.AddFlags(fs)
	fs.BoolVar(&exitOnStdinEOF, "exit-on-stdin-eof", false, "shut down when stdin reaches end of file")
	fs.StringVar(&tokenAuthFile, "token-auth-file", "",
		"serve TokenReview (authentication.k8s.io/v1) from this static token CSV (token,user,uid,\"group1,group2\")")
	fs.StringVar(&tokenAudience, "token-auth-audience", tokenAudience,
		"the audience the static tokens are valid for (TokenReviews without audiences expect it)")
	fs.StringVar(&policyFile, "access-review-policy-file", "",
		"serve SubjectAccessReview (authorization.k8s.io/v1) from this policy (JSON lines, see reviews.go)")
	return cmd
}

// run is upstream's server.Run with discovery turned on, the core/v1 stubs and the reviews installed.
func run(ctx context.Context, o *options.CustomResourceDefinitionsServerOptions, rv *reviews) error {
	config, err := o.Config()
	if err != nil {
		return err
	}
	completed := config.Complete()
	// Complete() sets this to false (kube-apiserver's aggregator serves discovery there).
	completed.GenericConfig.EnableDiscovery = true

	server, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	gs := server.GenericAPIServer

	stubs := &coreStubs{done: ctx.Done()}
	gs.Handler.NonGoRestfulMux.Handle("/api", stubs)
	gs.Handler.NonGoRestfulMux.HandlePrefix("/api/", stubs)
	rv.install(gs.Handler.NonGoRestfulMux)

	crdInformer := server.Informers.Apiextensions().V1().CustomResourceDefinitions()
	groups := &crdGroups{manager: gs.DiscoveryGroupManager, lister: crdInformer.Lister(), present: map[string]bool{}}
	if _, err := crdInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { groups.sync() },
		UpdateFunc: func(any, any) { groups.sync() },
		DeleteFunc: func(any) { groups.sync() },
	}); err != nil {
		return err
	}

	return gs.PrepareRun().RunWithContext(ctx)
}

// crdGroups keeps the legacy (unaggregated) /apis group list in step with the CRDs, as the
// discovery controller of apiextensions-apiserver does for /apis/<group> and aggregated discovery.
type crdGroups struct {
	mu      sync.Mutex
	manager discovery.GroupManager
	lister  listers.CustomResourceDefinitionLister
	present map[string]bool
}

func (g *crdGroups) sync() {
	g.mu.Lock()
	defer g.mu.Unlock()
	crds, err := g.lister.List(labels.Everything())
	if err != nil {
		klog.Errorf("listing CRDs for discovery: %v", err)
		return
	}
	versions := map[string]map[string]bool{}
	for _, crd := range crds {
		if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			if versions[crd.Spec.Group] == nil {
				versions[crd.Spec.Group] = map[string]bool{}
			}
			versions[crd.Spec.Group][v.Name] = true
		}
	}
	for group, set := range versions {
		names := make([]string, 0, len(set))
		for v := range set {
			names = append(names, v)
		}
		sort.Slice(names, func(i, j int) bool {
			return version.CompareKubeAwareVersionStrings(names[i], names[j]) > 0
		})
		apiGroup := metav1.APIGroup{Name: group}
		for _, v := range names {
			apiGroup.Versions = append(apiGroup.Versions, metav1.GroupVersionForDiscovery{
				GroupVersion: group + "/" + v,
				Version:      v,
			})
		}
		apiGroup.PreferredVersion = apiGroup.Versions[0]
		g.manager.AddGroup(apiGroup)
		g.present[group] = true
	}
	for group := range g.present {
		if versions[group] == nil {
			g.manager.RemoveGroup(group)
			delete(g.present, group)
		}
	}
}

// coreStubs answers the legacy /api tree: no core/v1 resources, and empty namespaces and services
// for the server's own informers. Requests reach it after authentication and authorization.
type coreStubs struct {
	done <-chan struct{}
}

func (s *coreStubs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	if r.Method != http.MethodGet {
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			fmt.Sprintf("%s %s: core/v1 is not served by this test API server", r.Method, r.URL.Path))
		return
	}
	switch path {
	case "/api":
		writeJSON(w, map[string]any{
			"kind":     "APIVersions",
			"versions": []string{"v1"},
			"serverAddressByClientCIDRs": []map[string]string{
				{"clientCIDR": "0.0.0.0/0", "serverAddress": r.Host},
			},
		})
	case "/api/v1":
		writeJSON(w, map[string]any{
			"kind":         "APIResourceList",
			"groupVersion": "v1",
			"resources":    []any{},
		})
	case "/api/v1/namespaces":
		s.listOrWatch(w, r, "NamespaceList")
	case "/api/v1/services":
		s.listOrWatch(w, r, "ServiceList")
	default:
		if ns, ok := strings.CutPrefix(path, "/api/v1/namespaces/"); ok && strings.HasSuffix(ns, "/services") &&
			strings.Count(ns, "/") == 1 {
			s.listOrWatch(w, r, "ServiceList")
			return
		}
		writeStatus(w, http.StatusNotFound, "NotFound",
			fmt.Sprintf("%s: core/v1 is not served by this test API server", r.URL.Path))
	}
}

// listOrWatch sends an empty list, or (watch=true) a watch that sends no event and ends at
// timeoutSeconds, when the client goes away, or when the server shuts down.
func (s *coreStubs) listOrWatch(w http.ResponseWriter, r *http.Request, kind string) {
	q := r.URL.Query()
	if q.Get("watch") != "true" && q.Get("watch") != "1" {
		writeJSON(w, map[string]any{
			"kind":       kind,
			"apiVersion": "v1",
			"metadata":   map[string]string{"resourceVersion": "1"},
			"items":      []any{},
		})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if q.Get("sendInitialEvents") == "true" {
		// client-go's streaming list (WatchListClient): the initial events (none) end with a
		// bookmark annotated k8s.io/initial-events-end, or its informers never sync.
		_ = json.NewEncoder(w).Encode(map[string]any{
			"type": "BOOKMARK",
			"object": map[string]any{
				"kind":       strings.TrimSuffix(kind, "List"),
				"apiVersion": "v1",
				"metadata": map[string]any{
					"resourceVersion": "1",
					"annotations":     map[string]string{"k8s.io/initial-events-end": "true"},
				},
			},
		})
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	var timeout <-chan time.Time
	if secs, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && secs > 0 {
		t := time.NewTimer(time.Duration(secs) * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-r.Context().Done():
	case <-s.done:
	case <-timeout:
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind":       "Status",
		"apiVersion": "v1",
		"metadata":   map[string]any{},
		"status":     "Failure",
		"message":    message,
		"reason":     reason,
		"code":       code,
	})
}
