/*
 * Raw inet sockets and their own options.
 *
 *   r4: AF_INET, IPPROTO_ICMP, bound and connected to an address of 127/8 of its own
 *       (from its pid: a raw ICMP socket gets every ICMP message of the host that matches,
 *       and other copies of this workload ping too), ICMP_FILTER letting only echo
 *       replies through; after SIGTERM it pings that address and gets the kernel's reply.
 *   rh: AF_INET, IPPROTO_RAW (the header included), IP_NODEFRAG on.
 *   r6: AF_INET6, IPPROTO_ICMPV6, ICMP6_FILTER letting only a type nobody sends through
 *       (::1 is shared: an echo reply could be another copy's, and a datagram queued at
 *       the dump is refused); after SIGTERM the filter reads back and it can still send.
 */
#include "zoo.h"

#include <arpa/inet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <sys/socket.h>

#ifndef IP_NODEFRAG
#define IP_NODEFRAG 22
#endif
#ifndef ICMP_FILTER
#define ICMP_FILTER 1 /* linux/icmp.h, which glibc's headers clash with */
#endif

enum {
	R4 = 1, /* r4's filter, address and peer read back: its ping is answered through it */
	RH,     /* rh: IP_HDRINCL and IP_NODEFRAG read back */
	R6,     /* r6's filter reads back, and it sends */
	ITEMS = R6
};

#define ID 0x5a17

static uint16_t csum(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return htons((uint16_t)~s);
}

static void timeout(int s)
{
	struct timeval tv = { .tv_sec = 30 };

	if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		zoo_die("SO_RCVTIMEO");
}

/* Pings `to` through r4 and waits for the reply with our id and `seq`. */
static int ping4(int r4, struct sockaddr_in to, uint16_t seq)
{
	struct icmphdr h = { .type = ICMP_ECHO };
	unsigned char buf[256];

	h.un.echo.id = htons(ID);
	h.un.echo.sequence = htons(seq);
	h.checksum = csum(&h, sizeof(h));
	if (sendto(r4, &h, sizeof(h), 0, (struct sockaddr *)&to, sizeof(to)) != sizeof(h))
		return 0;
	for (;;) {
		ssize_t n = recv(r4, buf, sizeof(buf), 0);
		struct icmphdr *r;
		size_t ihl;

		if (n < (ssize_t)sizeof(struct iphdr))
			return 0;
		ihl = (size_t)(buf[0] & 0xf) * 4;
		if ((size_t)n < ihl + sizeof(*r))
			continue;
		r = (struct icmphdr *)(buf + ihl);
		if (r->type == ICMP_ECHOREPLY && r->un.echo.id == htons(ID) &&
		    r->un.echo.sequence == htons(seq))
			return 1;
	}
}

/* Sends an echo request to ::1 through r6 (whose filter lets no reply through). */
static int send6(int r6)
{
	struct sockaddr_in6 to = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct icmp6_hdr h = { .icmp6_type = ICMP6_ECHO_REQUEST };

	h.icmp6_id = htons(ID);
	/* The kernel computes ICMPv6 checksums. */
	return sendto(r6, &h, sizeof(h), 0, (struct sockaddr *)&to, sizeof(to)) == sizeof(h);
}

static uint32_t filter4(int s)
{
	uint32_t f = 0;
	socklen_t len = sizeof(f);

	if (getsockopt(s, SOL_RAW, ICMP_FILTER, &f, &len))
		return 0;
	return f;
}

static int filter6_is(int s, const struct icmp6_filter *want)
{
	struct icmp6_filter f;
	socklen_t len = sizeof(f);

	memset(&f, 0, sizeof(f));
	return getsockopt(s, IPPROTO_ICMPV6, ICMP6_FILTER, &f, &len) == 0 &&
	       memcmp(&f, want, sizeof(f)) == 0;
}

int main(int argc, char **argv)
{
	/* 127.x.y.z from the pid (never 127.0.0.1 as long as the pid is above 1). */
	uint32_t me = (uint32_t)getpid() & 0xffffff;
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(0x7f000000u | (me > 1 ? me : 2)) };
	/* Everything but echo replies is filtered out (a set bit blocks its type). */
	uint32_t f4 = ~(1u << ICMP_ECHOREPLY), other = ~0u;
	struct icmp6_filter f6;
	int r4, rh, r6, one = 1;

	zoo_init(argc, argv, ITEMS);
	ICMP6_FILTER_SETBLOCKALL(&f6);
	ICMP6_FILTER_SETPASS(200 /* private experimentation */, &f6);

	r4 = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	if (r4 < 0 || bind(r4, (struct sockaddr *)&a, sizeof(a)) ||
	    connect(r4, (struct sockaddr *)&a, sizeof(a)) ||
	    setsockopt(r4, SOL_RAW, ICMP_FILTER, &f4, sizeof(f4)))
		zoo_die("r4");
	rh = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (rh < 0 || setsockopt(rh, IPPROTO_IP, IP_NODEFRAG, &one, sizeof(one)))
		zoo_die("rh");
	r6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
	if (r6 < 0 || setsockopt(r6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, sizeof(f6)))
		zoo_die("r6");
	timeout(r4);
	timeout(r6);

	zoo_ready();
	if (ZOO_BREAK(R4) && setsockopt(r4, SOL_RAW, ICMP_FILTER, &other, sizeof(other)))
		zoo_die("break r4");
	if (ZOO_BREAK(RH)) {
		int zero = 0;

		if (setsockopt(rh, IPPROTO_IP, IP_NODEFRAG, &zero, sizeof(zero)))
			zoo_die("break rh");
	}
	if (ZOO_BREAK(R6)) {
		struct icmp6_filter none;

		ICMP6_FILTER_SETBLOCKALL(&none);
		if (setsockopt(r6, IPPROTO_ICMPV6, ICMP6_FILTER, &none, sizeof(none)))
			zoo_die("break r6");
	}
	zoo_wait();

	ZOO_CHECK(R4, filter4(r4) == f4, "r4: ICMP_FILTER %#x, want %#x", filter4(r4), f4);
	/* A blocked reply never comes: the receive times out and the item fails. */
	ZOO_CHECK(R4, filter4(r4) == f4 && ping4(r4, a, 1), "r4: no echo reply from %s",
		  inet_ntoa(a.sin_addr));
	ZOO_CHECK(RH,
		  zoo_sockopt(rh, IPPROTO_IP, IP_HDRINCL) == 1 && zoo_sockopt(rh, IPPROTO_IP, IP_NODEFRAG) == 1,
		  "rh: IP_HDRINCL %d, IP_NODEFRAG %d (want 1, 1)", zoo_sockopt(rh, IPPROTO_IP, IP_HDRINCL),
		  zoo_sockopt(rh, IPPROTO_IP, IP_NODEFRAG));
	ZOO_CHECK(R6, filter6_is(r6, &f6), "r6: ICMP6_FILTER changed");
	ZOO_CHECK(R6, filter6_is(r6, &f6) && send6(r6), "r6: cannot send to ::1");
	return zoo_done();
}
