// Command oci-image builds a container image without a container engine: it carries out the final
// stage of a Dockerfile (FROM, ARG, COPY/ADD, USER, ENTRYPOINT, CMD, LABEL, ENV, EXPOSE, WORKDIR) on
// directories prepared beforehand, and writes the result as an OCI image archive that
// `ctr images import` and `skopeo copy oci-archive:` read.
//
// It exists so that the image a local cluster runs is built from the same Dockerfile users build with
// Docker: the base image and every earlier stage are given as directories (`--base NAME=DIR`,
// `--stage NAME=DIR`), and the build fails when the Dockerfile names a base that was not given, or
// asks for anything that needs a running container (RUN). Layers are reproducible: sorted entries,
// owned by root unless `--owner` says otherwise, and a fixed modification time.
//
//	oci-image build --dockerfile Dockerfile --base gcr.io/distroless/cc-debian12:nonroot=DIR \
//	  --stage builder=DIR --tag ghcr.io/ppio/ppio-gpu-operator:0.1.0 --output image.oci.tar
//	oci-image config image.oci.tar   # prints the image's config (user, entrypoint, labels, ...)
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:])
	case "config":
		err = printConfig(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "oci-image: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: oci-image build --dockerfile FILE --tag REF --output FILE [--base NAME=DIR] [--stage NAME=DIR] [--context DIR] [--build-arg K=V] [--owner PATH=UID:GID]\n       oci-image config FILE")
	os.Exit(2)
}

// pairs is a repeatable flag of KEY=VALUE.
type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(map[string]string(p)) }
func (p pairs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", s)
	}
	p[k] = v
	return nil
}

func build(args []string) error {
	fl := flag.NewFlagSet("build", flag.ExitOnError)
	dockerfile := fl.String("dockerfile", "Dockerfile", "the Dockerfile whose final stage is built")
	contextDir := fl.String("context", ".", "the build context: sources of COPY/ADD without --from")
	tag := fl.String("tag", "", "the image's name, recorded in the archive for ctr and skopeo")
	output := fl.String("output", "", "the OCI archive to write")
	epoch := fl.Int64("source-date-epoch", 0, "modification time of every file in the layers (Unix seconds)")
	bases, baseConfigs, stages, buildArgs, owners := pairs{}, pairs{}, pairs{}, pairs{}, pairs{}
	fl.Var(bases, "base", "NAME=DIR: the root filesystem of the base image NAME (repeatable)")
	fl.Var(baseConfigs, "base-config", "NAME=FILE: the config the base image NAME gives its children (user, working directory, environment), as JSON (repeatable)")
	fl.Var(stages, "stage", "NAME=DIR: the file system of the earlier stage NAME, for COPY --from (repeatable)")
	fl.Var(buildArgs, "build-arg", "K=V: a build argument (repeatable)")
	fl.Var(owners, "owner", "PATH=UID:GID: owner of PATH in the image, default 0:0 (repeatable)")
	_ = fl.Parse(args)
	if *tag == "" || *output == "" {
		return errors.New("--tag and --output are required")
	}
	text, err := os.ReadFile(*dockerfile)
	if err != nil {
		return err
	}
	stage, err := finalStage(string(text), buildArgs)
	if err != nil {
		return fmt.Errorf("%s: %w", *dockerfile, err)
	}
	inherited := v1.Config{}
	if file, ok := baseConfigs[stage.base]; ok {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &inherited); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	config := stage.apply(inherited)
	own, err := parseOwners(owners)
	if err != nil {
		return err
	}
	mtime := time.Unix(*epoch, 0).UTC()

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var layers []v1.Layer
	if stage.base != "scratch" {
		dir, ok := bases[stage.base]
		if !ok {
			return fmt.Errorf("the Dockerfile's final stage is FROM %s, but no --base gives that image's root filesystem", stage.base)
		}
		layer, err := layerOf([]entry{{src: dir, dst: "/"}}, own, mtime)
		if err != nil {
			return fmt.Errorf("base %s: %w", stage.base, err)
		}
		layers = append(layers, layer)
	}
	for _, c := range stage.copies {
		root := *contextDir
		if c.from != "" {
			dir, ok := stages[c.from]
			if !ok {
				return fmt.Errorf("COPY --from=%s, but no --stage gives that stage's file system", c.from)
			}
			root = dir
		}
		var entries []entry
		for _, src := range c.srcs {
			entries = append(entries, entry{src: filepath.Join(root, filepath.FromSlash(src)), dst: c.dst, many: len(c.srcs) > 1})
		}
		layer, err := layerOf(entries, own, mtime)
		if err != nil {
			return fmt.Errorf("%s: %w", c.line, err)
		}
		layers = append(layers, layer)
	}
	img, err = mutate.AppendLayers(img, layers...)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: mtime}
	cfg.Config = config
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	return writeArchive(img, *tag, *output)
}

// stage is what the final stage of a Dockerfile asks for: its base, its files, and the changes it
// makes to the config it inherits from the base.
type stage struct {
	base    string
	copies  []copyOp
	changes []func(*v1.Config)
}

// apply makes the stage's config changes, in order, on the config inherited from its base.
func (s *stage) apply(base v1.Config) v1.Config {
	c := *base.DeepCopy()
	if len(c.Env) == 0 {
		c.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	for _, change := range s.changes {
		change(&c)
	}
	return c
}

type copyOp struct {
	line string
	from string
	srcs []string
	dst  string
}

// finalStage reads the instructions of the Dockerfile's last FROM, with build arguments and ARG
// defaults substituted. Instructions that would need a running container are refused.
func finalStage(text string, buildArgs map[string]string) (*stage, error) {
	var lines []string
	var cur strings.Builder
	for _, raw := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(raw)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	// ARGs before the first FROM are global: they may be used in FROM lines only.
	global := map[string]string{}
	last := -1
	for i, l := range lines {
		if strings.EqualFold(instruction(l), "FROM") {
			last = i
		}
	}
	if last < 0 {
		return nil, errors.New("no FROM")
	}
	for _, l := range lines {
		if strings.EqualFold(instruction(l), "FROM") {
			break
		}
		if strings.EqualFold(instruction(l), "ARG") {
			k, v := argOf(rest(l), buildArgs)
			global[k] = v
		}
	}
	fromWords := strings.Fields(expand(rest(lines[last]), global))
	if len(fromWords) == 0 {
		return nil, errors.New("FROM names no image")
	}
	s := &stage{base: fromWords[0]}
	vars := map[string]string{}
	cmdInStage := false
	for _, l := range lines[last+1:] {
		args := rest(l)
		if strings.Contains(args, "${") && (strings.Contains(args, ":-") || strings.Contains(args, ":+")) {
			return nil, fmt.Errorf("%s: ${NAME:-default} and ${NAME:+value} are not supported", l)
		}
		switch strings.ToUpper(instruction(l)) {
		case "ARG":
			k, v := argOf(args, buildArgs)
			if _, isGlobal := global[k]; isGlobal && !strings.Contains(args, "=") {
				v = global[k]
			}
			vars[k] = v
		case "LABEL":
			kv, err := keyValues(expand(args, vars))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", l, err)
			}
			s.changes = append(s.changes, func(c *v1.Config) {
				if c.Labels == nil {
					c.Labels = map[string]string{}
				}
				for k, v := range kv {
					c.Labels[k] = v
				}
			})
		case "ENV":
			kv, err := keyValues(expand(args, vars))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", l, err)
			}
			s.changes = append(s.changes, func(c *v1.Config) {
				for _, k := range sortedKeys(kv) {
					c.Env = setEnv(c.Env, k, kv[k])
				}
			})
		case "USER":
			user := expand(args, vars)
			s.changes = append(s.changes, func(c *v1.Config) { c.User = user })
		case "WORKDIR":
			dir := expand(args, vars)
			s.changes = append(s.changes, func(c *v1.Config) { c.WorkingDir = dir })
		case "EXPOSE":
			ports := strings.Fields(expand(args, vars))
			s.changes = append(s.changes, func(c *v1.Config) {
				if c.ExposedPorts == nil {
					c.ExposedPorts = map[string]struct{}{}
				}
				for _, p := range ports {
					if !strings.Contains(p, "/") {
						p += "/tcp"
					}
					c.ExposedPorts[p] = struct{}{}
				}
			})
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(args), &argv); err != nil {
				return nil, fmt.Errorf("%s: only the JSON (exec) form is supported: %w", l, err)
			}
			if strings.EqualFold(instruction(l), "ENTRYPOINT") {
				// As in Docker, a new entrypoint drops the command inherited from the base, but not
				// one this stage set before it.
				keepCmd := cmdInStage
				s.changes = append(s.changes, func(c *v1.Config) {
					c.Entrypoint = argv
					if !keepCmd {
						c.Cmd = nil
					}
				})
			} else {
				cmdInStage = true
				s.changes = append(s.changes, func(c *v1.Config) { c.Cmd = argv })
			}
		case "ADD":
			// ADD also unpacks archives and fetches URLs; only a plain file or directory is supported.
			words := strings.Fields(expand(args, vars))
			for _, w := range words {
				if strings.Contains(w, "://") || strings.HasSuffix(w, ".tar") || strings.Contains(w, ".tar.") || strings.HasSuffix(w, ".tgz") {
					return nil, fmt.Errorf("%s: ADD of an archive or a URL is not supported", l)
				}
			}
			fallthrough
		case "COPY":
			words := strings.Fields(expand(args, vars))
			op := copyOp{line: l}
			for len(words) > 0 && strings.HasPrefix(words[0], "--") {
				if v, ok := strings.CutPrefix(words[0], "--from="); ok {
					op.from = v
				} else {
					return nil, fmt.Errorf("%s: option %s is not supported", l, words[0])
				}
				words = words[1:]
			}
			if len(words) < 2 {
				return nil, fmt.Errorf("%s: needs a source and a destination", l)
			}
			op.srcs, op.dst = words[:len(words)-1], words[len(words)-1]
			s.copies = append(s.copies, op)
		default:
			return nil, fmt.Errorf("%s: not supported in the final stage (it would need a running container)", l)
		}
	}
	return s, nil
}

func instruction(line string) string {
	word, _, _ := strings.Cut(strings.ReplaceAll(line, "\t", " "), " ")
	return word
}

func rest(line string) string {
	_, r, _ := strings.Cut(strings.ReplaceAll(line, "\t", " "), " ")
	return strings.TrimSpace(r)
}

func argOf(args string, buildArgs map[string]string) (string, string) {
	k, v, _ := strings.Cut(args, "=")
	if given, ok := buildArgs[k]; ok {
		v = given
	}
	return k, strings.Trim(v, `"`)
}

// expand substitutes ${NAME} and $NAME.
func expand(s string, vars map[string]string) string {
	return os.Expand(s, func(k string) string { return vars[k] })
}

// keyValues parses `k=v k2="v 2"` as LABEL and ENV write them.
func keyValues(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, after, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not KEY=VALUE", s)
		}
		if strings.HasPrefix(after, `"`) {
			end := strings.Index(after[1:], `"`)
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote in %q", s)
			}
			out[strings.Trim(k, `"`)] = after[1 : end+1]
			s = after[end+2:]
			continue
		}
		v, r, _ := strings.Cut(after, " ")
		out[strings.Trim(k, `"`)] = v
		s = r
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if strings.HasPrefix(e, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

type owner struct{ uid, gid int }

func parseOwners(p pairs) (map[string]owner, error) {
	out := map[string]owner{}
	for pth, ids := range p {
		u, g, ok := strings.Cut(ids, ":")
		uid, err1 := strconv.Atoi(u)
		gid, err2 := strconv.Atoi(g)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("--owner %s=%s: not UID:GID", pth, ids)
		}
		out[path.Clean("/"+pth)] = owner{uid, gid}
	}
	return out, nil
}

// entry is one source put into a layer at dst. A directory source at "/" (a base) is its contents.
type entry struct {
	src, dst string
	many     bool
}

// layerOf writes the entries into one reproducible tar layer.
func layerOf(entries []entry, owners map[string]owner, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	written := map[string]bool{}
	for _, e := range entries {
		info, err := os.Lstat(e.src)
		if err != nil {
			return nil, err
		}
		dst := path.Clean("/" + e.dst)
		if info.IsDir() {
			// A directory's contents go under the destination, as COPY does.
			if err := addTree(tw, e.src, dst, owners, mtime, written); err != nil {
				return nil, err
			}
			continue
		}
		if e.many || strings.HasSuffix(e.dst, "/") {
			dst = path.Join(dst, filepath.Base(e.src))
		}
		if err := addParents(tw, dst, owners, mtime, written); err != nil {
			return nil, err
		}
		if err := addFile(tw, e.src, dst, info, owners, mtime); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

func addTree(tw *tar.Writer, root, dst string, owners map[string]owner, mtime time.Time, written map[string]bool) error {
	var paths []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	if err := addParents(tw, dst, owners, mtime, written); err != nil {
		return err
	}
	for _, p := range paths {
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		if target == "/" || written[target] {
			continue
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := addFile(tw, p, target, info, owners, mtime); err != nil {
			return err
		}
		written[target] = true
	}
	return nil
}

func addParents(tw *tar.Writer, dst string, owners map[string]owner, mtime time.Time, written map[string]bool) error {
	var parents []string
	for d := path.Dir(dst); d != "/" && d != "."; d = path.Dir(d) {
		parents = append([]string{d}, parents...)
	}
	for _, d := range parents {
		if written[d] {
			continue
		}
		o := owners[d]
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, Uid: o.uid, Gid: o.gid, ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		written[d] = true
	}
	return nil
}

func addFile(tw *tar.Writer, src, dst string, info fs.FileInfo, owners map[string]owner, mtime time.Time) error {
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		link = target
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	hdr.Name = strings.TrimPrefix(dst, "/")
	if info.IsDir() {
		hdr.Name += "/"
	}
	o := owners[dst]
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = o.uid, o.gid, "", ""
	hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mtime, time.Time{}, time.Time{}
	hdr.Format = tar.FormatPAX
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

// writeArchive writes the image as an OCI image layout in a tar file, named for ctr
// (io.containerd.image.name) and for the OCI tools (org.opencontainers.image.ref.name).
func writeArchive(img v1.Image, tag, output string) error {
	dir, err := os.MkdirTemp(filepath.Dir(output), ".oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	refName := tag
	if i := strings.LastIndex(tag, ":"); i > strings.LastIndex(tag, "/") {
		refName = tag[i+1:]
	}
	err = p.AppendImage(img,
		layout.WithAnnotations(map[string]string{
			"io.containerd.image.name":          tag,
			"org.opencontainers.image.ref.name": refName,
		}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}),
	)
	if err != nil {
		return err
	}
	return tarDir(dir, output)
}

func tarDir(dir, output string) error {
	tmp := output + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(out)
	var paths []string
	err = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		out.Close()
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			out.Close()
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if err := addFile(tw, p, "/"+filepath.ToSlash(rel), info, nil, time.Unix(0, 0).UTC()); err != nil {
			out.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, output)
}

// printConfig prints the config of the image in an OCI archive written by build.
func printConfig(args []string) error {
	if len(args) != 1 {
		usage()
	}
	dir, err := os.MkdirTemp("", "oci-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := untar(args[0], dir); err != nil {
		return err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return err
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	if len(manifest.Manifests) != 1 {
		return fmt.Errorf("%s holds %d images, expected one", args[0], len(manifest.Manifests))
	}
	img, err := idx.Image(manifest.Manifests[0].Digest)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	return out.Encode(map[string]any{
		"name":         manifest.Manifests[0].Annotations["io.containerd.image.name"],
		"architecture": cfg.Architecture,
		"os":           cfg.OS,
		"config":       cfg.Config,
	})
}

func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(path.Clean("/"+hdr.Name)))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			w, err := os.Create(target)
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, tr); err != nil {
				w.Close()
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
		}
	}
}
