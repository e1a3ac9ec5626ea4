// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Traffic capture for enrolled pods without iptables (DESIGN §2). See bpf/README.md.
 *
 * Pod cgroup:  connect4/6 (outbound redirect to ztunnel's 127.0.0.1:15001 / [::1]:15001),
 *              sockops (records the original destination by client 4-tuple),
 *              getpeername4/6 (the app sees the original peer), bind4/6 (proxy ports guard).
 * Pod netns:   sk_lookup (inbound SYNs to ztunnel's 15006 / 15008 listeners, fail closed).
 * Proxy cgroup (optional): getsockopt (SO_ORIGINAL_DST), sockops (bypass for delivery sockets).
 *
 * Only UAPI context structs are touched, so the object needs no vmlinux.h and no CO-RE.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/socket.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "capture_abi.h"

#define SOL_IP 0
#define SOL_IPV6 41
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h */
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#define SK_PASS 1
#define SK_DROP 0

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Per-socket original destination, set by connect4/6 on the app's socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct zt_origin);
} sk_origin SEC(".maps");

/* Original destinations by {netns cookie, client ip, client port}; ztunnel takes (deletes). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ZT_MAX_ORIGINS);
	__type(key, struct zt_origin_key);
	__type(value, struct zt_origin);
} origins SEC(".maps");

/* The pod's own addresses by pod netns cookie (written by the agent). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZT_MAX_PODS);
	__type(key, __u64);
	__type(value, struct zt_pod_ips);
} pod_ips SEC(".maps");

/* Enrollment key -> netns cookie, so release() can clean pod_ips (user space only). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZT_MAX_PODS);
	__type(key, struct zt_pod_key);
	__type(value, __u64);
} pod_keys SEC(".maps");

/* Node-wide sources whose SYNs reach apps uncaptured (kubelet probes). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ZT_MAX_PROBE_SOURCES);
	__type(key, struct zt_addr);
	__type(value, __u8);
} probe_sources SEC(".maps");

/* 4-tuples of ztunnel's delivery connections: sk_lookup lets their SYNs through. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ZT_MAX_BYPASS);
	__type(key, struct zt_tuple);
	__type(value, __u8);
} bypass SEC(".maps");

/* ztunnel's in-pod inbound listeners by {pod ip, kind}. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, ZT_MAX_LISTENERS);
	__type(key, struct zt_listener_key);
	__type(value, __u64);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ZT_CTR_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline void addr_from_v4(struct zt_addr *a, __u32 ip4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0xffff);
	a->w[3] = ip4;
}

/* Keeps context loads where they are written: clang otherwise sinks them into branches as a
 * select between ctx offsets, and the verifier rejects loads through a modified ctx pointer. */
static __always_inline void pin6(__u32 *a, __u32 *b, __u32 *c, __u32 *d, __u32 *e, __u32 *f)
{
	barrier_var(*a);
	barrier_var(*b);
	barrier_var(*c);
	barrier_var(*d);
	barrier_var(*e);
	barrier_var(*f);
}

static __always_inline int addr_eq(const struct zt_addr *a, const struct zt_addr *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] &&
	       a->w[3] == b->w[3];
}

static __always_inline int addr_is_v4mapped(const struct zt_addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0xffff);
}

/* 127.0.0.0/8 (also v4-mapped) or ::1. */
static __always_inline int addr_is_loopback(const struct zt_addr *a)
{
	if (addr_is_v4mapped(a))
		return (bpf_ntohl(a->w[3]) >> 24) == 127;
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == 0 && a->w[3] == bpf_htonl(1);
}

static __always_inline int is_proxy_mark(__u32 mark)
{
	return mark == ZT_MARK_PROXY || mark == ZT_MARK_DELIVER;
}

static __always_inline int is_own_ip(__u64 netns_cookie, const struct zt_addr *dst)
{
	struct zt_pod_ips *ips = bpf_map_lookup_elem(&pod_ips, &netns_cookie);
	int i;

	if (!ips)
		return 0;
#pragma unroll
	for (i = 0; i < ZT_MAX_POD_IPS; i++) {
		if ((__u32)i < ips->count && addr_eq(&ips->ip[i], dst))
			return 1;
	}
	return 0;
}

/* Shared by connect4 and connect6: decides and records; the caller rewrites. 1 = redirect. */
static __always_inline int should_redirect(struct bpf_sock_addr *ctx, const struct zt_addr *dst,
					   __u16 port, __u8 family)
{
	struct bpf_sock *sk = ctx->sk;
	struct zt_origin *o;

	if (!sk)
		return 0;
	if (is_proxy_mark(sk->mark)) {
		count(ZT_CTR_CONNECT_SKIPPED_PROXY);
		return 0;
	}
	if (addr_is_loopback(dst) || is_own_ip(bpf_get_netns_cookie(ctx), dst)) {
		count(ZT_CTR_CONNECT_SKIPPED_LOCAL);
		return 0;
	}
	o = bpf_sk_storage_get(&sk_origin, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return 0; /* out of memory: leave the connect alone rather than lose the dst */
	o->ip = *dst;
	o->port = port;
	o->family = family;
	count(ZT_CTR_CONNECT_REDIRECTED);
	return 1;
}

/* MPTCP sockets would escape capture (the origin lives on the MPTCP socket, the handshake on a
 * subflow): refuse their connects (EPERM) so apps fall back to plain TCP sockets or fail. */
#define ZT_IPPROTO_MPTCP 262

SEC("cgroup/connect4")
int zt_connect4(struct bpf_sock_addr *ctx)
{
	struct zt_addr dst;

	if (ctx->protocol == ZT_IPPROTO_MPTCP)
		return 0;
	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	addr_from_v4(&dst, ctx->user_ip4);
	if (!should_redirect(ctx, &dst, bpf_ntohs((__u16)ctx->user_port), ZT_AF_INET))
		return 1;
	ctx->user_ip4 = bpf_htonl(0x7f000001);
	ctx->user_port = bpf_htons(ZT_PORT_OUTBOUND);
	return 1;
}

SEC("cgroup/connect6")
int zt_connect6(struct bpf_sock_addr *ctx)
{
	struct zt_addr dst;
	int mapped;

	if (ctx->protocol == ZT_IPPROTO_MPTCP)
		return 0;
	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	dst.w[0] = ctx->user_ip6[0];
	dst.w[1] = ctx->user_ip6[1];
	dst.w[2] = ctx->user_ip6[2];
	dst.w[3] = ctx->user_ip6[3];
	mapped = addr_is_v4mapped(&dst);
	if (!should_redirect(ctx, &dst, bpf_ntohs((__u16)ctx->user_port),
			     mapped ? ZT_AF_INET : ZT_AF_INET6))
		return 1;
	if (mapped) {
		/* ::ffff:127.0.0.1 reaches ztunnel's IPv4 listener. */
		ctx->user_ip6[3] = bpf_htonl(0x7f000001);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = bpf_htons(ZT_PORT_OUTBOUND);
	return 1;
}

/* The source port is chosen and the SYN not sent yet: publish the origin by client 4-tuple. */
SEC("sockops")
int zt_sockops(struct bpf_sock_ops *skops)
{
	struct zt_origin_key key;
	struct zt_origin *o;
	struct bpf_sock *sk;

	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	o = bpf_sk_storage_get(&sk_origin, sk, 0, 0);
	if (!o)
		return 1;
	/* Every ctx field is read up front (see pin6). */
	__u32 l4 = skops->local_ip4;
	__u32 l6_0 = skops->local_ip6[0];
	__u32 l6_1 = skops->local_ip6[1];
	__u32 l6_2 = skops->local_ip6[2];
	__u32 l6_3 = skops->local_ip6[3];
	__u32 lport = skops->local_port;

	pin6(&l4, &l6_0, &l6_1, &l6_2, &l6_3, &lport);
	__builtin_memset(&key, 0, sizeof(key));
	key.netns_cookie = bpf_get_netns_cookie(skops);
	if (o->family == ZT_AF_INET) {
		/* Also for AF_INET6 sockets connecting to a v4-mapped address: at this point only
		 * the IPv4 source is set. */
		addr_from_v4(&key.ip, l4);
	} else {
		key.ip.w[0] = l6_0;
		key.ip.w[1] = l6_1;
		key.ip.w[2] = l6_2;
		key.ip.w[3] = l6_3;
	}
	key.port = (__u16)lport;
	if (bpf_map_update_elem(&origins, &key, o, BPF_ANY) == 0)
		count(ZT_CTR_ORIGIN_RECORDED);
	return 1;
}

SEC("cgroup/getpeername4")
int zt_getpeername4(struct bpf_sock_addr *ctx)
{
	struct zt_origin *o;

	if (!ctx->sk)
		return 1;
	o = bpf_sk_storage_get(&sk_origin, ctx->sk, 0, 0);
	if (!o || o->family != ZT_AF_INET)
		return 1;
	ctx->user_ip4 = o->ip.w[3];
	ctx->user_port = bpf_htons(o->port);
	return 1;
}

SEC("cgroup/getpeername6")
int zt_getpeername6(struct bpf_sock_addr *ctx)
{
	struct zt_origin *o;

	if (!ctx->sk)
		return 1;
	o = bpf_sk_storage_get(&sk_origin, ctx->sk, 0, 0);
	if (!o)
		return 1;
	/* For ZT_AF_INET the address is stored v4-mapped, which is what an AF_INET6 socket shows. */
	ctx->user_ip6[0] = o->ip.w[0];
	ctx->user_ip6[1] = o->ip.w[1];
	ctx->user_ip6[2] = o->ip.w[2];
	ctx->user_ip6[3] = o->ip.w[3];
	ctx->user_port = bpf_htons(o->port);
	return 1;
}

static __always_inline int bind_allowed(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	struct bpf_sock *sk = ctx->sk;

	if (port != ZT_PORT_OUTBOUND && port != ZT_PORT_INBOUND && port != ZT_PORT_HBONE &&
	    port != ZT_PORT_DNS)
		return 1;
	/* Setting SO_MARK needs CAP_NET_ADMIN, so an app cannot fake this. */
	if (sk && sk->mark == ZT_MARK_PROXY)
		return 1;
	count(ZT_CTR_BIND_REFUSED);
	return 0; /* EPERM */
}

SEC("cgroup/bind4")
int zt_bind4(struct bpf_sock_addr *ctx)
{
	return bind_allowed(ctx);
}

SEC("cgroup/bind6")
int zt_bind6(struct bpf_sock_addr *ctx)
{
	return bind_allowed(ctx);
}

/* Inbound, attached to the pod netns. bpf_get_netns_cookie is not allowed here: keys are IPs. */
SEC("sk_lookup")
int zt_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct zt_listener_key lkey;
	struct zt_tuple tuple;
	struct bpf_sock *sk;
	long err;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	__u32 family = ctx->family;
	__u32 l4 = ctx->local_ip4, r4 = ctx->remote_ip4;
	__u32 l6_0 = ctx->local_ip6[0], l6_1 = ctx->local_ip6[1];
	__u32 l6_2 = ctx->local_ip6[2], l6_3 = ctx->local_ip6[3];
	__u32 r6_0 = ctx->remote_ip6[0], r6_1 = ctx->remote_ip6[1];
	__u32 r6_2 = ctx->remote_ip6[2], r6_3 = ctx->remote_ip6[3];
	__u16 rport = ctx->remote_port;
	__u32 lport = ctx->local_port;

	barrier_var(rport);
	pin6(&l4, &l6_0, &l6_1, &l6_2, &l6_3, &lport);
	pin6(&r4, &r6_0, &r6_1, &r6_2, &r6_3, &family);
	__builtin_memset(&tuple, 0, sizeof(tuple));
	if (family == ZT_AF_INET) {
		addr_from_v4(&tuple.src, r4);
		addr_from_v4(&tuple.dst, l4);
	} else {
		tuple.src.w[0] = r6_0;
		tuple.src.w[1] = r6_1;
		tuple.src.w[2] = r6_2;
		tuple.src.w[3] = r6_3;
		tuple.dst.w[0] = l6_0;
		tuple.dst.w[1] = l6_1;
		tuple.dst.w[2] = l6_2;
		tuple.dst.w[3] = l6_3;
	}
	tuple.src_port = bpf_ntohs(rport);
	tuple.dst_port = (__u16)lport;

	if (addr_is_loopback(&tuple.dst))
		return SK_PASS; /* ztunnel's own listeners, in-pod loopback traffic */
	if (addr_eq(&tuple.src, &tuple.dst) || bpf_map_lookup_elem(&probe_sources, &tuple.src) ||
	    bpf_map_lookup_elem(&bypass, &tuple)) {
		count(ZT_CTR_LOOKUP_BYPASSED);
		return SK_PASS;
	}

	__builtin_memset(&lkey, 0, sizeof(lkey));
	lkey.ip = tuple.dst;
	lkey.kind = tuple.dst_port == ZT_PORT_HBONE ? ZT_LISTENER_HBONE : ZT_LISTENER_PLAINTEXT;
	sk = bpf_map_lookup_elem(&listeners, &lkey);
	if (!sk) {
		count(ZT_CTR_LOOKUP_DROPPED);
		return SK_DROP; /* fail closed: ztunnel is not there */
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(ZT_CTR_LOOKUP_DROPPED);
		return SK_DROP;
	}
	count(ZT_CTR_LOOKUP_ASSIGNED);
	return SK_PASS;
}

/* ---- proxy cgroup (ztunnel's own) ---- */

/* getsockopt(SOL_IP, SO_ORIGINAL_DST) / (SOL_IPV6, IP6T_SO_ORIGINAL_DST) on a socket ztunnel
 * accepted on 15001: answered from `origins` (the kernel's conntrack answer is ENOENT). */
SEC("cgroup/getsockopt")
int zt_getsockopt(struct bpf_sockopt *ctx)
{
	struct zt_origin_key key;
	struct zt_origin *o;
	struct bpf_sock *sk = ctx->sk;
	void *optval = ctx->optval;
	void *optval_end = ctx->optval_end;

	if (ctx->optname != SO_ORIGINAL_DST ||
	    (ctx->level != SOL_IP && ctx->level != SOL_IPV6) || !sk)
		return 1;
	__u32 family = sk->family;
	__u32 d4 = sk->dst_ip4;
	__u32 d6_0 = sk->dst_ip6[0], d6_1 = sk->dst_ip6[1];
	__u32 d6_2 = sk->dst_ip6[2], d6_3 = sk->dst_ip6[3];
	__u32 dport = sk->dst_port;

	pin6(&family, &d4, &d6_0, &d6_1, &d6_2, &d6_3);
	barrier_var(dport);
	__builtin_memset(&key, 0, sizeof(key));
	key.netns_cookie = bpf_get_netns_cookie(ctx);
	if (family == ZT_AF_INET) {
		addr_from_v4(&key.ip, d4);
	} else {
		key.ip.w[0] = d6_0;
		key.ip.w[1] = d6_1;
		key.ip.w[2] = d6_2;
		key.ip.w[3] = d6_3;
	}
	key.port = bpf_ntohs((__u16)dport);
	o = bpf_map_lookup_elem(&origins, &key);
	if (!o)
		return 1;

	if (ctx->level == SOL_IP) {
		struct sockaddr_in *sin = optval;

		if (o->family != ZT_AF_INET || (void *)(sin + 1) > optval_end)
			return 1;
		__builtin_memset(sin, 0, sizeof(*sin));
		sin->sin_family = ZT_AF_INET;
		sin->sin_port = bpf_htons(o->port);
		sin->sin_addr.s_addr = o->ip.w[3];
		ctx->optlen = sizeof(*sin);
	} else {
		/* struct sockaddr_in6 without pulling in linux/in6.h's userspace clashes. */
		struct {
			__u16 family;
			__u16 port;
			__u32 flowinfo;
			__u32 addr[4];
			__u32 scope_id;
		} *sin6 = optval;

		if ((void *)(sin6 + 1) > optval_end)
			return 1;
		__builtin_memset(sin6, 0, sizeof(*sin6));
		sin6->family = ZT_AF_INET6;
		sin6->port = bpf_htons(o->port);
		sin6->addr[0] = o->ip.w[0];
		sin6->addr[1] = o->ip.w[1];
		sin6->addr[2] = o->ip.w[2];
		sin6->addr[3] = o->ip.w[3];
		ctx->optlen = sizeof(*sin6);
	}
	ctx->retval = 0;
	count(ZT_CTR_GETSOCKOPT_ANSWERED);
	return 1;
}

/* ztunnel's delivery sockets (mark 0x53a) add their own 4-tuple to `bypass` before the SYN, so
 * a proxy that does not call CaptureMaps::add_bypass is not steered back to itself. */
SEC("sockops")
int zt_proxy_sockops(struct bpf_sock_ops *skops)
{
	struct zt_tuple tuple;
	struct bpf_sock *sk;
	__u8 one = 1;

	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	sk = skops->sk;
	if (!sk || sk->mark != ZT_MARK_DELIVER)
		return 1;
	__u32 family = skops->family;
	__u32 l4 = skops->local_ip4, r4 = skops->remote_ip4;
	__u32 l6_0 = skops->local_ip6[0], l6_1 = skops->local_ip6[1];
	__u32 l6_2 = skops->local_ip6[2], l6_3 = skops->local_ip6[3];
	__u32 r6_0 = skops->remote_ip6[0], r6_1 = skops->remote_ip6[1];
	__u32 r6_2 = skops->remote_ip6[2], r6_3 = skops->remote_ip6[3];
	__u32 lport = skops->local_port, rport = skops->remote_port;

	barrier_var(family);
	pin6(&l4, &l6_0, &l6_1, &l6_2, &l6_3, &lport);
	pin6(&r4, &r6_0, &r6_1, &r6_2, &r6_3, &rport);
	__builtin_memset(&tuple, 0, sizeof(tuple));
	if (family == ZT_AF_INET) {
		addr_from_v4(&tuple.src, l4);
		addr_from_v4(&tuple.dst, r4);
	} else {
		tuple.src.w[0] = l6_0;
		tuple.src.w[1] = l6_1;
		tuple.src.w[2] = l6_2;
		tuple.src.w[3] = l6_3;
		tuple.dst.w[0] = r6_0;
		tuple.dst.w[1] = r6_1;
		tuple.dst.w[2] = r6_2;
		tuple.dst.w[3] = r6_3;
	}
	tuple.src_port = (__u16)lport;
	tuple.dst_port = (__u16)bpf_ntohl(rport);
	bpf_map_update_elem(&bypass, &tuple, &one, BPF_ANY);
	return 1;
}
