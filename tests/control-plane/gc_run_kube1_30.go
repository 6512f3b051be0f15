//go:build kube1_30

package main

import (
	"context"

	"k8s.io/kubernetes/pkg/controller/garbagecollector"
)

// runGarbageCollector runs the collector's workers until ctx ends. In 1.30 Run takes no timeout for
// its first informer sync: it waits for it as long as ctx lasts.
func runGarbageCollector(ctx context.Context, gc *garbagecollector.GarbageCollector, workers int) {
	gc.Run(ctx, workers)
}
