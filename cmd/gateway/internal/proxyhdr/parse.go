package proxyhdr

import (
	"fmt"
	"net"
	"net/netip"
)

// parse reads the trusted list: CIDRs or single addresses.
func parse(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("proxy_protocol.trusted: %q is not an address or a CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// netipOf is the IP of a TCP address, IPv4-mapped addresses unmapped.
func netipOf(a net.Addr) (netip.Addr, error) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		ap, err := netip.ParseAddrPort(a.String())
		return ap.Addr().Unmap(), err
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Addr{}, fmt.Errorf("bad address %v", a)
	}
	return ip.Unmap(), nil
}
