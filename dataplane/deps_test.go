package dataplane_test

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"
)

// TestEngineMakesNoSystemCalls: the engine reaches the operating system
// only through the interfaces of io.go, so that it runs in memory in
// tests and any capture, transport or injector can drive it. The system
// calls live in afpacket, udp and rawip; neither the engine nor a package
// of this module it imports may import syscall or golang.org/x/sys/unix
// (nor, through them, those packages).
func TestEngineMakesNoSystemCalls(t *testing.T) {
	const module = "tunnel-agent"
	forbidden := map[string]bool{"syscall": true, "golang.org/x/sys/unix": true}
	seen := map[string]bool{}
	var walk func(path, dir string)
	walk = func(path, dir string) {
		if seen[path] {
			return
		}
		seen[path] = true
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			if forbidden[imp] {
				t.Errorf("%s imports %s", path, imp)
			}
			if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
				walk(imp, filepath.Join("..", filepath.FromSlash(rel)))
			}
		}
	}
	walk(module+"/dataplane", ".")
	if len(seen) < 2 {
		t.Fatalf("walked only %v: the engine's imports were not read", seen)
	}
}
