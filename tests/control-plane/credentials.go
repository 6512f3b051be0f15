package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Credentials are the files and secrets the API server and its clients share. They live in the data
// directory and are reused when the control plane restarts on it, so existing kubeconfigs stay valid.
type Credentials struct {
	CACertFile            string
	CACertPEM             []byte
	ServingCertFile       string
	ServingKeyFile        string
	ServiceAccountKeyFile string
	TokenFile             string
	AdminToken            string
}

func loadOrCreateCredentials(dir string) (*Credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &Credentials{
		CACertFile:            filepath.Join(dir, "ca.crt"),
		ServingCertFile:       filepath.Join(dir, "serving.crt"),
		ServingKeyFile:        filepath.Join(dir, "serving.key"),
		ServiceAccountKeyFile: filepath.Join(dir, "service-account.key"),
		TokenFile:             filepath.Join(dir, "tokens.csv"),
	}
	adminTokenFile := filepath.Join(dir, "admin.token")

	if !exists(c.CACertFile) || !exists(c.ServingCertFile) || !exists(c.ServingKeyFile) {
		if err := writeServingPKI(c); err != nil {
			return nil, fmt.Errorf("serving certificate: %w", err)
		}
	}
	if !exists(c.ServiceAccountKeyFile) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		block := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}
		if err := os.WriteFile(c.ServiceAccountKeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
	}
	if !exists(adminTokenFile) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		if err := os.WriteFile(adminTokenFile, []byte(hex.EncodeToString(raw)), 0o600); err != nil {
			return nil, err
		}
	}
	token, err := os.ReadFile(adminTokenFile)
	if err != nil {
		return nil, err
	}
	c.AdminToken = string(token)
	// Static token file format: token,user,uid,"group1,group2".
	line := fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", c.AdminToken)
	if err := os.WriteFile(c.TokenFile, []byte(line), 0o600); err != nil {
		return nil, err
	}
	c.CACertPEM, err = os.ReadFile(c.CACertFile)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// writeServingPKI makes a CA and a serving certificate for 127.0.0.1 and localhost signed by it, so
// clients verify the server for real instead of skipping TLS verification.
func writeServingPKI(c *Credentials) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kube-control-plane-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	servingTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTemplate, caCert, &servingKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	servingKeyDER, err := x509.MarshalECPrivateKey(servingKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.CACertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.ServingCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: servingDER}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(c.ServingKeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: servingKeyDER}), 0o600)
}

func writeKubeconfig(path, server string, c *Credentials) error {
	// JSON is valid YAML, so kubectl and every client library read this as a kubeconfig.
	config := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"current-context": "kube-control-plane",
		"clusters": []any{map[string]any{
			"name": "kube-control-plane",
			"cluster": map[string]any{
				"server":                     server,
				"certificate-authority-data": base64.StdEncoding.EncodeToString(c.CACertPEM),
			},
		}},
		"users": []any{map[string]any{
			"name": "admin",
			"user": map[string]any{"token": c.AdminToken},
		}},
		"contexts": []any{map[string]any{
			"name":    "kube-control-plane",
			"context": map[string]any{"cluster": "kube-control-plane", "user": "admin", "namespace": "default"},
		}},
	}
	data, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Ports are the loopback ports of one control plane. They are remembered in the data directory so a
// restart serves at the same address and clients configured before it reconnect.
type Ports struct {
	APIServer  int `json:"apiserver"`
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
}

func loadOrChoosePorts(dataDir string, apiserverPort int) (Ports, error) {
	path := filepath.Join(dataDir, "ports.json")
	var p Ports
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &p); err != nil {
			return p, fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return p, err
	}
	if apiserverPort != 0 {
		p.APIServer = apiserverPort
	}
	for _, port := range []*int{&p.APIServer, &p.EtcdClient, &p.EtcdPeer} {
		if *port == 0 {
			free, err := freePort()
			if err != nil {
				return p, err
			}
			*port = free
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return p, err
	}
	return p, os.WriteFile(path, data, 0o600)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
