package specpatch

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// gitopsTool names the GitOps tool a field manager belongs to, "" for
// managers of no GitOps controller.
func gitopsTool(manager string) string {
	switch manager {
	case "kustomize-controller", "helm-controller":
		return "Flux"
	case "argocd-controller", "argocd-application-controller":
		return "Argo CD"
	}
	return ""
}

// Owner is a GitOps controller that owns a field.
type Owner struct {
	Manager string // field manager, such as kustomize-controller
	Tool    string // Flux or Argo CD
}

func (o Owner) String() string { return fmt.Sprintf("%s (%s)", o.Manager, o.Tool) }

// GitOpsOwners lists the GitOps controllers whose managedFields entries own
// spec.<field>: they apply the value from git again, so a live change to
// the field is reverted unless the change goes into git.
func GitOpsOwners(managed []metav1.ManagedFieldsEntry, field string) []Owner {
	var owners []Owner
	for _, e := range managed {
		tool := gitopsTool(e.Manager)
		if tool == "" || e.FieldsV1 == nil || !ownsSpecField(e.FieldsV1.Raw, field) {
			continue
		}
		o := Owner{Manager: e.Manager, Tool: tool}
		if !slices.Contains(owners, o) {
			owners = append(owners, o)
		}
	}
	return owners
}

// ownsSpecField reads a FieldsV1 set ({"f:spec":{"f:paused":{}}}).
func ownsSpecField(raw []byte, field string) bool {
	var set map[string]json.RawMessage
	if json.Unmarshal(raw, &set) != nil {
		return false
	}
	var spec map[string]json.RawMessage
	if json.Unmarshal(set["f:spec"], &spec) != nil {
		return false
	}
	_, ok := spec["f:"+field]
	return ok
}

// Warning tells the user that owners will revert the live change, and what
// to put into git instead.
func (p Plan) Warning(owners []Owner) string {
	names := make([]string, len(owners))
	for i, o := range owners {
		names[i] = o.String()
	}
	return fmt.Sprintf("%s is managed by %s: the live change will be reverted at its next sync unless it goes into git; set in the Rollout's manifest:\n%s",
		p.Path(), strings.Join(names, " and "), indent(p.YAML(), "  "))
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(s, "\n", "\n"+pre)
}
