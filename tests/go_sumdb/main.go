// A real Go checksum database (golang.org/x/mod/sumdb) in front of a GOPROXY-layout directory,
// for depot's tests: the go.sum lines of every module zip under -dir are computed at start
// (so a zip changed afterwards no longer matches what the database signed).
//
//	sumdb -dir DIR -name NAME    prints "PORT <n>" and "VKEY <verifier key>", then serves
//	    /sumdb/NAME/supported, /sumdb/NAME/{latest,lookup/…,tile/…} and DIR's files at /.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	dir := flag.String("dir", ".", "GOPROXY-layout directory")
	name := flag.String("name", "sum.test", "checksum database name")
	flag.Parse()
	sums, err := hashAll(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, *name)
	if err != nil {
		panic(err)
	}
	gosum := func(path, vers string) ([]byte, error) {
		if lines, ok := sums[path+"@"+vers]; ok {
			return []byte(lines), nil
		}
		return nil, fmt.Errorf("%s@%s: not found", path, vers)
	}
	db := sumdb.NewServer(sumdb.NewTestServer(skey, gosum))
	prefix := "/sumdb/" + *name
	mux := http.NewServeMux()
	mux.HandleFunc(prefix+"/supported", func(w http.ResponseWriter, r *http.Request) {})
	mux.Handle(prefix+"/", http.StripPrefix(prefix, db))
	mux.Handle("/", http.FileServer(http.Dir(*dir)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("PORT %d\nVKEY %s\n", ln.Addr().(*net.TCPAddr).Port, vkey)
	os.Stdout.Sync()
	panic(http.Serve(ln, mux))
}

// hashAll computes the go.sum lines of every <module>/@v/<version>.zip (and its .mod) under dir.
func hashAll(dir string) (map[string]string, error) {
	sums := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || !strings.HasSuffix(p, ".zip") || !strings.Contains(p, "/@v/") {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		escMod, file, _ := strings.Cut(filepath.ToSlash(rel), "/@v/")
		path, err := module.UnescapePath(escMod)
		if err != nil {
			return err
		}
		vers, err := module.UnescapeVersion(strings.TrimSuffix(file, ".zip"))
		if err != nil {
			return err
		}
		zipHash, err := dirhash.HashZip(p, dirhash.Hash1)
		if err != nil {
			return err
		}
		mod, err := os.ReadFile(strings.TrimSuffix(p, ".zip") + ".mod")
		if err != nil {
			return err
		}
		modHash, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(string(mod))), nil
		})
		if err != nil {
			return err
		}
		sums[path+"@"+vers] = fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", path, vers, zipHash, path, vers, modHash)
		return nil
	})
	return sums, err
}
