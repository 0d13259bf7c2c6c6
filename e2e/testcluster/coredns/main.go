// Command coredns is CoreDNS v1.14.6 with the plugins a Kubernetes cluster
// DNS uses (kubeadm's default Corefile) plus a few cheap ones for tests. It
// is the upstream coredns.go with a shorter plugin list, the customisation
// CoreDNS documents (plugin.cfg): the plugin order stays the upstream one
// (core/dnsserver/zdirectives.go); only plugins imported here can be used in
// a Corefile. Leaving out the cloud back-ends (route53, azure, clouddns, …)
// keeps the build small.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/whoami"
)

func main() {
	coremain.Run()
}
