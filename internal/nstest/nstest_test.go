package nstest

import (
	"os"
	"testing"
)

func TestNewAndCleanup(t *testing.T) {
	var path string
	t.Run("inner", func(t *testing.T) {
		ns := New(t, "tanst")
		path = ns.Path
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("namespace file: %v", err)
		}
		links, err := ns.NL.LinkList()
		if err != nil || len(links) != 1 {
			t.Fatalf("links in fresh namespace = %v, %v; want only lo", links, err)
		}
	})
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still there after cleanup: %v", path, err)
	}
}
