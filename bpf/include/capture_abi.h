/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The contract between the capture programs (bpf/capture.bpf.c) and user space
 * (bpf/loader/): map keys and values, ports, marks and counter slots. Plain C with fixed-width
 * types and explicit padding, included by both sides; every layout is checked below.
 *
 * Addresses: always 16 bytes, four 32-bit words in network byte order. IPv4 is stored as the
 * v4-mapped IPv6 address ::ffff:a.b.c.d (words {0, 0, htonl(0xffff), ip4}), so one key type
 * serves both families and an IPv4 connection made through an AF_INET6 socket (v4-mapped) has
 * the same key as one made through an AF_INET socket.
 * Ports: host byte order in every key and value.
 */
#ifndef ZT_CAPTURE_ABI_H
#define ZT_CAPTURE_ABI_H

#ifdef __cplusplus
#include <cstddef>
#include <cstdint>
typedef std::uint8_t zt_u8;
typedef std::uint16_t zt_u16;
typedef std::uint32_t zt_u32;
typedef std::uint64_t zt_u64;
#define ZT_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#ifdef __bpf__
#include <linux/types.h>
#else
#include <stddef.h>
#include <linux/types.h>
#endif
typedef __u8 zt_u8;
typedef __u16 zt_u16;
typedef __u32 zt_u32;
typedef __u64 zt_u64;
#define ZT_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* offsetof that works in _Static_assert with libbpf's bpf_helpers.h redefinition. */
#define ZT_OFFSETOF(type, member) __builtin_offsetof(type, member)

/* Istio's ports. */
#define ZT_PORT_OUTBOUND 15001 /* in-pod outbound capture listener (127.0.0.1 / ::1) */
#define ZT_PORT_INBOUND 15006  /* in-pod plaintext inbound listener */
#define ZT_PORT_HBONE 15008    /* in-pod HBONE listener */
#define ZT_PORT_DNS 15053      /* in-pod DNS proxy (UDP and TCP) */

/* SO_MARK values. Sockets carrying either are ztunnel's own and are never redirected. */
#define ZT_MARK_PROXY 0x539   /* every socket ztunnel creates in a pod (Istio's 1337) */
#define ZT_MARK_DELIVER 0x53a /* ztunnel's delivery connection to the local app */

/* Address families as stored in zt_origin.family (the Linux values). */
#define ZT_AF_INET 2
#define ZT_AF_INET6 10

/* Listener kinds (SOCKHASH key); match zt::bpf::ListenerKind. */
#define ZT_LISTENER_PLAINTEXT 0
#define ZT_LISTENER_HBONE 1

/* Counter slots of the per-CPU `counters` array; same order as zt::bpf::Counters. */
enum zt_counter {
	ZT_CTR_CONNECT_REDIRECTED = 0,
	ZT_CTR_CONNECT_SKIPPED_PROXY = 1,
	ZT_CTR_CONNECT_SKIPPED_LOCAL = 2,
	ZT_CTR_ORIGIN_RECORDED = 3,
	ZT_CTR_LOOKUP_ASSIGNED = 4,
	ZT_CTR_LOOKUP_DROPPED = 5,
	ZT_CTR_LOOKUP_BYPASSED = 6,
	ZT_CTR_BIND_REFUSED = 7,
	ZT_CTR_GETSOCKOPT_ANSWERED = 8,
	ZT_CTR_COUNT = 9,
};

/* Map sizes. */
#define ZT_MAX_POD_IPS 4
#define ZT_MAX_PODS 4096
#define ZT_MAX_ORIGINS 65536
#define ZT_MAX_BYPASS 16384
#define ZT_MAX_LISTENERS 8192
#define ZT_MAX_PROBE_SOURCES 256
#define ZT_POD_KEY_LEN 128

struct zt_addr {
	zt_u32 w[4]; /* network byte order; IPv4 v4-mapped */
};

/* Original destination of a redirected connect (sk_origin value, origins value). */
struct zt_origin {
	struct zt_addr ip;
	zt_u16 port;   /* host order */
	zt_u8 family;  /* ZT_AF_INET (ip is v4-mapped) or ZT_AF_INET6 */
	zt_u8 pad[5];
};

/* origins key: the client socket as ztunnel sees it from the accepted socket's peer. */
struct zt_origin_key {
	zt_u64 netns_cookie; /* SO_NETNS_COOKIE of the pod netns */
	struct zt_addr ip;   /* client ip (127.0.0.1 or ::1 after the rewrite) */
	zt_u16 port;         /* client port, host order */
	zt_u8 pad[6];
};

/* listeners (SOCKHASH) key. Value: the socket (an fd from user space, a u64 cookie on lookup). */
struct zt_listener_key {
	struct zt_addr ip; /* the pod IP the SYN is for */
	zt_u32 kind;       /* ZT_LISTENER_* */
};

/* bypass key: a SYN from src to dst that must reach the app, not ztunnel. */
struct zt_tuple {
	struct zt_addr src;
	struct zt_addr dst;
	zt_u16 src_port; /* host order */
	zt_u16 dst_port; /* host order */
};

/* pod_ips value, keyed by the pod netns cookie (u64). */
struct zt_pod_ips {
	struct zt_addr ip[ZT_MAX_POD_IPS];
	zt_u32 count;
	zt_u32 pad;
};

/* pod_keys key: the enrollment key (NUL padded), value: the netns cookie recorded for it. */
struct zt_pod_key {
	char name[ZT_POD_KEY_LEN];
};

ZT_ABI_ASSERT(sizeof(struct zt_addr) == 16, "zt_addr");
ZT_ABI_ASSERT(sizeof(struct zt_origin) == 24, "zt_origin");
ZT_ABI_ASSERT(ZT_OFFSETOF(struct zt_origin, port) == 16, "zt_origin.port");
ZT_ABI_ASSERT(ZT_OFFSETOF(struct zt_origin, family) == 18, "zt_origin.family");
ZT_ABI_ASSERT(sizeof(struct zt_origin_key) == 32, "zt_origin_key");
ZT_ABI_ASSERT(ZT_OFFSETOF(struct zt_origin_key, ip) == 8, "zt_origin_key.ip");
ZT_ABI_ASSERT(ZT_OFFSETOF(struct zt_origin_key, port) == 24, "zt_origin_key.port");
ZT_ABI_ASSERT(sizeof(struct zt_listener_key) == 20, "zt_listener_key");
ZT_ABI_ASSERT(ZT_OFFSETOF(struct zt_listener_key, kind) == 16, "zt_listener_key.kind");
ZT_ABI_ASSERT(sizeof(struct zt_tuple) == 36, "zt_tuple");
ZT_ABI_ASSERT(ZT_OFFSETOF(struct zt_tuple, src_port) == 32, "zt_tuple.src_port");
ZT_ABI_ASSERT(ZT_OFFSETOF(struct zt_tuple, dst_port) == 34, "zt_tuple.dst_port");
ZT_ABI_ASSERT(sizeof(struct zt_pod_ips) == 16 * ZT_MAX_POD_IPS + 8, "zt_pod_ips");
ZT_ABI_ASSERT(ZT_OFFSETOF(struct zt_pod_ips, count) == 16 * ZT_MAX_POD_IPS, "zt_pod_ips.count");
ZT_ABI_ASSERT(sizeof(struct zt_pod_key) == ZT_POD_KEY_LEN, "zt_pod_key");

#endif /* ZT_CAPTURE_ABI_H */
