package configs

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/viper"
)

// TestListDefaultsMatchReference ties the defaults of keys inside
// http.sites[] and sql[] entries (listDefaults, which viper's own defaults
// cannot reach) to the commented reference configs/gateway.yaml, whose
// example entries show "every other key with its default": each default
// must be shown there, with the same value. Change one without the other
// and this fails, naming the key.
func TestListDefaultsMatchReference(t *testing.T) {
	ref, err := os.ReadFile("gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		list    string // the listDefaults key
		prefix  string // what comments the example entry out
		first   string // the example entry's first line, once uncommented
		section string // the line that follows the example
	}{
		{"http.sites", "  #", "- hosts:", "  sites: []"},
		{"sql", "#", "- name:", "sql: []"},
	} {
		t.Run(tc.list, func(t *testing.T) {
			documented := exampleEntry(t, string(ref), tc.prefix, tc.first, tc.section)
			var keys []string
			for k := range listDefaults[tc.list] {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, key := range keys {
				want := fmt.Sprint(listDefaults[tc.list][key])
				got, ok := lookupPath(documented, strings.Split(key, "."))
				if !ok {
					t.Errorf("%s[].%s defaults to %q but gateway.yaml does not show it", tc.list, key, want)
					continue
				}
				if g := fmt.Sprint(got); g != want {
					t.Errorf("%s[].%s: gateway.yaml shows %q, the default is %q", tc.list, key, g, want)
				}
			}
		})
	}
}

// exampleEntry finds, in the reference, the commented example entry that
// starts with first and ends before section, uncomments it and parses it.
func exampleEntry(t *testing.T, ref, prefix, first, section string) map[string]any {
	t.Helper()
	lines := strings.Split(ref, "\n")
	end := -1
	for i, l := range lines {
		if l == section {
			end = i
			break
		}
	}
	if end < 0 {
		t.Fatalf("gateway.yaml has no line %q", section)
	}
	start := -1
	for i := end - 1; i >= 0 && strings.HasPrefix(lines[i], prefix); i-- {
		if strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(lines[i], prefix)), first) {
			start = i
		}
	}
	if start < 0 {
		t.Fatalf("no commented example starting %q before %q", first, section)
	}
	entryIndent := strings.Index(strings.TrimPrefix(lines[start], prefix), first)
	var doc strings.Builder
	doc.WriteString("entries:\n")
	for _, l := range lines[start:end] {
		body := strings.TrimPrefix(l, prefix)
		if strings.TrimSpace(body) != "" && !strings.HasPrefix(body, strings.Repeat(" ", entryIndent)) {
			break // prose after the example, at a lesser indent
		}
		doc.WriteString(body)
		doc.WriteString("\n")
	}
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(strings.NewReader(doc.String())); err != nil {
		t.Fatalf("the example entry does not parse once uncommented: %v\n%s", err, doc.String())
	}
	items, _ := v.Get("entries").([]any)
	if len(items) != 1 {
		t.Fatalf("example parsed as %d entries, want 1", len(items))
	}
	m, ok := items[0].(map[string]any)
	if !ok {
		t.Fatalf("example entry is %T, want a mapping", items[0])
	}
	return m
}

func lookupPath(m map[string]any, path []string) (any, bool) {
	v, ok := m[path[0]]
	if !ok || len(path) == 1 {
		return v, ok
	}
	child, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	return lookupPath(child, path[1:])
}
