package fstrust

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nobody is the uid files are given to by the tests that need another
// owner (they need root to chown, and skip otherwise).
const nobody = 65534

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
}

func mkdir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func wantRefusal(t *testing.T, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, ErrUntrusted) {
		t.Fatalf("error %v, want a refusal (ErrUntrusted)", err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("refusal %q lacks %q", err, p)
		}
	}
}

func TestEnsureDirCreatesPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "state")
	if err := EnsureDir("state directory", path); err != nil {
		t.Fatalf("EnsureDir: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("created with mode %04o, want no group or other access", perm)
	}
	if err := EnsureDir("state directory", path); err != nil {
		t.Errorf("EnsureDir of an existing good directory: %v", err)
	}
}

func TestCheckDirRefusals(t *testing.T) {
	root := t.TempDir()
	good := mkdir(t, filepath.Join(root, "good"), 0o700)
	if err := CheckDir("state directory", good); err != nil {
		t.Errorf("good directory refused: %v", err)
	}
	if err := CheckDir("state directory", mkdir(t, filepath.Join(root, "readable"), 0o755)); err != nil {
		t.Errorf("0755 directory refused: %v", err)
	}
	world := mkdir(t, filepath.Join(root, "world"), 0o777)
	wantRefusal(t, CheckDir("state directory", world), "state directory "+world, "writable by group or others", "0777")
	group := mkdir(t, filepath.Join(root, "group"), 0o770)
	wantRefusal(t, CheckDir("state directory", group), "writable by group or others")
	// A sticky world-writable directory is refused as the state directory
	// itself (others can create files in it) ...
	wantRefusal(t, CheckDir("state directory", mkdir(t, filepath.Join(root, "tmp"), os.ModeSticky|0o777)), "writable")
	// ... but accepted as a parent (as /tmp): nobody can move our
	// directory out of it.
	sub := mkdir(t, filepath.Join(root, "tmp", "state"), 0o700)
	if err := CheckDir("state directory", sub); err != nil {
		t.Errorf("directory under a sticky parent refused: %v", err)
	}
	// A non-sticky writable parent is refused.
	under := mkdir(t, filepath.Join(world, "state"), 0o700)
	wantRefusal(t, CheckDir("state directory", under), "parent", world)

	link := filepath.Join(root, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, CheckDir("state directory", link), "symbolic link")

	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir("state directory", file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as directory: %v", err)
	}
	if err := EnsureDir("state directory", filepath.Join(file, "x")); err == nil {
		t.Error("EnsureDir under a file succeeded")
	}
}

func TestCheckDirOtherOwner(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	theirs := mkdir(t, filepath.Join(root, "theirs"), 0o700)
	if err := os.Chown(theirs, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, CheckDir("state directory", theirs), "owned by uid 65534")
	// Their directory as a parent of ours: they could swap ours out.
	if err := os.Chown(theirs, 0, 0); err != nil {
		t.Fatal(err)
	}
	ours := mkdir(t, filepath.Join(theirs, "state"), 0o700)
	if err := os.Chown(theirs, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, CheckDir("state directory", ours), "parent", "owned by uid 65534")
}

func TestOpenFileRefusals(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A planted symlink is not followed: the target is not truncated.
	link := filepath.Join(dir, "site.lock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, err := OpenFile("lock", link, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600, 0o022)
	wantRefusal(t, err, "lock "+link, "symbolic link")
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Errorf("symlink target changed to %q", b)
	}

	// A FIFO is refused at once instead of blocking the open.
	fifo := filepath.Join(dir, "key")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := OpenFile("key file", fifo, os.O_RDONLY, 0, 0o077)
		done <- err
	}()
	select {
	case err := <-done:
		wantRefusal(t, err, "not a regular file", "a FIFO")
	case <-time.After(10 * time.Second):
		t.Fatal("opening a FIFO blocked")
	}

	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o622); err != nil {
		t.Fatal(err)
	}
	_, err = OpenFile("journal", loose, os.O_RDONLY, 0, 0o022)
	wantRefusal(t, err, "mode 0622", "may write")
	if err := os.Chmod(loose, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = OpenFile("key file", loose, os.O_RDONLY, 0, 0o077)
	wantRefusal(t, err, "mode 0640", "may read")
	f, err := OpenFile("journal", loose, os.O_RDONLY, 0, 0o022)
	if err != nil {
		t.Fatalf("0640 journal refused: %v", err)
	}
	f.Close()

	_, err = OpenFile("journal", dir, os.O_RDONLY, 0, 0o022)
	wantRefusal(t, err, "not a regular file", "a directory")

	if _, err := OpenFile("journal", filepath.Join(dir, "missing"), os.O_RDONLY, 0, 0o022); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	created := filepath.Join(dir, "new")
	f, err = OpenFile("lock", created, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600, 0o022)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	f.Close()
}

func TestOpenFileOtherOwner(t *testing.T) {
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "site.json")
	if err := os.WriteFile(path, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	_, err := OpenFile("journal", path, os.O_RDONLY, 0, 0o022)
	wantRefusal(t, err, "journal "+path, "owned by uid 65534")
}

func TestCheckSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckSocket("status socket", path); err != nil {
		t.Errorf("private socket refused: %v", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, CheckSocket("status socket", path), "status socket "+path, "others may connect")
	file := filepath.Join(dir, "f.sock")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, CheckSocket("status socket", file), "not a socket")
	if err := CheckSocket("status socket", filepath.Join(dir, "missing")); err != nil {
		t.Errorf("missing socket: %v, want nil (connect reports it)", err)
	}
}
