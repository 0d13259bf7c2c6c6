//go:build tools

// Package testcluster pins the commands that build.sh compiles. The blank
// imports keep k8s.io/kubernetes (kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet, kube-proxy, kubectl), go.etcd.io/etcd/server/v3 and
// everything they need in go.mod/go.sum; the build tag keeps this file out of any
// ordinary build.
package testcluster

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
