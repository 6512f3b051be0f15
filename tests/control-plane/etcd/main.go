// Command etcd is etcd itself (its etcdmain, with all of etcd's own flags), built from the etcd server
// module this Go module already pins for the control plane's embedded etcd, so the one-node cluster
// (hack/node) runs its etcd as a process of its own, as clusters do.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
