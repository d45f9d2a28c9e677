// apiserver-harness runs the Kubernetes API server's own validating admission webhook plugin
// (k8s.io/apiserver/pkg/admission/plugin/webhook/validating, the code kube-apiserver runs to
// call validating webhooks) against one object, and prints the outcome as JSON. With
// --mutate-url or --mutating-webhook-config it first runs the mutating webhook plugin
// (k8s.io/apiserver/pkg/admission/plugin/webhook/mutating), which applies the webhook's
// JSONPatch to the object the validating plugin then sees, and prints the mutated object.
//
// The plugin gets a fake clientset holding one ValidatingWebhookConfiguration (built from the
// flags, or read with --webhook-config, then defaulted like the API server does) and the
// Namespace of the request, plus an informer factory over it. It then sends the real
// AdmissionReview over the real TLS client (caBundle checked, ?timeout= set, failurePolicy
// applied) and returns exactly the error kube-apiserver would return.
//
// Build (offline, GOPATH mode, Debian sid's golang-k8s-* packages; see docs/testing.md):
//
//	GO111MODULE=off GOPROXY=off GOPATH=<this dir>:<root>/usr/share/gocode go build -o apiserver-harness .
//
// Usage:
//
//	apiserver-harness --url https://127.0.0.1:8443/validate --ca-file ca.crt \
//	    --namespace prod-shop [--namespace-labels team=shop] [--operation CREATE] \
//	    [--failure-policy Fail] [--timeout-seconds 10] [--exclude-namespaces kube-system,vulngate] \
//	    [--object deploy.yaml | - (stdin, the default)] [--old-object old.yaml] \
//	    [--mutate-url https://127.0.0.1:8443/mutate | --mutating-webhook-config mwc.yaml]
//
// Output (stdout, one JSON object; exit code 0 whatever the decision, 2 on a usage error):
//
//	{"allowed": false, "error": "admission webhook \"vulngate.vulngate.io\" denied the request: ...",
//	 "code": 403, "reason": "Forbidden", "warnings": [...], "auditAnnotations": {...},
//	 "webhookCalls": 1}
//
// webhookCalls counts the HTTP requests actually sent to the validating webhook (0 when the
// namespaceSelector, objectSelector or rules did not match). With a mutating webhook, also
// "mutateCalls" (its HTTP requests), "mutateError" (the mutating plugin's error, which ends the
// request before validation) and "object" (the object after mutation).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/mutating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/validating"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

type result struct {
	Allowed          bool              `json:"allowed"`
	Error            string            `json:"error,omitempty"`
	Code             int32             `json:"code,omitempty"`
	Reason           string            `json:"reason,omitempty"`
	Warnings         []string          `json:"warnings"`
	AuditAnnotations map[string]string `json:"auditAnnotations"`
	WebhookCalls     int64             `json:"webhookCalls"`
	MutateCalls      int64             `json:"mutateCalls,omitempty"`
	MutateError      string            `json:"mutateError,omitempty"`
	Object           json.RawMessage   `json:"object,omitempty"`
}

type options struct {
	url, caFile, webhookName, configName, failurePolicy, matchPolicy        string
	webhookConfig, nsSelector, objSelector, excludeNamespaces, nsLabels     string
	serviceEndpoint, mutateURL, mutatingConfig                              string
	namespace, operation, object, oldObject, subresource, user, groups, uid string
	timeoutSeconds                                                          int
	dryRun                                                                  bool
	requestTimeout                                                          time.Duration
	set                                                                     map[string]bool // flags given
}

func main() {
	var o options
	fs := flag.NewFlagSet("apiserver-harness", flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "", "webhook URL (clientConfig.url), e.g. https://127.0.0.1:8443/validate")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM file given as the webhook's clientConfig.caBundle (empty: system roots)")
	fs.StringVar(&o.webhookName, "webhook-name", "vulngate.vulngate.io", "webhooks[0].name")
	fs.StringVar(&o.configName, "config-name", "vulngate", "ValidatingWebhookConfiguration metadata.name")
	fs.StringVar(&o.failurePolicy, "failure-policy", "Fail", "Fail or Ignore")
	fs.StringVar(&o.matchPolicy, "match-policy", "Equivalent", "Exact or Equivalent")
	fs.IntVar(&o.timeoutSeconds, "timeout-seconds", 10, "webhooks[0].timeoutSeconds (1-30)")
	fs.StringVar(&o.webhookConfig, "webhook-config", "", "YAML/JSON ValidatingWebhookConfiguration to use instead of the built-in one (--url/--ca-file/--failure-policy/--timeout-seconds still override when given)")
	fs.StringVar(&o.mutateURL, "mutate-url", "", "also run the mutating webhook plugin first, with a MutatingWebhookConfiguration like the validating one (webhook pin.<webhook-name>, reinvocationPolicy IfNeeded) calling this URL")
	fs.StringVar(&o.mutatingConfig, "mutating-webhook-config", "", "YAML/JSON MutatingWebhookConfiguration to run first (--mutate-url, --ca-file, --failure-policy, --timeout-seconds override when given)")
	fs.StringVar(&o.serviceEndpoint, "service-endpoint", "", "HOST:PORT a clientConfig.service resolves to (kube-apiserver would use the Service's endpoints); TLS still verifies the name <service>.<namespace>.svc against the caBundle")
	fs.StringVar(&o.nsSelector, "namespace-selector", "", "namespaceSelector as JSON/YAML (LabelSelector)")
	fs.StringVar(&o.objSelector, "object-selector", "", "objectSelector as JSON/YAML (LabelSelector)")
	fs.StringVar(&o.excludeNamespaces, "exclude-namespaces", "", "comma-separated namespaces: namespaceSelector kubernetes.io/metadata.name NotIn [...] (with --namespace-selector: added to its matchExpressions)")
	fs.StringVar(&o.nsLabels, "namespace-labels", "", "labels of the request's Namespace, k=v,k2=v2 (kubernetes.io/metadata.name is always set, as the API server does)")
	fs.StringVar(&o.namespace, "namespace", "", "namespace of the request (default: the object's metadata.namespace, else \"default\" for namespaced kinds)")
	fs.StringVar(&o.operation, "operation", "CREATE", "CREATE, UPDATE, DELETE or CONNECT")
	fs.StringVar(&o.object, "object", "-", "file with the object (YAML or JSON); - for stdin")
	fs.StringVar(&o.oldObject, "old-object", "", "file with the old object (UPDATE)")
	fs.StringVar(&o.subresource, "subresource", "", "subresource of the request (e.g. ephemeralcontainers)")
	fs.StringVar(&o.user, "user", "alice@example.com", "requesting user name")
	fs.StringVar(&o.groups, "groups", "system:authenticated", "comma-separated groups of the user")
	fs.StringVar(&o.uid, "user-uid", "", "requesting user's UID")
	fs.BoolVar(&o.dryRun, "dry-run", false, "dryRun request")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 60*time.Second, "the API request's own deadline (kube-apiserver's --request-timeout default is 60s)")
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("logtostderr", "true")
	fs.Func("v", "klog verbosity (logs go to stderr)", func(s string) error { return klogFlags.Set("v", s) })
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "apiserver-harness: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	res, err := run(&o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "apiserver-harness: %v\n", err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "apiserver-harness: %v\n", err)
		os.Exit(2)
	}
}

func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

// decodeObject decodes YAML or JSON into the typed object the API server would hold.
func decodeObject(data []byte) (runtime.Object, schema.GroupVersionKind, error) {
	js, err := yaml.ToJSON(data)
	if err != nil {
		return nil, schema.GroupVersionKind{}, err
	}
	obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(js, nil, nil)
	if err != nil {
		return nil, schema.GroupVersionKind{}, err
	}
	obj.GetObjectKind().SetGroupVersionKind(*gvk)
	return obj, *gvk, nil
}

func parseSelector(s string) (*metav1.LabelSelector, error) {
	sel := &metav1.LabelSelector{}
	js, err := yaml.ToJSON([]byte(s))
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(sel); err != nil {
		return nil, err
	}
	return sel, nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("label %q: expected key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// webhookConfiguration builds (or reads) the configuration, then applies the API server's
// defaults (k8s.io/kubernetes/pkg/apis/admissionregistration/v1/defaults.go).
func webhookConfiguration(o *options, flagSet map[string]bool) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if o.webhookConfig != "" {
		data, err := os.ReadFile(o.webhookConfig)
		if err != nil {
			return nil, err
		}
		js, err := yaml.ToJSON(data)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(js, cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", o.webhookConfig, err)
		}
		if len(cfg.Webhooks) == 0 {
			return nil, fmt.Errorf("%s: no webhooks", o.webhookConfig)
		}
	} else {
		ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
		rule := func(group string, resources ...string) admissionregistrationv1.RuleWithOperations {
			return admissionregistrationv1.RuleWithOperations{
				Operations: ops,
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{group},
					APIVersions: []string{"v1"},
					Resources:   resources,
				},
			}
		}
		none := admissionregistrationv1.SideEffectClassNone
		cfg.ObjectMeta.Name = o.configName
		cfg.Webhooks = []admissionregistrationv1.ValidatingWebhook{{
			Name: o.webhookName,
			Rules: []admissionregistrationv1.RuleWithOperations{
				rule("", "pods", "pods/ephemeralcontainers", "replicationcontrollers"),
				rule("apps", "deployments", "replicasets", "statefulsets", "daemonsets"),
				rule("batch", "jobs", "cronjobs"),
			},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
		}}
		flagSet["url"], flagSet["failure-policy"], flagSet["timeout-seconds"], flagSet["match-policy"] = true, true, true, true
	}
	if cfg.Name == "" {
		cfg.Name = o.configName
	}
	w := &cfg.Webhooks[0]
	if flagSet["url"] {
		u := o.url
		w.ClientConfig.URL = &u
		w.ClientConfig.Service = nil
	}
	if flagSet["ca-file"] && o.caFile != "" {
		ca, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, err
		}
		w.ClientConfig.CABundle = ca
	}
	if flagSet["failure-policy"] {
		fp := admissionregistrationv1.FailurePolicyType(o.failurePolicy)
		if fp != admissionregistrationv1.Fail && fp != admissionregistrationv1.Ignore {
			return nil, fmt.Errorf("--failure-policy: %q is neither Fail nor Ignore", o.failurePolicy)
		}
		w.FailurePolicy = &fp
	}
	if flagSet["timeout-seconds"] {
		if o.timeoutSeconds < 1 || o.timeoutSeconds > 30 {
			return nil, fmt.Errorf("--timeout-seconds: %d is not between 1 and 30", o.timeoutSeconds)
		}
		t := int32(o.timeoutSeconds)
		w.TimeoutSeconds = &t
	}
	if flagSet["match-policy"] {
		mp := admissionregistrationv1.MatchPolicyType(o.matchPolicy)
		w.MatchPolicy = &mp
	}
	if o.nsSelector != "" {
		sel, err := parseSelector(o.nsSelector)
		if err != nil {
			return nil, fmt.Errorf("--namespace-selector: %w", err)
		}
		w.NamespaceSelector = sel
	}
	if o.excludeNamespaces != "" {
		if w.NamespaceSelector == nil {
			w.NamespaceSelector = &metav1.LabelSelector{}
		}
		var names []string
		for _, n := range strings.Split(o.excludeNamespaces, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
		w.NamespaceSelector.MatchExpressions = append(w.NamespaceSelector.MatchExpressions, metav1.LabelSelectorRequirement{
			Key:      corev1.LabelMetadataName,
			Operator: metav1.LabelSelectorOpNotIn,
			Values:   names,
		})
	}
	if o.objSelector != "" {
		sel, err := parseSelector(o.objSelector)
		if err != nil {
			return nil, fmt.Errorf("--object-selector: %w", err)
		}
		w.ObjectSelector = sel
	}
	for i := range cfg.Webhooks {
		setDefaults(&cfg.Webhooks[i])
	}
	if w.ClientConfig.URL == nil && w.ClientConfig.Service == nil {
		return nil, errors.New("--url is required")
	}
	return cfg, nil
}

// mutatingConfiguration builds (or reads) the MutatingWebhookConfiguration: by default the
// validating webhook's rules, selectors, caBundle, timeout and failure policy, calling
// --mutate-url, with sideEffects None and reinvocationPolicy IfNeeded; then the API server's
// defaults. nil when neither --mutate-url nor --mutating-webhook-config is given.
func mutatingConfiguration(o *options, flagSet map[string]bool, v *admissionregistrationv1.ValidatingWebhookConfiguration) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	if o.mutateURL == "" && o.mutatingConfig == "" {
		return nil, nil
	}
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if o.mutatingConfig != "" {
		data, err := os.ReadFile(o.mutatingConfig)
		if err != nil {
			return nil, err
		}
		js, err := yaml.ToJSON(data)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(js, cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", o.mutatingConfig, err)
		}
		if len(cfg.Webhooks) == 0 {
			return nil, fmt.Errorf("%s: no webhooks", o.mutatingConfig)
		}
	} else {
		vw := v.Webhooks[0]
		none := admissionregistrationv1.SideEffectClassNone
		ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
		cfg.ObjectMeta.Name = v.Name
		cfg.Webhooks = []admissionregistrationv1.MutatingWebhook{{
			Name:                    "pin." + vw.Name,
			ClientConfig:            *vw.ClientConfig.DeepCopy(),
			Rules:                   vw.Rules,
			FailurePolicy:           vw.FailurePolicy,
			MatchPolicy:             vw.MatchPolicy,
			NamespaceSelector:       vw.NamespaceSelector,
			ObjectSelector:          vw.ObjectSelector,
			SideEffects:             &none,
			TimeoutSeconds:          vw.TimeoutSeconds,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &ifNeeded,
		}}
	}
	if cfg.Name == "" {
		cfg.Name = o.configName
	}
	w := &cfg.Webhooks[0]
	if o.mutateURL != "" {
		u := o.mutateURL
		w.ClientConfig.URL = &u
		w.ClientConfig.Service = nil
	}
	if flagSet["ca-file"] && o.caFile != "" {
		ca, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, err
		}
		w.ClientConfig.CABundle = ca
	}
	if o.mutatingConfig != "" && flagSet["failure-policy"] {
		fp := admissionregistrationv1.FailurePolicyType(o.failurePolicy)
		w.FailurePolicy = &fp
	}
	if o.mutatingConfig != "" && flagSet["timeout-seconds"] {
		t := int32(o.timeoutSeconds)
		w.TimeoutSeconds = &t
	}
	for i := range cfg.Webhooks {
		setMutatingDefaults(&cfg.Webhooks[i])
	}
	if w.ClientConfig.URL == nil && w.ClientConfig.Service == nil {
		return nil, errors.New("the mutating webhook has no URL or service")
	}
	return cfg, nil
}

// setMutatingDefaults mirrors SetDefaults_MutatingWebhook (the validating defaults, and
// reinvocationPolicy Never).
func setMutatingDefaults(w *admissionregistrationv1.MutatingWebhook) {
	v := admissionregistrationv1.ValidatingWebhook{
		FailurePolicy: w.FailurePolicy, MatchPolicy: w.MatchPolicy, NamespaceSelector: w.NamespaceSelector,
		ObjectSelector: w.ObjectSelector, TimeoutSeconds: w.TimeoutSeconds, Rules: w.Rules,
		ClientConfig: w.ClientConfig,
	}
	setDefaults(&v)
	w.FailurePolicy, w.MatchPolicy, w.NamespaceSelector = v.FailurePolicy, v.MatchPolicy, v.NamespaceSelector
	w.ObjectSelector, w.TimeoutSeconds, w.Rules, w.ClientConfig = v.ObjectSelector, v.TimeoutSeconds, v.Rules, v.ClientConfig
	if w.ReinvocationPolicy == nil {
		p := admissionregistrationv1.NeverReinvocationPolicy
		w.ReinvocationPolicy = &p
	}
}

// setDefaults mirrors SetDefaults_ValidatingWebhook and SetDefaults_Rule of the API server:
// without them an unset namespaceSelector/objectSelector matches nothing.
func setDefaults(w *admissionregistrationv1.ValidatingWebhook) {
	if w.FailurePolicy == nil {
		p := admissionregistrationv1.Fail
		w.FailurePolicy = &p
	}
	if w.MatchPolicy == nil {
		p := admissionregistrationv1.Equivalent
		w.MatchPolicy = &p
	}
	if w.NamespaceSelector == nil {
		w.NamespaceSelector = &metav1.LabelSelector{}
	}
	if w.ObjectSelector == nil {
		w.ObjectSelector = &metav1.LabelSelector{}
	}
	if w.TimeoutSeconds == nil {
		t := int32(10)
		w.TimeoutSeconds = &t
	}
	for i := range w.Rules {
		if w.Rules[i].Scope == nil {
			s := admissionregistrationv1.AllScopes
			w.Rules[i].Scope = &s
		}
	}
	if w.ClientConfig.Service != nil && w.ClientConfig.Service.Port == nil {
		p := int32(443)
		w.ClientConfig.Service.Port = &p
	}
}

// recordingAttributes keeps the audit annotations the plugin adds (kube-apiserver writes them
// to the audit event); the wrapped record still validates their keys.
type recordingAttributes struct {
	admission.Attributes
	mu          sync.Mutex
	annotations map[string]string
}

func (r *recordingAttributes) AddAnnotation(key, value string) error {
	return r.AddAnnotationWithLevel(key, value, auditinternal.LevelMetadata)
}

func (r *recordingAttributes) AddAnnotationWithLevel(key, value string, level auditinternal.Level) error {
	if err := r.Attributes.AddAnnotationWithLevel(key, value, level); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.annotations[key] = value
	return nil
}

// warningRecorder collects warnings like kube-apiserver's recorder (duplicates dropped).
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) AddWarning(agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range w.warnings {
		if x == text {
			return
		}
	}
	w.warnings = append(w.warnings, text)
}

// fixedServiceResolver resolves every webhook Service to one address, as the cluster's
// Service routing would; the client still dials TLS with ServerName <service>.<namespace>.svc.
type fixedServiceResolver struct{ hostPort string }

func (r fixedServiceResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	return &url.URL{Scheme: "https", Host: r.hostPort}, nil
}

type countingTransport struct {
	next  http.RoundTripper
	calls *atomic.Int64
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.calls.Add(1)
	return t.next.RoundTrip(r)
}

// countingResolver wraps the API server's default authentication info resolver so every HTTP
// request to a webhook is counted (TLS and everything else stay the client manager's own).
type countingResolver struct {
	webhookutil.AuthenticationInfoResolver
	calls *atomic.Int64
}

func (c *countingResolver) wrap(cfg *rest.Config, err error) (*rest.Config, error) {
	if err != nil || cfg == nil {
		return cfg, err
	}
	cfg = rest.CopyConfig(cfg)
	prev := cfg.WrapTransport
	calls := c.calls
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if prev != nil {
			rt = prev(rt)
		}
		return &countingTransport{next: rt, calls: calls}
	}
	return cfg, nil
}

func (c *countingResolver) ClientConfigFor(hostPort string) (*rest.Config, error) {
	return c.wrap(c.AuthenticationInfoResolver.ClientConfigFor(hostPort))
}

func (c *countingResolver) ClientConfigForService(name, namespace string, port int) (*rest.Config, error) {
	return c.wrap(c.AuthenticationInfoResolver.ClientConfigForService(name, namespace, port))
}

func run(o *options) (*result, error) {
	cfg, err := webhookConfiguration(o, o.set)
	if err != nil {
		return nil, err
	}
	mcfg, err := mutatingConfiguration(o, o.set, cfg)
	if err != nil {
		return nil, err
	}

	data, err := readInput(o.object)
	if err != nil {
		return nil, fmt.Errorf("--object: %w", err)
	}
	obj, gvk, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("--object: %w", err)
	}
	var oldObj runtime.Object
	if o.oldObject != "" {
		d, err := os.ReadFile(o.oldObject)
		if err != nil {
			return nil, fmt.Errorf("--old-object: %w", err)
		}
		if oldObj, _, err = decodeObject(d); err != nil {
			return nil, fmt.Errorf("--old-object: %w", err)
		}
	}
	accessor, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("--object: %w", err)
	}
	namespace := o.namespace
	if namespace == "" {
		namespace = accessor.GetNamespace()
	}
	if namespace == "" && gvk.Kind != "Namespace" {
		namespace = metav1.NamespaceDefault
	}
	if accessor.GetNamespace() == "" && gvk.Kind != "Namespace" {
		accessor.SetNamespace(namespace) // the API server fills it from the request path
	}
	gvr, _ := meta.UnsafeGuessKindToResource(gvk)

	operation := admission.Operation(strings.ToUpper(o.operation))
	var opts runtime.Object
	switch operation {
	case admission.Create:
		opts = &metav1.CreateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"}}
	case admission.Update:
		opts = &metav1.UpdateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "UpdateOptions"}}
	case admission.Delete:
		opts = &metav1.DeleteOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "DeleteOptions"}}
		oldObj, obj = obj, nil
	case admission.Connect:
	default:
		return nil, fmt.Errorf("--operation: unknown operation %q", o.operation)
	}
	if operation == admission.Update && oldObj == nil {
		oldObj = obj.DeepCopyObject()
	}
	if operation == admission.Create && o.dryRun {
		opts.(*metav1.CreateOptions).DryRun = []string{metav1.DryRunAll}
	}

	nsLabels, err := parseLabels(o.nsLabels)
	if err != nil {
		return nil, fmt.Errorf("--namespace-labels: %w", err)
	}
	objs := []runtime.Object{cfg}
	if mcfg != nil {
		objs = append(objs, mcfg)
	}
	if namespace != "" {
		nsLabels[corev1.LabelMetadataName] = namespace
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: nsLabels}})
	}

	client := fake.NewSimpleClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	plugin, err := validating.NewValidatingAdmissionWebhook(nil)
	if err != nil {
		return nil, err
	}
	calls := &atomic.Int64{}
	plugin.SetAuthenticationInfoResolverWrapper(func(r webhookutil.AuthenticationInfoResolver) webhookutil.AuthenticationInfoResolver {
		return &countingResolver{AuthenticationInfoResolver: r, calls: calls}
	})
	if o.serviceEndpoint != "" {
		plugin.SetServiceResolver(fixedServiceResolver{hostPort: o.serviceEndpoint})
	}
	plugin.SetExternalKubeClientSet(client)
	plugin.SetExternalKubeInformerFactory(factory)
	var mplugin *mutating.Plugin
	mcalls := &atomic.Int64{}
	if mcfg != nil {
		if mplugin, err = mutating.NewMutatingWebhook(nil); err != nil {
			return nil, err
		}
		mplugin.SetAuthenticationInfoResolverWrapper(func(r webhookutil.AuthenticationInfoResolver) webhookutil.AuthenticationInfoResolver {
			return &countingResolver{AuthenticationInfoResolver: r, calls: mcalls}
		})
		if o.serviceEndpoint != "" {
			mplugin.SetServiceResolver(fixedServiceResolver{hostPort: o.serviceEndpoint})
		}
		mplugin.SetExternalKubeClientSet(client)
		mplugin.SetExternalKubeInformerFactory(factory)
	}
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	if err := plugin.ValidateInitialization(); err != nil {
		return nil, err
	}
	if !plugin.WaitForReady() {
		return nil, errors.New("the webhook plugin did not become ready")
	}
	if mplugin != nil {
		if err := mplugin.ValidateInitialization(); err != nil {
			return nil, err
		}
		if !mplugin.WaitForReady() {
			return nil, errors.New("the mutating webhook plugin did not become ready")
		}
	}

	groups := []string{}
	for _, g := range strings.Split(o.groups, ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	userInfo := &user.DefaultInfo{Name: o.user, UID: o.uid, Groups: groups}
	attrs := &recordingAttributes{
		Attributes: admission.NewAttributesRecord(obj, oldObj, gvk, namespace, accessor.GetName(), gvr,
			o.subresource, operation, opts, o.dryRun, userInfo),
		annotations: map[string]string{},
	}
	if !plugin.Handles(operation) {
		return &result{Allowed: true, Warnings: []string{}, AuditAnnotations: map[string]string{}}, nil
	}

	rec := &warningRecorder{}
	ctx, cancel := context.WithTimeout(context.Background(), o.requestTimeout)
	defer cancel()
	ctx = warning.WithWarningRecorder(ctx, rec)
	interfaces := admission.NewObjectInterfacesFromScheme(scheme.Scheme)
	var merr error
	var mutated json.RawMessage
	if mplugin != nil && mplugin.Handles(operation) {
		// As kube-apiserver's admission chain: mutating webhooks first, then validating ones
		// on the mutated object (the plugin applies the JSONPatch to attrs' object).
		if merr = mplugin.Admit(ctx, attrs, interfaces); merr == nil && attrs.GetObject() != nil {
			if mutated, err = json.Marshal(attrs.GetObject()); err != nil {
				return nil, err
			}
		}
	}
	if merr == nil {
		err = plugin.Validate(ctx, attrs, interfaces)
	} else {
		err = merr
	}

	res := &result{Allowed: err == nil, Warnings: rec.warnings, WebhookCalls: calls.Load(), MutateCalls: mcalls.Load(), Object: mutated}
	if merr != nil {
		res.MutateError = merr.Error()
	}
	if res.Warnings == nil {
		res.Warnings = []string{}
	}
	attrs.mu.Lock()
	res.AuditAnnotations = attrs.annotations
	attrs.mu.Unlock()
	if err != nil {
		res.Error = err.Error()
		var se apierrors.APIStatus
		if errors.As(err, &se) {
			res.Code = se.Status().Code
			res.Reason = string(se.Status().Reason)
		}
	}
	return res, nil
}
