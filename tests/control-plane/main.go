// Command kube-control-plane runs a real, single-process Kubernetes control plane on loopback for the
// operator's integration tests and local demo:
//
//   - etcd, embedded, on a temporary data directory or on a given one (so a restart keeps the data);
//   - the real kube-apiserver (secure port, self-signed serving certificate, service-account signing keys
//     so TokenRequest works, RBAC, a static admin token in system:masters);
//   - the garbage-collector and namespace controllers of kube-controller-manager, so deleting an owner
//     cascades to its dependents and deleted namespaces really go away.
//
// It writes an admin kubeconfig, prints one line starting with "READY" when every part is serving, and
// stops cleanly on SIGTERM or SIGINT, removing a temporary data directory it made. It is a test fixture:
// it listens on 127.0.0.1 only and trusts whoever holds the admin token.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	cacheddiscovery "k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/version"
	"k8s.io/controller-manager/pkg/informerfactory"
	"k8s.io/klog/v2"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/pkg/controller/garbagecollector"
	namespacecontroller "k8s.io/kubernetes/pkg/controller/namespace"

	"go.etcd.io/etcd/server/v3/embed"
)

// gcSyncPeriod is how often the garbage collector rediscovers resources. kube-controller-manager uses
// 30s; tests install CRDs and expect cascading deletion soon after, so this is shorter.
const gcSyncPeriod = 3 * time.Second

// apiserverStopGrace is how long a stop waits for kube-apiserver to finish its own shutdown.
const apiserverStopGrace = 5 * time.Second

func main() {
	os.Exit(run())
}

func run() int {
	dataDir := flag.String("data-dir", "", "directory for etcd data, certificates and keys; reused across restarts (default: a temporary directory removed at exit)")
	kubeconfigPath := flag.String("kubeconfig", "", "where to write the admin kubeconfig (default: <data-dir>/admin.kubeconfig)")
	port := flag.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (default: the port used last time on this data directory, else a free one)")
	stopOnStdinEOF := flag.Bool("stop-on-stdin-eof", false, "stop, as on SIGTERM, when standard input closes (so a parent process that dies takes the control plane with it)")
	printVersion := flag.Bool("version", false, "print the Kubernetes release this control plane was built from, and exit")
	flag.Parse()
	if *printVersion {
		// The release stamped at build time, as kube-apiserver reports it at /version.
		fmt.Println(version.Get().GitVersion)
		return 0
	}

	temporary := *dataDir == ""
	if temporary {
		dir, err := os.MkdirTemp("", "kube-control-plane-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "cannot create a temporary data directory: %v\n", err)
			return 1
		}
		*dataDir = dir
	}
	cleanup := func() {
		if temporary {
			_ = os.RemoveAll(*dataDir)
		}
	}
	defer cleanup()

	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "cannot create data directory %s: %v\n", *dataDir, err)
		return 1
	}
	if *kubeconfigPath == "" {
		*kubeconfigPath = filepath.Join(*dataDir, "admin.kubeconfig")
	}

	ports, err := loadOrChoosePorts(*dataDir, *port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot choose ports: %v\n", err)
		return 1
	}
	creds, err := loadOrCreateCredentials(filepath.Join(*dataDir, "pki"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot prepare certificates and keys: %v\n", err)
		return 1
	}
	serverURL := "https://127.0.0.1:" + strconv.Itoa(ports.APIServer)
	if err := writeKubeconfig(*kubeconfigPath, serverURL, creds); err != nil {
		fmt.Fprintf(os.Stderr, "cannot write kubeconfig: %v\n", err)
		return 1
	}
	readyMarker := filepath.Join(*dataDir, "ready")
	_ = os.Remove(readyMarker)
	defer os.Remove(readyMarker)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *stopOnStdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			// The API server stops on its own signal handler, so signal the whole process.
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		}()
	}

	etcd, err := startEtcd(filepath.Join(*dataDir, "etcd"), ports)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot start etcd: %v\n", err)
		return 1
	}
	defer etcd.Close()

	// The API server runs through its own cobra command, exactly as the kube-apiserver binary does;
	// that command stops gracefully on SIGTERM/SIGINT by itself.
	apiserverDone := make(chan error, 1)
	go func() {
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(apiserverArgs(ports, creds, *dataDir))
		if code := cli.Run(cmd); code != 0 {
			apiserverDone <- fmt.Errorf("kube-apiserver exited with code %d", code)
			return
		}
		apiserverDone <- nil
	}()

	config := &rest.Config{
		Host:            serverURL,
		BearerToken:     creds.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: creds.CACertPEM},
		QPS:             200,
		Burst:           400,
	}
	var controllers sync.WaitGroup
	controllersCtx, stopControllers := context.WithCancel(ctx)
	defer func() {
		stopControllers()
		controllers.Wait()
	}()

	readyErr := make(chan error, 1)
	go func() { readyErr <- waitForAPIServer(controllersCtx, config) }()

	select {
	case err := <-apiserverDone:
		fmt.Fprintf(os.Stderr, "kube-apiserver stopped before it was ready: %v\n", err)
		return 1
	case err := <-etcd.Err():
		fmt.Fprintf(os.Stderr, "etcd failed: %v\n", err)
		return 1
	case err := <-readyErr:
		if err != nil {
			if ctx.Err() != nil {
				<-apiserverDone
				return 0
			}
			fmt.Fprintf(os.Stderr, "kube-apiserver did not become ready: %v\n", err)
			return 1
		}
	}

	if err := startControllers(controllersCtx, config, &controllers); err != nil {
		fmt.Fprintf(os.Stderr, "cannot start controllers: %v\n", err)
		return 1
	}

	if err := os.WriteFile(readyMarker, []byte(serverURL+"\n"), 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "cannot write ready marker: %v\n", err)
		return 1
	}
	fmt.Printf("READY server=%s kubeconfig=%s data-dir=%s\n", serverURL, *kubeconfigPath, *dataDir)

	select {
	case err := <-apiserverDone:
		stopControllers()
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "%v\n", err)
			return 1
		}
	case <-ctx.Done():
		// kube-apiserver drains open requests, watches included, for up to a minute. Clients of a
		// test control plane reconnect anyway, so give it a few seconds and then stop for good: the
		// process exit ends whatever is left.
		stopControllers()
		select {
		case <-apiserverDone:
		case <-time.After(apiserverStopGrace):
			fmt.Fprintf(os.Stderr, "kube-apiserver still draining after %s; stopping anyway\n", apiserverStopGrace)
		}
	case err := <-etcd.Err():
		fmt.Fprintf(os.Stderr, "etcd failed: %v\n", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "control plane stopped")
	return 0
}

func apiserverArgs(p Ports, c *Credentials, dataDir string) []string {
	return []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(p.EtcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(p.APIServer),
		"--cert-dir=" + filepath.Join(dataDir, "pki"),
		"--tls-cert-file=" + c.ServingCertFile,
		"--tls-private-key-file=" + c.ServingKeyFile,
		"--client-ca-file=" + c.CACertFile,
		"--token-auth-file=" + c.TokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.ServiceAccountKeyFile,
		"--service-account-signing-key-file=" + c.ServiceAccountKeyFile,
		// Room for a ClusterIP per mirror's Service when `SERVICES=1 make bench` keeps 10,000 of them.
		"--service-cluster-ip-range=10.0.0.0/16",
		"--allow-privileged=true",
		// ServiceAccount admission needs the service-account controller and pods that we never run.
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=0",
	}
}

func startEtcd(dir string, p Ports) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "control-plane"
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.EtcdClient))}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.EtcdPeer))}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("etcd was not ready within 60s")
	}
}

func waitForAPIServer(ctx context.Context, config *rest.Config) error {
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		// /readyz covers etcd, informers and RBAC bootstrap; the default namespace is created by a
		// post-start hook shortly after, and clients expect it.
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			if _, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 3 minutes (last error: %v)", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startControllers runs the garbage-collector and namespace controllers the way kube-controller-manager
// wires them, against the admin identity.
func startControllers(ctx context.Context, config *rest.Config, wg *sync.WaitGroup) error {
	kubeClient, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	metadataClient, err := metadata.NewForConfig(config)
	if err != nil {
		return err
	}
	discoveryClient, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		return err
	}
	restMapper := restmapper.NewDeferredDiscoveryRESTMapper(cacheddiscovery.NewMemCacheClient(discoveryClient))

	sharedInformers := informers.NewSharedInformerFactory(kubeClient, 0)
	metadataInformers := metadatainformer.NewSharedInformerFactory(metadataClient, 0)
	informersStarted := make(chan struct{})

	gc, err := garbagecollector.NewGarbageCollector(
		ctx, kubeClient, metadataClient, restMapper,
		garbagecollector.DefaultIgnoredResources(),
		informerfactory.NewInformerFactory(sharedInformers, metadataInformers),
		informersStarted,
	)
	if err != nil {
		return fmt.Errorf("garbage collector: %w", err)
	}
	namespaces := namespacecontroller.NewNamespaceController(
		ctx, kubeClient, metadataClient,
		kubeClient.Discovery().ServerPreferredNamespacedResources,
		sharedInformers.Core().V1().Namespaces(),
		5*time.Minute,
		v1.FinalizerKubernetes,
	)

	sharedInformers.Start(ctx.Done())
	metadataInformers.Start(ctx.Done())
	close(informersStarted)

	logger := klog.FromContext(ctx)
	for _, loop := range []func(){
		func() { runGarbageCollector(ctx, gc, 5) },
		func() { gc.Sync(ctx, discoveryClient, gcSyncPeriod) },
		func() { namespaces.Run(ctx, 5) },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop()
		}()
	}
	logger.Info("garbage-collector and namespace controllers started")
	return nil
}
