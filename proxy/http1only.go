package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"go.uber.org/zap"
)

// HTTP1OnlyStore keeps the names of the sites found to use Windows
// authentication (http2: auto, see http2.go), for which the gateway offers
// only HTTP/1.1, so that a restarted gateway does not have to find them
// again at the expense of a client.
//
// Load returns the names saved last; a store with nothing saved yet
// returns nil and no error. Save replaces what is stored with names, the
// complete set the Server knows (what Load gave plus what it found since),
// sorted and without duplicates; a store shared by several gateways may
// merge instead of replacing. The Server calls Load once, in New, and Save
// from a goroutine of its own after each change, one call at a time, never
// on a request's path. An error from either is logged and otherwise
// ignored: the names are an optimisation, the gateway works without them.
type HTTP1OnlyStore interface {
	Load() ([]string, error)
	Save(names []string) error
}

// HTTP1OnlyFile is an HTTP1OnlyStore in the JSON file it names:
//
//	{"names": ["ehr.clinic.example", "intranet.clinic.example"]}
//
// A missing file holds no names. Save writes a temporary file in the same
// directory (created, mode 0700, if missing) and renames it into place, so
// that a crash or a concurrent Load never sees half a file.
type HTTP1OnlyFile string

// http1OnlyFileData is the content of an HTTP1OnlyFile.
type http1OnlyFileData struct {
	Names []string `json:"names"`
}

// Load reads the names; a file that is not the JSON above is an error.
func (f HTTP1OnlyFile) Load() ([]string, error) {
	data, err := os.ReadFile(string(f))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d http1OnlyFileData
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%s: %w", string(f), err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the JSON object", string(f))
	}
	return d.Names, nil
}

// Save writes names to the file, replacing it.
func (f HTTP1OnlyFile) Save(names []string) error {
	if names == nil {
		names = []string{} // "names": [], not null
	}
	data, err := json.MarshalIndent(http1OnlyFileData{Names: names}, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	path := string(f)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".http1-only-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	// Synced before the rename: after a power cut the file is the old one
	// or the new one, never empty.
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// http1Names is the Server's set of HTTP/1.1-only site names (canonical
// hosts, wildcards as configured), loaded from its store in New and saved
// after each addition. It outlives reloads: a site rebuilt by a reload
// finds its names here.
type http1Names struct {
	store HTTP1OnlyStore // nil: kept in memory only
	log   *zap.Logger

	mu    sync.Mutex
	names map[string]bool

	saveMu sync.Mutex     // one Save at a time, each with the newest set
	saves  sync.WaitGroup // Saves in progress
}

// newHTTP1Names loads the names from store (nil: none). A store that
// cannot be read is logged and ignored.
func newHTTP1Names(store HTTP1OnlyStore, log *zap.Logger) *http1Names {
	n := &http1Names{store: store, log: log, names: map[string]bool{}}
	if store == nil {
		return n
	}
	loaded, err := store.Load()
	if err != nil {
		log.Warn("ignoring the saved http/1.1-only site names; they will be found again", zap.Error(err))
		return n
	}
	for _, name := range loaded {
		if name = canonicalHost(name); name != "" {
			n.names[name] = true
		}
	}
	if len(n.names) > 0 {
		log.Info("http/1.1-only site names loaded", zap.Strings("names", n.sorted()))
	}
	return n
}

// has reports whether any of hosts is in the set.
func (n *http1Names) has(hosts []string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range hosts {
		if n.names[canonicalHost(h)] {
			return true
		}
	}
	return false
}

// add puts hosts into the set and, when that changed it, saves the set in
// the background.
func (n *http1Names) add(hosts []string) {
	n.mu.Lock()
	changed := false
	for _, h := range hosts {
		if h = canonicalHost(h); h != "" && !n.names[h] {
			n.names[h] = true
			changed = true
		}
	}
	n.mu.Unlock()
	if !changed || n.store == nil {
		return
	}
	n.saves.Go(func() {
		n.saveMu.Lock()
		defer n.saveMu.Unlock()
		// The set is read under saveMu: the last Save to run writes
		// every name added before it started.
		n.mu.Lock()
		names := n.sorted()
		n.mu.Unlock()
		if err := n.store.Save(names); err != nil {
			n.log.Warn("saving the http/1.1-only site names", zap.Error(err))
		}
	})
}

// sorted lists the set; n.mu must be held (or the set not yet shared).
func (n *http1Names) sorted() []string {
	out := make([]string, 0, len(n.names))
	for name := range n.names {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// wait returns when the Saves started so far have ended.
func (n *http1Names) wait() { n.saves.Wait() }
