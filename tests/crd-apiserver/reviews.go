package main

// TokenReview and SubjectAccessReview for tests of clients that delegate authentication and
// authorisation to the API server (vulngate's review listener): POST
// /apis/authentication.k8s.io/v1/tokenreviews and /apis/authorization.k8s.io/v1/subjectaccessreviews,
// with the upstream request and response types (k8s.io/api/authentication/v1, authorization/v1).
//
//   - Tokens: the upstream static token file authenticator (k8s.io/apiserver/.../tokenfile, the
//     CSV of kube-apiserver's --token-auth-file: token,user,uid,"group1,group2"), audience-agnostic
//     as kube-apiserver wraps it (its implicit audience is --token-auth-audience).
//   - Access: the union (k8s.io/apiserver/pkg/authorization/union) of the privileged group
//     system:masters and a rule list read from --access-review-policy-file: JSON lines
//     {"user": "...", "group": "...", "namespace": "...", "rules": [rbac/v1 PolicyRule...]}, one
//     subject (user or group) per line, namespace "" for every namespace and cluster-wide requests
//     (a ClusterRoleBinding), else that namespace only (a RoleBinding); a request is allowed when a
//     line's rules cover it as RBAC's do (k8s.io/component-helpers/auth/rbac/validation.Covers).
//   - GET /test/counters: {"tokenReviews": N, "subjectAccessReviews": M}, the reviews answered
//     since start, so that tests can tell a cached answer from a fresh one.
//
// The handlers sit behind the server's own authentication and authorisation: callers use the
// admin client certificate (system:masters), as a server's service account would be allowed to
// create these reviews.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/token/tokenfile"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/authorization/union"
	"k8s.io/component-helpers/auth/rbac/validation"
)

// maxReviewBytes bounds a review request body.
const maxReviewBytes = 1 << 20

type reviews struct {
	tokens        authenticator.Token
	audiences     authenticator.Audiences
	access        authorizer.Authorizer
	tokenReviews  atomic.Int64
	accessReviews atomic.Int64
}

// newReviews reads the token file and the policy file (either may be empty: that review is not
// served).
func newReviews(tokenFile, audience, policyFile string) (*reviews, error) {
	rv := &reviews{audiences: authenticator.Audiences{audience}}
	if tokenFile != "" {
		t, err := tokenfile.NewCSV(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-auth-file: %w", err)
		}
		rv.tokens = authenticator.WrapAudienceAgnosticToken(rv.audiences, t)
	}
	if policyFile != "" {
		p, err := readPolicy(policyFile)
		if err != nil {
			return nil, fmt.Errorf("--access-review-policy-file: %w", err)
		}
		rv.access = union.New(authorizerfactory.NewPrivilegedGroups(user.SystemPrivilegedGroup), p)
	}
	return rv, nil
}

func (rv *reviews) install(mux interface {
	Handle(string, http.Handler)
}) {
	if rv.tokens != nil {
		mux.Handle("/apis/authentication.k8s.io/v1/tokenreviews", http.HandlerFunc(rv.tokenReview))
	}
	if rv.access != nil {
		mux.Handle("/apis/authorization.k8s.io/v1/subjectaccessreviews", http.HandlerFunc(rv.accessReview))
	}
	mux.Handle("/test/counters", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]int64{
			"tokenReviews":         rv.tokenReviews.Load(),
			"subjectAccessReviews": rv.accessReviews.Load(),
		})
	}))
}

// decode reads a POSTed JSON body into v; false (the answer written) when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Method != http.MethodPost {
		writeStatus(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" "+r.URL.Path+": only POST (create)")
		return false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil || len(body) > maxReviewBytes {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "request body unreadable or too large")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "request body: "+err.Error())
		return false
	}
	return true
}

func writeCreated(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(v)
}

// tokenReview answers as kube-apiserver's tokenreviews storage does: the spec's audiences (or the
// server's when none) are the expected ones, the status names the user and the audiences the
// token is valid for. The token is not sent back.
func (rv *reviews) tokenReview(w http.ResponseWriter, r *http.Request) {
	var tr authenticationv1.TokenReview
	if !decode(w, r, &tr) {
		return
	}
	rv.tokenReviews.Add(1)
	auds := authenticator.Audiences(tr.Spec.Audiences)
	if len(auds) == 0 {
		auds = rv.audiences
	}
	resp, ok, err := rv.tokens.AuthenticateToken(authenticator.WithAudiences(r.Context(), auds), tr.Spec.Token)
	tr.Spec.Token = ""
	tr.Kind, tr.APIVersion = "TokenReview", "authentication.k8s.io/v1"
	tr.Status = authenticationv1.TokenReviewStatus{}
	if err != nil {
		tr.Status.Error = err.Error()
	}
	if ok && resp != nil {
		u := resp.User
		tr.Status.Authenticated = true
		tr.Status.Audiences = resp.Audiences
		tr.Status.User = authenticationv1.UserInfo{
			Username: u.GetName(),
			UID:      u.GetUID(),
			Groups:   u.GetGroups(),
		}
		if extra := u.GetExtra(); len(extra) > 0 {
			tr.Status.User.Extra = map[string]authenticationv1.ExtraValue{}
			for k, v := range extra {
				tr.Status.User.Extra[k] = v
			}
		}
	}
	writeCreated(w, &tr)
}

// accessReview answers as kube-apiserver's subjectaccessreviews storage does (the spec's
// attributes to an authorizer.AttributesRecord, the decision to the status).
func (rv *reviews) accessReview(w http.ResponseWriter, r *http.Request) {
	var sar authorizationv1.SubjectAccessReview
	if !decode(w, r, &sar) {
		return
	}
	rv.accessReviews.Add(1)
	s := sar.Spec
	if s.ResourceAttributes == nil && s.NonResourceAttributes == nil {
		writeStatus(w, http.StatusUnprocessableEntity, "Invalid",
			"spec: exactly one of resourceAttributes and nonResourceAttributes must be set")
		return
	}
	if s.User == "" && len(s.Groups) == 0 {
		writeStatus(w, http.StatusUnprocessableEntity, "Invalid", "spec: at least one of user and groups must be set")
		return
	}
	extra := map[string][]string{}
	for k, v := range s.Extra {
		extra[k] = v
	}
	attrs := authorizer.AttributesRecord{
		User: &user.DefaultInfo{Name: s.User, UID: s.UID, Groups: s.Groups, Extra: extra},
	}
	if ra := s.ResourceAttributes; ra != nil {
		attrs.ResourceRequest = true
		attrs.Verb = ra.Verb
		attrs.Namespace = ra.Namespace
		attrs.APIGroup = ra.Group
		attrs.APIVersion = ra.Version
		attrs.Resource = ra.Resource
		attrs.Subresource = ra.Subresource
		attrs.Name = ra.Name
	} else {
		attrs.Verb = s.NonResourceAttributes.Verb
		attrs.Path = s.NonResourceAttributes.Path
	}
	decision, reason, err := rv.access.Authorize(r.Context(), attrs)
	sar.Kind, sar.APIVersion = "SubjectAccessReview", "authorization.k8s.io/v1"
	sar.Status = authorizationv1.SubjectAccessReviewStatus{
		Allowed: decision == authorizer.DecisionAllow,
		Denied:  decision == authorizer.DecisionDeny,
		Reason:  reason,
	}
	if err != nil {
		sar.Status.EvaluationError = err.Error()
	}
	writeCreated(w, &sar)
}

// policyLine is one line of --access-review-policy-file.
type policyLine struct {
	User      string              `json:"user"`
	Group     string              `json:"group"`
	Namespace string              `json:"namespace"`
	Rules     []rbacv1.PolicyRule `json:"rules"`
}

type policy []policyLine

func readPolicy(path string) (policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var p policy
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		var l policyLine
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if (l.User == "") == (l.Group == "") {
			return nil, fmt.Errorf("%s:%d: exactly one of user and group", path, n)
		}
		if len(l.Rules) == 0 {
			return nil, fmt.Errorf("%s:%d: no rules", path, n)
		}
		p = append(p, l)
	}
	return p, sc.Err()
}

// Authorize allows a request that a line for its user or one of its groups, in its namespace or
// in every namespace, covers; it has no opinion otherwise (nothing is denied outright, as RBAC).
func (p policy) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	var want rbacv1.PolicyRule
	if a.IsResourceRequest() {
		resource := a.GetResource()
		if a.GetSubresource() != "" {
			resource += "/" + a.GetSubresource()
		}
		want = rbacv1.PolicyRule{Verbs: []string{a.GetVerb()}, APIGroups: []string{a.GetAPIGroup()}, Resources: []string{resource}}
		if a.GetName() != "" {
			want.ResourceNames = []string{a.GetName()}
		}
	} else {
		want = rbacv1.PolicyRule{Verbs: []string{a.GetVerb()}, NonResourceURLs: []string{a.GetPath()}}
	}
	u := a.GetUser()
	for i, l := range p {
		subject := (l.User != "" && l.User == u.GetName()) ||
			(l.Group != "" && contains(u.GetGroups(), l.Group))
		if !subject || (l.Namespace != "" && (!a.IsResourceRequest() || l.Namespace != a.GetNamespace())) {
			continue
		}
		if covers, _ := validation.Covers(l.Rules, []rbacv1.PolicyRule{want}); covers {
			return authorizer.DecisionAllow, fmt.Sprintf("allowed by policy entry %d", i+1), nil
		}
	}
	return authorizer.DecisionNoOpinion, "no policy entry allows " + strings.Join(want.Verbs, ",") + " of that", nil
}

func contains(set []string, s string) bool {
	for _, x := range set {
		if x == s {
			return true
		}
	}
	return false
}
