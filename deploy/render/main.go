// Command render renders the shunt Helm chart the way `helm template` does, for machines
// without a helm binary (this repository's CI). It uses the engine Helm itself is built on,
// Go text/template with the sprig function library, and re-implements the small part of
// Helm around it that the chart relies on: values.yaml coalesced with -f files and --set,
// values.schema.json validation, .Release/.Chart/.Capabilities/.Template, include, tpl,
// required, fail, toYaml/fromYaml/toJson/fromJson, lookup (empty, as in `helm template`),
// manifest splitting, install-order sorting and the "# Source:" headers.
//
// Build offline against Debian's Go packages (golang-go, golang-github-masterminds-sprig-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= go build -o /tmp/shunt-render ./deploy/render
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var valueFiles, sets, setStrings multiFlag
	chartDir := flag.String("chart", "", "chart directory (required)")
	release := flag.String("name", "shunt", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.31.0", "Kubernetes version for .Capabilities and the chart's kubeVersion")
	showNotes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	asJSON := flag.Bool("json", false, "print the manifests as a JSON array of {source, object} (for tests)")
	flag.Var(&valueFiles, "f", "values file (YAML or JSON); repeatable, later files win")
	flag.Var(&sets, "set", "key.path=value (typed like helm: true/false/null/integers); repeatable")
	flag.Var(&setStrings, "set-string", "key.path=value (always a string); repeatable")
	flag.Parse()
	if *chartDir == "" {
		fatalf("--chart is required")
	}
	out, err := render(options{
		chartDir: *chartDir, release: *release, namespace: *namespace, kubeVersion: *kubeVersion,
		valueFiles: valueFiles, sets: sets, setStrings: setStrings, notes: *showNotes, json: *asJSON,
	})
	if err != nil {
		fatalf("%v", err)
	}
	os.Stdout.WriteString(out)
}

func fatalf(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "Error: "+format+"\n", a...)
	os.Exit(1)
}

type options struct {
	chartDir, release, namespace, kubeVersion string
	valueFiles, sets, setStrings              []string
	notes, json                               bool
}

// chartMeta mirrors the Chart.yaml fields Helm exposes as .Chart (capitalised).
type chartMeta struct {
	APIVersion  string   `yaml:"apiVersion"`
	Name        string   `yaml:"name"`
	Version     string   `yaml:"version"`
	AppVersion  string   `yaml:"appVersion"`
	Description string   `yaml:"description"`
	Type        string   `yaml:"type"`
	KubeVersion string   `yaml:"kubeVersion"`
	Keywords    []string `yaml:"keywords"`
	Home        string   `yaml:"home"`
}

type kubeVersionInfo struct {
	Version, Major, Minor, GitVersion string
}

func (k kubeVersionInfo) String() string { return k.Version }

type apiVersions []string

// Has is what templates call as .Capabilities.APIVersions.Has.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type capabilities struct {
	KubeVersion kubeVersionInfo
	APIVersions apiVersions
}

func render(o options) (string, error) {
	meta, err := readChart(o.chartDir)
	if err != nil {
		return "", err
	}
	kv, err := semver.NewVersion(o.kubeVersion)
	if err != nil {
		return "", fmt.Errorf("--kube-version %q: %v", o.kubeVersion, err)
	}
	if meta.KubeVersion != "" {
		c, err := semver.NewConstraint(meta.KubeVersion)
		if err != nil {
			return "", fmt.Errorf("Chart.yaml kubeVersion %q: %v", meta.KubeVersion, err)
		}
		if !c.Check(kv) {
			return "", fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", meta.KubeVersion, o.kubeVersion)
		}
	}
	values, err := loadValues(o)
	if err != nil {
		return "", err
	}
	if err := validateAgainstSchema(o.chartDir, values); err != nil {
		return "", err
	}

	caps := capabilities{
		KubeVersion: kubeVersionInfo{
			Version: "v" + kv.String(), Major: strconv.FormatUint(kv.Major(), 10),
			Minor: strconv.FormatUint(kv.Minor(), 10), GitVersion: "v" + kv.String(),
		},
		APIVersions: apiVersions{"v1", "apps/v1", "rbac.authorization.k8s.io/v1"},
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": o.release, "Namespace": o.namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"APIVersion": meta.APIVersion, "Name": meta.Name, "Version": meta.Version,
			"AppVersion": meta.AppVersion, "Description": meta.Description, "Type": meta.Type,
			"KubeVersion": meta.KubeVersion, "Keywords": meta.Keywords, "Home": meta.Home,
		},
		"Capabilities": caps,
	}

	files, err := templateFiles(o.chartDir)
	if err != nil {
		return "", err
	}
	root := template.New("gotpl")
	// As in Helm (non-strict): a missing key renders as the zero value, and "<no value>"
	// left in the output is blanked afterwards.
	root.Option("missingkey=zero")
	root.Funcs(funcMap(root))
	for _, f := range files {
		body, err := os.ReadFile(filepath.Join(o.chartDir, filepath.FromSlash(f)))
		if err != nil {
			return "", err
		}
		name := path.Join(meta.Name, f)
		if _, err := root.New(name).Parse(string(body)); err != nil {
			return "", fmt.Errorf("parse error in %s: %v", name, err)
		}
	}

	rendered := map[string]string{}
	for _, f := range files {
		base := path.Base(f)
		if strings.HasPrefix(base, "_") {
			continue
		}
		isNotes := base == "NOTES.txt"
		if isNotes != o.notes {
			continue
		}
		name := path.Join(meta.Name, f)
		scope := shallowCopy(top)
		scope["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(meta.Name, "templates")}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, scope); err != nil {
			return "", fmt.Errorf("render error in %s: %v", name, cleanExecError(err))
		}
		rendered[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	if o.notes {
		var b strings.Builder
		for _, v := range rendered {
			b.WriteString(v)
		}
		return b.String(), nil
	}
	return joinManifests(rendered, o.json)
}

func readChart(dir string) (chartMeta, error) {
	var meta chartMeta
	raw, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return meta, fmt.Errorf("not a chart directory: %v", err)
	}
	if err := yaml.UnmarshalStrict(raw, &meta); err != nil {
		return meta, fmt.Errorf("Chart.yaml: %v", err)
	}
	if meta.APIVersion != "v2" || meta.Name == "" || meta.Version == "" {
		return meta, errors.New("Chart.yaml: apiVersion v2, name and version are required")
	}
	if _, err := semver.StrictNewVersion(meta.Version); err != nil {
		return meta, fmt.Errorf("Chart.yaml: version %q is not SemVer 2: %v", meta.Version, err)
	}
	return meta, nil
}

// templateFiles lists templates/** relative to the chart, sorted, as slash paths.
func templateFiles(chartDir string) ([]string, error) {
	var out []string
	base := filepath.Join(chartDir, "templates")
	err := filepath.Walk(base, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(chartDir, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	sort.Strings(out)
	return out, err
}

func funcMap(root *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	// Helm removes these so a rendering cannot depend on the machine it runs on.
	delete(f, "env")
	delete(f, "expandenv")
	includedNames := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		// Helm bounds recursion the same way.
		if includedNames[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		defer func() { includedNames[name]-- }()
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		if _, err := t.New("tpl").Parse(text); err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, "tpl", data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	f["toYaml"] = func(v interface{}) string {
		s, err := toYAML(v)
		if err != nil {
			return "" // Helm swallows the error the same way.
		}
		return strings.TrimSuffix(s, "\n")
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yamlToJSONValue([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	// `helm template` has no cluster to look things up in: lookup returns an empty map.
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

// toYAML is sigs.k8s.io/yaml.Marshal, which Helm's toYaml uses: through JSON, so field
// names follow JSON tags and map keys come out sorted.
func toYAML(v interface{}) (string, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	var generic interface{}
	if err := yaml.Unmarshal(j, &generic); err != nil {
		return "", err
	}
	out, err := yaml.Marshal(generic)
	return string(out), err
}

// yamlToJSONValue decodes YAML the way Helm reads values (sigs.k8s.io/yaml): via JSON, so
// numbers become float64 and maps have string keys.
func yamlToJSONValue(data []byte, target interface{}) error {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return err
	}
	j, err := json.Marshal(jsonCompatible(raw))
	if err != nil {
		return err
	}
	return json.Unmarshal(j, target)
}

func jsonCompatible(v interface{}) interface{} {
	switch x := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(x))
		for k, val := range x {
			m[fmt.Sprint(k)] = jsonCompatible(val)
		}
		return m
	case []interface{}:
		out := make([]interface{}, len(x))
		for i, val := range x {
			out[i] = jsonCompatible(val)
		}
		return out
	default:
		return v
	}
}

func loadValues(o options) (map[string]interface{}, error) {
	defaults := map[string]interface{}{}
	raw, err := os.ReadFile(filepath.Join(o.chartDir, "values.yaml"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if err := yamlToJSONValue(raw, &defaults); err != nil {
		return nil, fmt.Errorf("values.yaml: %v", err)
	}
	user := map[string]interface{}{}
	for _, f := range o.valueFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		current := map[string]interface{}{}
		if err := yamlToJSONValue(raw, &current); err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		user = mergeMaps(user, current)
	}
	for _, s := range o.sets {
		if err := applySet(user, s, false); err != nil {
			return nil, err
		}
	}
	for _, s := range o.setStrings {
		if err := applySet(user, s, true); err != nil {
			return nil, err
		}
	}
	return coalesce(user, defaults), nil
}

// mergeMaps merges b into a (b wins), recursing into maps, as Helm merges -f files.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := shallowCopy(a)
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if am, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(am, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce fills user values with the chart's defaults; a user null deletes the key, as in Helm.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := shallowCopy(user)
	for k, dv := range defaults {
		uv, present := out[k]
		if !present {
			out[k] = dv
			continue
		}
		if uv == nil {
			delete(out, k)
			continue
		}
		um, uok := uv.(map[string]interface{})
		dm, dok := dv.(map[string]interface{})
		if uok && dok {
			out[k] = coalesce(um, dm)
		}
	}
	for k, v := range out {
		if v == nil {
			delete(out, k)
		}
	}
	return out
}

var setIndex = regexp.MustCompile(`^([^\[\]]+)\[(\d+)\]$`)

// applySet implements the common part of Helm's --set syntax: dotted paths, list indexes
// (a[0].b), {x,y} lists, and helm's typing of scalars (unless asString).
func applySet(into map[string]interface{}, expr string, asString bool) error {
	eq := strings.Index(expr, "=")
	if eq <= 0 {
		return fmt.Errorf("--set %q: expected key=value", expr)
	}
	key, val := expr[:eq], expr[eq+1:]
	var value interface{} = typedScalar(val, asString)
	if strings.HasPrefix(val, "{") && strings.HasSuffix(val, "}") {
		items := []interface{}{}
		if inner := val[1 : len(val)-1]; inner != "" {
			for _, it := range strings.Split(inner, ",") {
				items = append(items, typedScalar(it, asString))
			}
		}
		value = items
	}
	parts := strings.Split(key, ".")
	cur := into
	for i, p := range parts {
		last := i == len(parts)-1
		if m := setIndex.FindStringSubmatch(p); m != nil {
			idx, _ := strconv.Atoi(m[2])
			if idx > 1000 {
				return fmt.Errorf("--set %q: index %d too large", expr, idx)
			}
			list, _ := cur[m[1]].([]interface{})
			for len(list) <= idx {
				list = append(list, nil)
			}
			if last {
				list[idx] = value
			} else {
				next, ok := list[idx].(map[string]interface{})
				if !ok {
					next = map[string]interface{}{}
					list[idx] = next
				}
				cur[m[1]] = list
				cur = next
				continue
			}
			cur[m[1]] = list
			continue
		}
		if last {
			cur[p] = value
			break
		}
		next, ok := cur[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			cur[p] = next
		}
		cur = next
	}
	return nil
}

func typedScalar(s string, asString bool) interface{} {
	if asString {
		return s
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	// Helm keeps leading-zero numbers as strings and makes the rest int64.
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && (s == "0" || !strings.HasPrefix(s, "0")) {
		return n
	}
	return s
}

func shallowCopy(m map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

var execErrorPrefix = regexp.MustCompile(`^template: [^:]+:\d+:\d+: executing "[^"]+" at <[^>]*>: error calling [a-z]+: `)

// cleanExecError strips text/template's location chain when the cause is a message the chart
// wrote itself (fail/required), so users read the chart's words first, as with helm.
func cleanExecError(err error) error {
	msg := err.Error()
	for {
		loc := execErrorPrefix.FindStringIndex(msg)
		if loc == nil {
			return errors.New(msg)
		}
		msg = msg[loc[1]:]
	}
}

// Helm's InstallOrder (pkg/releaseutil/kind_sorter.go); kinds not listed go last, by name.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
	"PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
	"PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
	"ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList",
	"RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController",
	"ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
	"IngressClass", "Ingress", "APIService",
}

type manifest struct {
	source, content, kind, name string
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// joinManifests splits every rendered file into documents, drops empty ones, sorts them in
// Helm's install order and prints them as `helm template` does.
func joinManifests(rendered map[string]string, asJSON bool) (string, error) {
	var all []manifest
	for source, text := range rendered {
		for _, doc := range docSeparator.Split(text, -1) {
			doc = strings.TrimSpace(doc)
			if doc == "" || onlyComments(doc) {
				continue
			}
			var head struct {
				Kind     string `yaml:"kind"`
				Metadata struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return "", fmt.Errorf("YAML parse error on %s: %v", source, err)
			}
			if head.Kind == "" {
				return "", fmt.Errorf("%s: rendered a document without kind:\n%s", source, doc)
			}
			all = append(all, manifest{source: source, content: doc, kind: head.Kind, name: head.Metadata.Name})
		}
	}
	rank := func(kind string) int {
		for i, k := range installOrder {
			if k == kind {
				return i
			}
		}
		return len(installOrder)
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if ra, rb := rank(a.kind), rank(b.kind); ra != rb {
			return ra < rb
		}
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		if a.name != b.name {
			return a.name < b.name
		}
		return a.source < b.source
	})
	if asJSON {
		type entry struct {
			Source string      `json:"source"`
			Object interface{} `json:"object"`
		}
		entries := make([]entry, 0, len(all))
		for _, m := range all {
			var obj interface{}
			if err := yaml.Unmarshal([]byte(m.content), &obj); err != nil {
				return "", err
			}
			entries = append(entries, entry{Source: m.source, Object: jsonCompatible(obj)})
		}
		b, err := json.MarshalIndent(entries, "", "  ")
		return string(b) + "\n", err
	}
	var out strings.Builder
	for _, m := range all {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.source, m.content)
	}
	return out.String(), nil
}

func onlyComments(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}
