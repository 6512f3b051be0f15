//go:build !kube1_30

package main

import (
	"context"
	"time"

	"k8s.io/kubernetes/pkg/controller/garbagecollector"
)

// runGarbageCollector runs the collector's workers until ctx ends. Newer releases bound the wait for
// the collector's first informer sync; kube-controller-manager passes 30s.
func runGarbageCollector(ctx context.Context, gc *garbagecollector.GarbageCollector, workers int) {
	gc.Run(ctx, workers, 30*time.Second)
}
