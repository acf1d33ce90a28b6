package terraform

// A small evaluator of Terraform configurations, enough to check coalmine's
// module without the Google provider (which these machines cannot
// download): it parses every .tf file with hashicorp/hcl/v2, evaluates
// variables (from the test's values and the defaults), locals and every
// resource instance (for_each and dynamic blocks expanded) in dependency
// order, and gives each resource the computed attributes the module reads
// (a topic's id, a service account's email and member, a service's uri …)
// as the provider would spell them. A reference to anything undeclared, or a
// function it does not know, is an error the tests report.

import (
	"encoding/base64"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// config is one directory of .tf files.
type config struct {
	dir       string
	files     map[string]*hcl.File
	variables map[string]*variable
	locals    map[string]hcl.Expression
	resources []*resource // in file order
	data      []*hclsyntax.Block
	modules   []*hclsyntax.Block
	outputs   []*hclsyntax.Block
}

type variable struct {
	name        string
	description string
	def         cty.Value // cty.NilVal when there is no default
	block       *hclsyntax.Block
}

type resource struct {
	typ, name string
	block     *hclsyntax.Block
	file      string
	// instances by for_each key ("" for a resource without for_each).
	instances map[string]cty.Value
}

func (r *resource) addr() string { return r.typ + "." + r.name }

// load parses every .tf file of dir.
func load(t *testing.T, dir string) *config {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no .tf files in %s (%v)", dir, err)
	}
	c := &config{dir: dir, files: map[string]*hcl.File{}, variables: map[string]*variable{}, locals: map[string]hcl.Expression{}}
	p := hclparse.NewParser()
	for _, name := range names {
		f, diags := p.ParseHCLFile(name)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %v", name, diags)
		}
		c.files[name] = f
		body := f.Body.(*hclsyntax.Body)
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				v := &variable{name: b.Labels[0], block: b, def: cty.NilVal}
				if a, ok := b.Body.Attributes["description"]; ok {
					d, diags := a.Expr.Value(nil)
					if diags.HasErrors() {
						t.Fatalf("%s: variable %s: description: %v", name, v.name, diags)
					}
					v.description = d.AsString()
				}
				if a, ok := b.Body.Attributes["default"]; ok {
					d, diags := a.Expr.Value(nil)
					if diags.HasErrors() {
						t.Fatalf("%s: variable %s: default: %v", name, v.name, diags)
					}
					v.def = d
				}
				c.variables[v.name] = v
			case "locals":
				for n, a := range b.Body.Attributes {
					c.locals[n] = a.Expr
				}
			case "resource":
				c.resources = append(c.resources, &resource{typ: b.Labels[0], name: b.Labels[1], block: b, file: filepath.Base(name)})
			case "data":
				c.data = append(c.data, b)
			case "module":
				c.modules = append(c.modules, b)
			case "output":
				c.outputs = append(c.outputs, b)
			}
		}
	}
	return c
}

// references lists the root names (var.X as "var.X", local.X as "local.X",
// TYPE.NAME for resources) every expression of the configuration uses.
func (c *config) references() map[string]bool {
	refs := map[string]bool{}
	for _, f := range c.files {
		hclsyntax.VisitAll(f.Body.(*hclsyntax.Body), func(n hclsyntax.Node) hcl.Diagnostics {
			if e, ok := n.(hclsyntax.Expression); ok {
				for _, tr := range e.Variables() {
					root := tr.RootName()
					if len(tr) > 1 {
						if a, ok := tr[1].(hcl.TraverseAttr); ok {
							refs[root+"."+a.Name] = true
							continue
						}
					}
					refs[root] = true
				}
			}
			return nil
		})
	}
	return refs
}

// evaluated is a configuration evaluated with one set of variable values.
type evaluated struct {
	*config
	vars   map[string]cty.Value
	local  map[string]cty.Value
	errors []string
}

// project is the project number the data source google_project returns.
const projectNumber = "123456789012"

// evaluate evaluates c with vars (the other variables take their defaults).
func evaluate(t *testing.T, c *config, vars map[string]cty.Value) *evaluated {
	t.Helper()
	e := &evaluated{config: c, vars: map[string]cty.Value{}, local: map[string]cty.Value{}}
	for name, v := range c.variables {
		switch val, ok := vars[name]; {
		case ok:
			e.vars[name] = val
		case v.def != cty.NilVal:
			e.vars[name] = v.def
		default:
			t.Fatalf("variable %s has no default and the test gives it no value", name)
		}
	}
	for name := range vars {
		if c.variables[name] == nil {
			t.Fatalf("the test sets variable %s, which %s does not declare", name, c.dir)
		}
	}
	for _, r := range c.resources {
		r.instances = nil
	}
	// Passes until nothing changes: a value that is unknown in one pass
	// (it depends on something not yet evaluated) is known in a later one.
	for pass := 0; pass < 12; pass++ {
		e.errors = nil
		before := e.fingerprint()
		for name, expr := range c.locals {
			v, diags := expr.Value(e.ctx(nil))
			if diags.HasErrors() {
				e.errors = append(e.errors, fmt.Sprintf("local.%s: %v", name, diags))
				v = cty.DynamicVal
			}
			e.local[name] = v
		}
		for _, r := range c.resources {
			e.evalResource(r)
		}
		if pass > 0 && e.fingerprint() == before {
			break
		}
	}
	return e
}

func (e *evaluated) fingerprint() string {
	var b strings.Builder
	keys := make([]string, 0, len(e.local))
	for k := range e.local {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%#v;", k, e.local[k])
	}
	for _, r := range e.resources {
		fmt.Fprintf(&b, "%s=%#v;", r.addr(), r.instances)
	}
	return b.String()
}

// ctx is the evaluation context: var, local, data, every resource, and the
// extra variables (each, dynamic block iterators).
func (e *evaluated) ctx(extra map[string]cty.Value) *hcl.EvalContext {
	vars := map[string]cty.Value{
		"var":   objectOrEmpty(e.vars),
		"local": objectOrEmpty(e.local),
		"data": cty.ObjectVal(map[string]cty.Value{
			"google_project": cty.ObjectVal(map[string]cty.Value{
				"this": cty.ObjectVal(map[string]cty.Value{"number": cty.StringVal(projectNumber)}),
			}),
		}),
	}
	byType := map[string]map[string]cty.Value{}
	for _, r := range e.resources {
		if r.instances == nil {
			continue
		}
		if byType[r.typ] == nil {
			byType[r.typ] = map[string]cty.Value{}
		}
		if _, single := r.instances[""]; single && !r.hasForEach() {
			byType[r.typ][r.name] = r.instances[""]
		} else {
			byType[r.typ][r.name] = objectOrEmpty(r.instances)
		}
	}
	for typ, m := range byType {
		vars[typ] = cty.ObjectVal(m)
	}
	for k, v := range extra {
		vars[k] = v
	}
	return &hcl.EvalContext{Variables: vars, Functions: functions}
}

func (r *resource) hasForEach() bool {
	_, ok := r.block.Body.Attributes["for_each"]
	return ok
}

func objectOrEmpty(m map[string]cty.Value) cty.Value {
	if len(m) == 0 {
		return cty.EmptyObjectVal
	}
	return cty.ObjectVal(m)
}

func (e *evaluated) evalResource(r *resource) {
	if _, ok := r.block.Body.Attributes["count"]; ok {
		e.errors = append(e.errors, r.addr()+": count is not supported by this test's evaluator; use for_each")
		return
	}
	fe, ok := r.block.Body.Attributes["for_each"]
	if !ok {
		r.instances = map[string]cty.Value{"": e.instance(r, nil)}
		return
	}
	v, diags := fe.Expr.Value(e.ctx(nil))
	if diags.HasErrors() || !v.IsWhollyKnown() {
		if diags.HasErrors() {
			e.errors = append(e.errors, fmt.Sprintf("%s: for_each: %v", r.addr(), diags))
		}
		return
	}
	inst := map[string]cty.Value{}
	for it := v.ElementIterator(); it.Next(); {
		k, val := it.Element()
		if v.Type().IsSetType() {
			k = val
		}
		each := cty.ObjectVal(map[string]cty.Value{"key": k, "value": val})
		inst[k.AsString()] = e.instance(r, map[string]cty.Value{"each": each})
	}
	r.instances = inst
}

// instance evaluates one resource instance and adds its computed attributes.
func (e *evaluated) instance(r *resource, extra map[string]cty.Value) cty.Value {
	attrs := e.body(r.addr(), r.block.Body, extra)
	str := func(name string) string {
		if v, ok := attrs[name]; ok && v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
			return v.AsString()
		}
		return ""
	}
	project := str("project")
	set := func(name, value string) {
		if value != "" && !strings.Contains(value, "<unknown>") {
			attrs[name] = cty.StringVal(value)
		}
	}
	known := func(parts ...string) string {
		for _, p := range parts {
			if p == "" {
				return "<unknown>"
			}
		}
		return strings.Join(parts, "")
	}
	switch r.typ {
	case "google_pubsub_topic":
		set("id", known("projects/", project, "/topics/", str("name")))
	case "google_pubsub_subscription":
		set("id", known("projects/", project, "/subscriptions/", str("name")))
	case "google_service_account":
		email := known(str("account_id"), "@", project, ".iam.gserviceaccount.com")
		set("email", email)
		set("member", known("serviceAccount:", email))
		set("name", known("projects/", project, "/serviceAccounts/", email))
		set("id", known("projects/", project, "/serviceAccounts/", email))
	case "google_cloud_run_v2_service":
		set("uri", known("https://", str("name"), "-", projectNumber, ".", str("location"), ".run.app"))
		set("id", known("projects/", project, "/locations/", str("location"), "/services/", str("name")))
	case "google_secret_manager_secret":
		set("id", known("projects/", project, "/secrets/", str("secret_id")))
		set("name", known("projects/", projectNumber, "/secrets/", str("secret_id")))
	case "google_secret_manager_secret_version":
		set("version", "1")
		set("id", known(str("secret"), "/versions/1"))
	case "google_project_iam_custom_role":
		set("id", known("projects/", project, "/roles/", str("role_id")))
		set("name", known("projects/", project, "/roles/", str("role_id")))
	case "google_storage_bucket":
		set("id", str("name"))
		set("url", known("gs://", str("name")))
	case "google_artifact_registry_repository":
		set("id", known("projects/", project, "/locations/", str("location"), "/repositories/", str("repository_id")))
		set("name", str("repository_id"))
	case "google_monitoring_notification_channel":
		set("id", known("projects/", project, "/notificationChannels/", r.name))
		set("name", known("projects/", project, "/notificationChannels/", r.name))
	}
	return objectOrEmpty(attrs)
}

// body evaluates the attributes and blocks of a body. Blocks become lists
// of objects under their type; dynamic blocks are expanded; lifecycle,
// depends_on and for_each are left out.
func (e *evaluated) body(where string, b *hclsyntax.Body, extra map[string]cty.Value) map[string]cty.Value {
	out := map[string]cty.Value{}
	for name, a := range b.Attributes {
		if name == "for_each" || name == "depends_on" {
			continue
		}
		v, diags := a.Expr.Value(e.ctx(extra))
		if diags.HasErrors() {
			e.errors = append(e.errors, fmt.Sprintf("%s.%s: %v", where, name, diags))
			v = cty.DynamicVal
		}
		out[name] = v
	}
	blocks := map[string][]cty.Value{}
	for _, blk := range b.Blocks {
		switch blk.Type {
		case "lifecycle":
			continue
		case "dynamic":
			typ := blk.Labels[0]
			iter := typ
			if a, ok := blk.Body.Attributes["iterator"]; ok {
				iter = hcl.ExprAsKeyword(a.Expr)
			}
			fe, diags := blk.Body.Attributes["for_each"].Expr.Value(e.ctx(extra))
			if diags.HasErrors() || !fe.IsWhollyKnown() {
				if diags.HasErrors() {
					e.errors = append(e.errors, fmt.Sprintf("%s: dynamic %s: %v", where, typ, diags))
				}
				continue
			}
			var content *hclsyntax.Block
			for _, c := range blk.Body.Blocks {
				if c.Type == "content" {
					content = c
				}
			}
			for it := fe.ElementIterator(); it.Next(); {
				k, v := it.Element()
				sub := map[string]cty.Value{}
				for n, x := range extra {
					sub[n] = x
				}
				sub[iter] = cty.ObjectVal(map[string]cty.Value{"key": k, "value": v})
				blocks[typ] = append(blocks[typ], objectOrEmpty(e.body(where+"."+typ, content.Body, sub)))
			}
		default:
			blocks[blk.Type] = append(blocks[blk.Type], objectOrEmpty(e.body(where+"."+blk.Type, blk.Body, extra)))
		}
	}
	for typ, vs := range blocks {
		out[typ] = cty.TupleVal(vs)
	}
	return out
}

// functions are the Terraform functions the module may use.
var functions = map[string]function.Function{
	"base64encode": function.New(&function.Spec{
		Params: []function.Parameter{{Name: "s", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(base64.StdEncoding.EncodeToString([]byte(args[0].AsString()))), nil
		},
	}),
	"basename":   pathFunc(path.Base),
	"dirname":    pathFunc(path.Dir),
	"coalesce":   stdlib.CoalesceFunc,
	"concat":     stdlib.ConcatFunc,
	"contains":   stdlib.ContainsFunc,
	"distinct":   stdlib.DistinctFunc,
	"flatten":    stdlib.FlattenFunc,
	"format":     stdlib.FormatFunc,
	"jsonencode": stdlib.JSONEncodeFunc,
	"keys":       stdlib.KeysFunc,
	"length":     stdlib.LengthFunc,
	"lower":      stdlib.LowerFunc,
	"merge":      stdlib.MergeFunc,
	"setproduct": stdlib.SetProductFunc,
	"toset":      stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
	"tostring":   stdlib.MakeToFunc(cty.String),
	"values":     stdlib.ValuesFunc,
	"file": function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			b, err := os.ReadFile(args[0].AsString())
			if err != nil {
				return cty.NilVal, err
			}
			return cty.StringVal(string(b)), nil
		},
	}),
}

func pathFunc(f func(string) string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(f(args[0].AsString())), nil
		},
	})
}

// get follows a path of attribute names and (for blocks) indexes into v:
// get(v, "template", 0, "timeout"). A missing step gives cty.NilVal.
func get(v cty.Value, steps ...any) cty.Value {
	for _, s := range steps {
		if v == cty.NilVal || v.IsNull() || !v.IsKnown() {
			return cty.NilVal
		}
		switch s := s.(type) {
		case string:
			ty := v.Type()
			switch {
			case ty.IsObjectType():
				if !ty.HasAttribute(s) {
					return cty.NilVal
				}
				v = v.GetAttr(s)
			case ty.IsMapType():
				k := cty.StringVal(s)
				if !v.HasIndex(k).True() {
					return cty.NilVal
				}
				v = v.Index(k)
			default:
				return cty.NilVal
			}
		case int:
			if !v.CanIterateElements() || v.LengthInt() <= s {
				return cty.NilVal
			}
			v = v.Index(cty.NumberIntVal(int64(s)))
		}
	}
	return v
}

// str is get for a known string ("" otherwise).
func str(v cty.Value, steps ...any) string {
	v = get(v, steps...)
	if v == cty.NilVal || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return ""
	}
	return v.AsString()
}

// num is get for a known whole number (-1 otherwise).
func num(v cty.Value, steps ...any) int64 {
	v = get(v, steps...)
	if v == cty.NilVal || v.IsNull() || !v.IsKnown() || v.Type() != cty.Number {
		return -1
	}
	n, _ := v.AsBigFloat().Int64()
	return n
}

// list is get for the elements of a list, tuple or set.
func list(v cty.Value, steps ...any) []cty.Value {
	v = get(v, steps...)
	if v == cty.NilVal || v.IsNull() || !v.IsKnown() || !v.CanIterateElements() {
		return nil
	}
	var out []cty.Value
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e)
	}
	return out
}

// resource returns the resource TYPE.NAME of the configuration.
func (e *evaluated) resource(t *testing.T, typ, name string) *resource {
	t.Helper()
	for _, r := range e.resources {
		if r.typ == typ && r.name == name {
			return r
		}
	}
	t.Fatalf("no resource %s.%s in %s", typ, name, e.dir)
	return nil
}

// ofType returns every resource of a type.
func (e *evaluated) ofType(typ string) []*resource {
	var out []*resource
	for _, r := range e.resources {
		if r.typ == typ {
			out = append(out, r)
		}
	}
	return out
}
