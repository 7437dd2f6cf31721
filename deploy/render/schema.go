package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// validateAgainstSchema checks the coalesced values against the chart's values.schema.json,
// as Helm does before rendering. It implements the JSON Schema (draft-07) keywords the
// chart's schema uses: type, enum, const, properties, required, additionalProperties,
// items, minimum, maximum, minLength, pattern and local $ref; any other keyword is an
// error, so the schema cannot silently use something this checker ignores.
func validateAgainstSchema(chartDir string, values map[string]interface{}) error {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var schema map[string]interface{}
	if err := json.Unmarshal(raw, &schema); err != nil {
		return fmt.Errorf("values.schema.json: %v", err)
	}
	v := &validator{root: schema}
	v.check(schema, values, "")
	if len(v.problems) > 0 {
		sort.Strings(v.problems)
		return fmt.Errorf("values don't meet the specifications of the schema(s) in the following chart(s):\nshunt:\n- %s",
			strings.Join(v.problems, "\n- "))
	}
	return nil
}

type validator struct {
	root     map[string]interface{}
	problems []string
}

var knownKeywords = map[string]bool{
	"$schema": true, "$id": true, "title": true, "description": true, "definitions": true, "default": true,
	"type": true, "enum": true, "const": true, "properties": true, "required": true,
	"additionalProperties": true, "items": true, "minimum": true, "maximum": true,
	"minLength": true, "pattern": true, "$ref": true,
}

func (v *validator) fail(at, format string, a ...interface{}) {
	if at == "" {
		at = "(root)"
	}
	v.problems = append(v.problems, at+": "+fmt.Sprintf(format, a...))
}

func (v *validator) resolve(ref string) map[string]interface{} {
	if !strings.HasPrefix(ref, "#/") {
		panic("values.schema.json: only local $ref are supported, got " + ref)
	}
	var cur interface{} = v.root
	for _, part := range strings.Split(ref[2:], "/") {
		m, ok := cur.(map[string]interface{})
		if !ok {
			panic("values.schema.json: dangling $ref " + ref)
		}
		cur = m[part]
	}
	m, ok := cur.(map[string]interface{})
	if !ok {
		panic("values.schema.json: dangling $ref " + ref)
	}
	return m
}

func (v *validator) check(schema map[string]interface{}, value interface{}, at string) {
	for k := range schema {
		if !knownKeywords[k] {
			panic(fmt.Sprintf("values.schema.json: keyword %q at %s is not supported by this renderer", k, at))
		}
	}
	if ref, ok := schema["$ref"].(string); ok {
		v.check(v.resolve(ref), value, at)
		return
	}
	if t, ok := schema["type"].(string); ok && !hasType(value, t) {
		v.fail(at, "Invalid type. Expected: %s, given: %s", t, typeName(value))
		return
	}
	if enum, ok := schema["enum"].([]interface{}); ok {
		found := false
		for _, e := range enum {
			if equalJSON(e, value) {
				found = true
			}
		}
		if !found {
			allowed := make([]string, len(enum))
			for i, e := range enum {
				b, _ := json.Marshal(e)
				allowed[i] = string(b)
			}
			v.fail(at, "must be one of the following: %s", strings.Join(allowed, ", "))
		}
	}
	if c, ok := schema["const"]; ok && !equalJSON(c, value) {
		v.fail(at, "does not match: %v", c)
	}
	switch x := value.(type) {
	case map[string]interface{}:
		props, _ := schema["properties"].(map[string]interface{})
		if req, ok := schema["required"].([]interface{}); ok {
			for _, r := range req {
				if _, present := x[r.(string)]; !present {
					v.fail(at, "%s is required", r)
				}
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			child := joinPath(at, k)
			if ps, ok := props[k].(map[string]interface{}); ok {
				v.check(ps, x[k], child)
				continue
			}
			switch ap := schema["additionalProperties"].(type) {
			case bool:
				if !ap {
					v.fail(at, "Additional property %s is not allowed", k)
				}
			case map[string]interface{}:
				v.check(ap, x[k], child)
			}
		}
	case []interface{}:
		if items, ok := schema["items"].(map[string]interface{}); ok {
			for i, it := range x {
				v.check(items, it, fmt.Sprintf("%s.%d", at, i))
			}
		}
	case string:
		if n, ok := schema["minLength"].(float64); ok && float64(len([]rune(x))) < n {
			v.fail(at, "String length must be greater than or equal to %v", n)
		}
		if p, ok := schema["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(x) {
			v.fail(at, "Does not match pattern '%s'", p)
		}
	}
	if f, isNum := toFloat(value); isNum {
		if n, ok := schema["minimum"].(float64); ok && f < n {
			v.fail(at, "Must be greater than or equal to %v", n)
		}
		if n, ok := schema["maximum"].(float64); ok && f > n {
			v.fail(at, "Must be less than or equal to %v", n)
		}
	}
}

func joinPath(at, k string) string {
	if at == "" {
		return k
	}
	return at + "." + k
}

func hasType(value interface{}, t string) bool {
	switch t {
	case "object":
		_, ok := value.(map[string]interface{})
		return ok
	case "array":
		_, ok := value.([]interface{})
		return ok
	case "string":
		_, ok := value.(string)
		return ok
	case "boolean":
		_, ok := value.(bool)
		return ok
	case "number":
		return isNumber(value)
	case "integer":
		f, ok := toFloat(value)
		return ok && f == math.Trunc(f)
	case "null":
		return value == nil
	}
	panic("values.schema.json: unknown type " + t)
}

func isNumber(v interface{}) bool { _, ok := toFloat(v); return ok }

func toFloat(v interface{}) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	}
	return 0, false
}

func typeName(v interface{}) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]interface{}:
		return "object"
	case []interface{}:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	}
	if f, ok := toFloat(v); ok {
		if f == math.Trunc(f) {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

func equalJSON(a, b interface{}) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
