/*
 * Socket options every socket kind has, on a UDP socket u and a unix stream pair:
 * SO_OOBINLINE, SO_LINGER, SO_BINDTODEVICE ("lo"), a classic BPF filter (SO_ATTACH_FILTER,
 * read back with SO_GET_FILTER), SO_BUF_LOCK (the send buffer set by hand, the receive
 * buffer not), and IP_PKTINFO. After SIGTERM each reads back as set, and the filter still
 * filters: of two datagrams to u, the one it drops does not arrive.
 */
#include "zoo.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

enum {
	OOBINLINE = 1, /* u: SO_OOBINLINE on */
	LINGER,        /* u: SO_LINGER on, 7 s */
	BOUND_DEV,     /* u: bound to device lo */
	FILTER,        /* u: the filter reads back and drops datagrams of 3 bytes */
	BUF_LOCK,      /* u: SO_BUF_LOCK is the send buffer's only */
	PKTINFO,       /* u: IP_PKTINFO on */
	UNIX_LINGER,   /* the unix socket: SO_LINGER on, 3 s */
	ITEMS = UNIX_LINGER
};

/* Accepts a datagram unless it is 3 bytes long. */
static struct sock_filter prog[] = {
	BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 8 + 3, 0, 1), /* the UDP header, then 3 bytes */
	BPF_STMT(BPF_RET | BPF_K, 0),
	BPF_STMT(BPF_RET | BPF_K, 0xffff),
};

static int linger_is(int s, int on, int secs)
{
	struct linger l;
	socklen_t len = sizeof(l);

	return getsockopt(s, SOL_SOCKET, SO_LINGER, &l, &len) == 0 && l.l_onoff == on &&
	       (!on || l.l_linger == secs);
}

static int filter_is(int s)
{
	struct sock_filter got[8];
	socklen_t n = 8;

	memset(got, 0, sizeof(got));
	return getsockopt(s, SOL_SOCKET, SO_GET_FILTER, got, &n) == 0 &&
	       n == sizeof(prog) / sizeof(prog[0]) && memcmp(got, prog, sizeof(prog)) == 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sock_fprog fp = { .len = sizeof(prog) / sizeof(prog[0]), .filter = prog };
	struct linger l7 = { 1, 7 }, l3 = { 1, 3 }, off = { 0, 0 };
	socklen_t len = sizeof(a);
	int u, t, sp[2], one = 1, zero = 0, snd = 65536;
	char dev[IFNAMSIZ], b[16];

	zoo_init(argc, argv, ITEMS);
	u = socket(AF_INET, SOCK_DGRAM, 0);
	if (u < 0 || setsockopt(u, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) ||
	    setsockopt(u, SOL_SOCKET, SO_LINGER, &l7, sizeof(l7)) ||
	    setsockopt(u, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) ||
	    setsockopt(u, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp)) ||
	    setsockopt(u, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd)) ||
	    setsockopt(u, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) ||
	    bind(u, (struct sockaddr *)&a, len) || getsockname(u, (struct sockaddr *)&a, &len))
		zoo_die("u");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) ||
	    setsockopt(sp[0], SOL_SOCKET, SO_LINGER, &l3, sizeof(l3)))
		zoo_die("unix pair");
	t = socket(AF_INET, SOCK_DGRAM, 0);
	if (t < 0)
		zoo_die("sender");

	zoo_ready();
	if (ZOO_BREAK(OOBINLINE))
		setsockopt(u, SOL_SOCKET, SO_OOBINLINE, &zero, sizeof(zero));
	if (ZOO_BREAK(LINGER))
		setsockopt(u, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
	if (ZOO_BREAK(BOUND_DEV))
		setsockopt(u, SOL_SOCKET, SO_BINDTODEVICE, "", 0);
	if (ZOO_BREAK(FILTER))
		setsockopt(u, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof(zero));
	if (ZOO_BREAK(BUF_LOCK)) {
		int rcv = 65536;

		setsockopt(u, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	}
	if (ZOO_BREAK(PKTINFO))
		setsockopt(u, IPPROTO_IP, IP_PKTINFO, &zero, sizeof(zero));
	if (ZOO_BREAK(UNIX_LINGER))
		setsockopt(sp[0], SOL_SOCKET, SO_LINGER, &off, sizeof(off));
	zoo_wait();

	ZOO_CHECK(OOBINLINE, zoo_sockopt(u, SOL_SOCKET, SO_OOBINLINE) == 1, "SO_OOBINLINE %d",
		  zoo_sockopt(u, SOL_SOCKET, SO_OOBINLINE));
	ZOO_CHECK(LINGER, linger_is(u, 1, 7), "SO_LINGER is not on, 7 s");
	len = sizeof(dev);
	memset(dev, 0, sizeof(dev));
	ZOO_CHECK(BOUND_DEV,
		  getsockopt(u, SOL_SOCKET, SO_BINDTODEVICE, dev, &len) == 0 && strcmp(dev, "lo") == 0,
		  "bound to \"%s\", not lo", dev);
	ZOO_CHECK(FILTER, filter_is(u), "SO_GET_FILTER: not the program attached");
	/* The filter drops "abc"; "wxyz" arrives, first. */
	if (sendto(t, "abc", 3, 0, (struct sockaddr *)&a, sizeof(a)) != 3 ||
	    sendto(t, "wxyz", 4, 0, (struct sockaddr *)&a, sizeof(a)) != 4)
		zoo_fail(0, "sendto: %s", strerror(errno));
	{
		struct timeval tv = { .tv_sec = 30 };
		ssize_t r;

		setsockopt(u, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		r = recv(u, b, sizeof(b), 0);
		ZOO_CHECK(FILTER, r == 4 && memcmp(b, "wxyz", 4) == 0,
			  "the first datagram through is %zd bytes, not \"wxyz\"", r);
	}
	ZOO_CHECK(BUF_LOCK, zoo_sockopt(u, SOL_SOCKET, SO_BUF_LOCK) == 1, "SO_BUF_LOCK %d (want 1)",
		  zoo_sockopt(u, SOL_SOCKET, SO_BUF_LOCK));
	ZOO_CHECK(PKTINFO, zoo_sockopt(u, IPPROTO_IP, IP_PKTINFO) == 1, "IP_PKTINFO %d",
		  zoo_sockopt(u, IPPROTO_IP, IP_PKTINFO));
	ZOO_CHECK(UNIX_LINGER, linger_is(sp[0], 1, 3), "unix SO_LINGER is not on, 3 s");
	return zoo_done();
}
