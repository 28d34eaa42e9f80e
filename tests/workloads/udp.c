/*
 * UDP sockets.
 *
 * P binds U1 to 127.0.0.1 (a port the kernel picks; SO_RCVBUF and IP_TOS of its own),
 * connects U2 (non-blocking, SO_BROADCAST) to U1, and binds U6, IPv6-only, to [::1].
 * C, forked after, holds the same U2. After SIGTERM: P tells C to send "child" through
 * U2 and exit; P checks U1's address and options, U2's peer, flags and options, U6's
 * address and IPV6_V6ONLY, then sends "parent" through U2 and from U6 to itself, and
 * receives on U1 both datagrams from U2's address and on U6 its own. UF is bound, with
 * IP_FREEBIND, to 192.0.2.1 (an address of no interface), then IP_FREEBIND is turned
 * off: it must come back bound there, with IP_FREEBIND off. UL, a UDP-lite socket, is
 * bound to 127.0.0.1 and sends a datagram to itself after the restore. SR, SW and SB,
 * bound and connected to themselves, are shut down for reading, writing and both: poll
 * shows the read side's (POLLRDHUP, POLLHUP for both), a send the write side's (EPIPE).
 */
#include "zoo.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>

enum {
	U1_ADDR = 1, /* U1: 127.0.0.1 and its port, SO_RCVBUF, IP_TOS */
	U2_PEER,     /* U2: connected to U1, O_NONBLOCK, SO_BROADCAST; datagrams arrive */
	U6_ADDR,     /* U6: [::1] and its port, IPV6_V6ONLY; a datagram to itself */
	UF_FREEBIND, /* UF: bound to a non-local address, IP_FREEBIND off */
	UL_LITE,     /* UL: UDP-lite, bound; a datagram to itself */
	SHUT,        /* SR, SW, SB: shut down for reading, writing, both */
	ITEMS = SHUT
};

#define RCVBUF 65536
#define TOS 0x10

static int udp(int family)
{
	int s = socket(family, SOCK_DGRAM, IPPROTO_UDP);

	if (s < 0)
		zoo_die("socket");
	return s;
}

static void bind4(int s, in_port_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)))
		zoo_die("bind 127.0.0.1");
}

static void bind6(int s)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int one = 1;

	if (setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) ||
	    bind(s, (struct sockaddr *)&a, sizeof(a)))
		zoo_die("bind [::1]");
}

static int opt(int s, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(s, level, name, &v, &len))
		return -1;
	return v;
}

/* Replaces the socket at `fd` by a new one bound elsewhere (the break of an address). */
static void replace(int fd, int family)
{
	int s = udp(family);

	if (family == AF_INET)
		bind4(s, 0);
	else
		bind6(s);
	if (dup2(s, fd) != fd)
		zoo_die("dup2");
	close(s);
}

/* A UDP socket bound to 127.0.0.1 and connected to itself, shut down `how` (-1: not). */
static int shut(int how)
{
	struct sockaddr_storage a;
	socklen_t len = sizeof(a);
	int s = udp(AF_INET);

	bind4(s, 0);
	if (getsockname(s, (struct sockaddr *)&a, &len) || connect(s, (struct sockaddr *)&a, len) ||
	    (how >= 0 && shutdown(s, how)))
		zoo_die("a shut-down UDP socket");
	return s;
}

/* "R" when poll shows `s` shut for reading (POLLRDHUP), "H" for both (POLLHUP), then "W"
 * when a send fails with EPIPE. */
static const char *shut_state(int s)
{
	static char out[4][4];
	static int next;
	struct pollfd p = {.fd = s, .events = POLLRDHUP | POLLHUP};
	char *o = out[next++ % 4];
	int n = 0;

	if (poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP))
		o[n++] = 'R';
	if (p.revents & POLLHUP)
		o[n++] = 'H';
	if (send(s, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE)
		o[n++] = 'W';
	o[n] = 0;
	return o;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage a1, a2, a6, af, al, got, from;
	struct sockaddr_in nonlocal = {.sin_family = AF_INET};
	socklen_t len;
	int u1, u2, u6, uf, ul, sr, sw, sb, one = 1, zero = 0, v, n;
	char buf[64];
	pid_t kid;

	zoo_init(argc, argv, ITEMS);
	u1 = udp(AF_INET);
	v = RCVBUF;
	if (setsockopt(u1, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)))
		zoo_die("SO_RCVBUF");
	v = TOS;
	if (setsockopt(u1, IPPROTO_IP, IP_TOS, &v, sizeof(v)))
		zoo_die("IP_TOS");
	bind4(u1, 0);
	len = sizeof(a1);
	if (getsockname(u1, (struct sockaddr *)&a1, &len))
		zoo_die("getsockname u1");
	u2 = udp(AF_INET);
	if (setsockopt(u2, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)))
		zoo_die("SO_BROADCAST");
	if (connect(u2, (struct sockaddr *)&a1, len))
		zoo_die("connect u2");
	if (fcntl(u2, F_SETFL, O_NONBLOCK))
		zoo_die("O_NONBLOCK");
	len = sizeof(a2);
	if (getsockname(u2, (struct sockaddr *)&a2, &len))
		zoo_die("getsockname u2");
	u6 = udp(AF_INET6);
	bind6(u6);
	len = sizeof(a6);
	if (getsockname(u6, (struct sockaddr *)&a6, &len))
		zoo_die("getsockname u6");
	uf = udp(AF_INET);
	inet_pton(AF_INET, "192.0.2.1", &nonlocal.sin_addr);
	if (setsockopt(uf, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) ||
	    bind(uf, (struct sockaddr *)&nonlocal, sizeof(nonlocal)) ||
	    setsockopt(uf, IPPROTO_IP, IP_FREEBIND, &zero, sizeof(zero)))
		zoo_die("UF: bind with IP_FREEBIND");
	len = sizeof(af);
	if (getsockname(uf, (struct sockaddr *)&af, &len))
		zoo_die("getsockname uf");
	ul = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
	if (ul < 0)
		zoo_die("socket UDP-lite");
	bind4(ul, 0);
	len = sizeof(al);
	if (getsockname(ul, (struct sockaddr *)&al, &len))
		zoo_die("getsockname ul");
	sr = shut(SHUT_RD);
	sw = shut(SHUT_WR);
	sb = shut(SHUT_RDWR);
	kid = zoo_fork_ready();
	if (kid == 0) {
		zoo_child_ready();
		zoo_wait();
		if (send(u2, "child", 5, 0) != 5)
			zoo_fail(U2_PEER, "C: send through U2: %s", strerror(errno));
		return zoo_failures ? 1 : 0;
	}

	zoo_ready();
	if (ZOO_BREAK(U1_ADDR)) {
		/* Not its address: C holds U1 too and would keep the old one bound. */
		v = 2 * RCVBUF;
		if (setsockopt(u1, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)))
			zoo_die("SO_RCVBUF");
	}
	if (ZOO_BREAK(U2_PEER)) {
		struct sockaddr_in elsewhere = *(struct sockaddr_in *)&a1;

		elsewhere.sin_port = htons(ntohs(elsewhere.sin_port) ^ 1);
		if (connect(u2, (struct sockaddr *)&elsewhere, sizeof(elsewhere)))
			zoo_die("connect u2 elsewhere");
	}
	if (ZOO_BREAK(U6_ADDR))
		replace(u6, AF_INET6);
	if (ZOO_BREAK(UL_LITE)) {
		int other = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);

		if (other < 0)
			zoo_die("socket UDP-lite");
		bind4(other, 0);
		if (dup2(other, ul) != ul)
			zoo_die("dup2");
		close(other);
	}
	if (ZOO_BREAK(SHUT)) {
		int fresh = shut(-1);

		if (dup2(fresh, sw) != sw)
			zoo_die("dup2");
		close(fresh);
	}
	if (ZOO_BREAK(UF_FREEBIND) &&
	    setsockopt(uf, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)))
		zoo_die("IP_FREEBIND on");
	zoo_wait();

	if (kill(kid, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(kid, "C");

	len = sizeof(got);
	ZOO_CHECK(U1_ADDR,
		  getsockname(u1, (struct sockaddr *)&got, &len) == 0 &&
			  memcmp(&got, &a1, sizeof(struct sockaddr_in)) == 0,
		  "U1 is no longer bound where it was");
	ZOO_CHECK(U1_ADDR, opt(u1, SOL_SOCKET, SO_RCVBUF) == 2 * RCVBUF && opt(u1, IPPROTO_IP, IP_TOS) == TOS,
		  "U1: SO_RCVBUF %d, IP_TOS %#x", opt(u1, SOL_SOCKET, SO_RCVBUF),
		  opt(u1, IPPROTO_IP, IP_TOS));
	len = sizeof(got);
	ZOO_CHECK(U2_PEER,
		  getpeername(u2, (struct sockaddr *)&got, &len) == 0 &&
			  memcmp(&got, &a1, sizeof(struct sockaddr_in)) == 0,
		  "U2 is not connected to U1");
	ZOO_CHECK(ZOO_UNBREAKABLE /* the break of U2 leaves its flags and options */,
		  (fcntl(u2, F_GETFL) & O_NONBLOCK) && opt(u2, SOL_SOCKET, SO_BROADCAST) == 1,
		  "U2: flags %#x, SO_BROADCAST %d", fcntl(u2, F_GETFL),
		  opt(u2, SOL_SOCKET, SO_BROADCAST));
	if (send(u2, "parent", 6, 0) != 6)
		zoo_fail(U2_PEER, "send through U2: %s", strerror(errno));
	/* Both datagrams, C's first, each from U2's address. */
	for (int i = 0; i < 2; i++) {
		const char *want = i == 0 ? "child" : "parent";

		len = sizeof(from);
		n = (int)recvfrom(u1, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &len);
		ZOO_CHECK(U2_PEER,
			  n == (int)strlen(want) && memcmp(buf, want, (size_t)n) == 0 &&
				  memcmp(&from, &a2, sizeof(struct sockaddr_in)) == 0,
			  "datagram %d on U1: %d bytes", i, n);
	}
	len = sizeof(got);
	ZOO_CHECK(U6_ADDR,
		  getsockname(u6, (struct sockaddr *)&got, &len) == 0 &&
			  memcmp(&got, &a6, sizeof(struct sockaddr_in6)) == 0 &&
			  opt(u6, IPPROTO_IPV6, IPV6_V6ONLY) == 1,
		  "U6 is no longer bound where it was, IPv6 only");
	n = (int)sendto(u6, "six", 3, 0, (struct sockaddr *)&a6, sizeof(struct sockaddr_in6));
	ZOO_CHECK(U6_ADDR, n == 3, "sendto U6: %s", strerror(errno));
	n = (int)recv(u6, buf, sizeof(buf), MSG_DONTWAIT);
	ZOO_CHECK(U6_ADDR, n == 3 && memcmp(buf, "six", 3) == 0, "U6 got %d bytes", n);
	len = sizeof(got);
	ZOO_CHECK(UF_FREEBIND,
		  getsockname(uf, (struct sockaddr *)&got, &len) == 0 &&
			  memcmp(&got, &af, sizeof(struct sockaddr_in)) == 0 &&
			  opt(uf, IPPROTO_IP, IP_FREEBIND) == 0,
		  "UF is no longer bound to 192.0.2.1 with IP_FREEBIND off (%d)",
		  opt(uf, IPPROTO_IP, IP_FREEBIND));
	len = sizeof(got);
	ZOO_CHECK(UL_LITE,
		  getsockname(ul, (struct sockaddr *)&got, &len) == 0 &&
			  memcmp(&got, &al, sizeof(struct sockaddr_in)) == 0 &&
			  opt(ul, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_UDPLITE,
		  "UL is no longer the UDP-lite socket bound where it was");
	n = (int)sendto(ul, "lite", 4, 0, (struct sockaddr *)&al, sizeof(struct sockaddr_in));
	ZOO_CHECK(UL_LITE, n == 4 && recv(ul, buf, sizeof(buf), MSG_DONTWAIT) == 4,
		  "UL does not get its own datagram");
	{
		const char *r = shut_state(sr), *w = shut_state(sw), *b = shut_state(sb);

		ZOO_CHECK(SHUT, !strcmp(r, "R") && !strcmp(w, "W") && !strcmp(b, "RHW"),
			  "shut down for reading, writing, both: %s %s %s (want R W RHW)", r, w, b);
	}
	return zoo_done();
}
