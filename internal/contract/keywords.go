package contract

import (
	"fmt"
	"maps"
	"slices"

	"github.com/getkin/kin-openapi/openapi3"
)

// kin-openapi validates values against an OpenAPI 3.1 document by
// compiling a JSON Schema 2020-12 validator for every value it checks,
// parameters and headers included, with no cache: about a millisecond a
// value, several under the race detector, which made the device library's
// tests six times slower. Its own validator, the one it uses for OpenAPI
// 3.0, is fast but ignores the keywords only 3.1 has. So the contract
// keeps to the keywords both versions mean alike (enum, oneOf, anyOf,
// not, ... instead of const and if/then/else), the checker validates with
// the fast validator, and Load refuses a document that uses any other 3.1
// keyword, so that none is silently ignored. The two it does use the
// checker applies itself (embedded): contentSchema (with contentMediaType
// and contentEncoding) and propertyNames.

// unsupported31 lists the 3.1 keywords s uses that the fast validator
// would ignore and the checker does not apply.
func unsupported31(s *openapi3.Schema) []string {
	var out []string
	add := func(cond bool, kw string) {
		if cond {
			out = append(out, kw)
		}
	}
	add(s.Const != nil, "const")
	add(s.If != nil || s.Then != nil || s.Else != nil, "if/then/else")
	add(len(s.PrefixItems) > 0, "prefixItems")
	add(s.Contains != nil || s.MinContains != nil || s.MaxContains != nil, "contains")
	add(len(s.PatternProperties) > 0, "patternProperties")
	add(len(s.DependentSchemas) > 0, "dependentSchemas")
	add(len(s.DependentRequired) > 0, "dependentRequired")
	add(s.UnevaluatedItems.Has != nil || s.UnevaluatedItems.Schema != nil, "unevaluatedItems")
	add(s.UnevaluatedProperties.Has != nil || s.UnevaluatedProperties.Schema != nil, "unevaluatedProperties")
	add(len(s.Defs) > 0, "$defs")
	add(s.DynamicRef != "", "$dynamicRef")
	add(s.ExclusiveMin.Value != nil || s.ExclusiveMax.Value != nil, "numeric exclusiveMinimum/exclusiveMaximum")
	add(s.Type != nil && len(*s.Type) > 1, "a list of types")
	return out
}

// checkKeywords walks every schema of doc and refuses 3.1 keywords the
// checker would not apply.
func checkKeywords(doc *openapi3.T) error {
	seen := map[*openapi3.Schema]bool{}
	var problems []string
	var walk func(ref *openapi3.SchemaRef, at string)
	walk = func(ref *openapi3.SchemaRef, at string) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if ref.Ref != "" {
			at = ref.Ref
		}
		for _, kw := range unsupported31(s) {
			problems = append(problems, fmt.Sprintf("%s at %s", kw, at))
		}
		walk(s.Items, at+"/items")
		walk(s.Not, at+"/not")
		walk(s.AdditionalProperties.Schema, at+"/additionalProperties")
		walk(s.PropertyNames, at+"/propertyNames")
		walk(s.ContentSchema, at+"/contentSchema")
		walk(s.If, at+"/if")
		walk(s.Then, at+"/then")
		walk(s.Else, at+"/else")
		walk(s.Contains, at+"/contains")
		for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
			walk(s.Properties[name], at+"/properties/"+name)
		}
		for kw, list := range map[string]openapi3.SchemaRefs{"allOf": s.AllOf, "anyOf": s.AnyOf, "oneOf": s.OneOf, "prefixItems": s.PrefixItems} {
			for i, sub := range list {
				walk(sub, fmt.Sprintf("%s/%s/%d", at, kw, i))
			}
		}
		for kw, m := range map[string]openapi3.Schemas{"patternProperties": s.PatternProperties, "dependentSchemas": s.DependentSchemas, "$defs": s.Defs} {
			for _, name := range slices.Sorted(maps.Keys(m)) {
				walk(m[name], at+"/"+kw+"/"+name)
			}
		}
	}
	content := func(c openapi3.Content, at string) {
		for _, mt := range slices.Sorted(maps.Keys(c)) {
			if c[mt] != nil {
				walk(c[mt].Schema, at+"/content/"+mt+"/schema")
			}
		}
	}
	param := func(p *openapi3.Parameter, at string) {
		if p != nil {
			walk(p.Schema, at+"/schema")
			content(p.Content, at)
		}
	}
	response := func(r *openapi3.Response, at string) {
		if r == nil {
			return
		}
		for _, name := range slices.Sorted(maps.Keys(r.Headers)) {
			if h := r.Headers[name]; h != nil && h.Value != nil {
				param(&h.Value.Parameter, at+"/headers/"+name)
			}
		}
		content(r.Content, at)
	}
	if c := doc.Components; c != nil {
		for _, name := range slices.Sorted(maps.Keys(c.Schemas)) {
			walk(c.Schemas[name], "#/components/schemas/"+name)
		}
		for _, name := range slices.Sorted(maps.Keys(c.Parameters)) {
			param(c.Parameters[name].Value, "#/components/parameters/"+name)
		}
		for _, name := range slices.Sorted(maps.Keys(c.Headers)) {
			if h := c.Headers[name].Value; h != nil {
				param(&h.Parameter, "#/components/headers/"+name)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(c.Responses)) {
			response(c.Responses[name].Value, "#/components/responses/"+name)
		}
		for _, name := range slices.Sorted(maps.Keys(c.RequestBodies)) {
			if b := c.RequestBodies[name].Value; b != nil {
				content(b.Content, "#/components/requestBodies/"+name)
			}
		}
	}
	for _, path := range doc.Paths.InMatchingOrder() {
		item := doc.Paths.Value(path)
		at := "#/paths/" + path
		for _, p := range item.Parameters {
			param(p.Value, at+"/parameters/"+p.Value.Name)
		}
		for _, method := range slices.Sorted(maps.Keys(item.Operations())) {
			op := item.Operations()[method]
			oat := at + "/" + method
			for _, p := range op.Parameters {
				param(p.Value, oat+"/parameters/"+p.Value.Name)
			}
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				content(op.RequestBody.Value.Content, oat+"/requestBody")
			}
			for code, r := range op.Responses.Map() {
				response(r.Value, oat+"/responses/"+code)
			}
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("uses OpenAPI 3.1 keywords the checker would ignore (keep to those OpenAPI 3.0 has, such as enum and oneOf/anyOf/not; see internal/contract/keywords.go): %v", problems)
	}
	return nil
}
