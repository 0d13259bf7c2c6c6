//go:build tools

// Package testcluster pins the commands that build.sh compiles. The blank
// imports keep k8s.io/kubernetes, go.etcd.io/etcd/server/v3 and everything
// they need in go.mod/go.sum; the build tag keeps this file out of any
// ordinary build.
package testcluster

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
