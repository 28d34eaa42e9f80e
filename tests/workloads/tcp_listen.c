/*
 * TCP sockets that are not connected: listeners and a bound socket.
 *
 * P makes L4 (listening on 127.0.0.1, a port the kernel picks, SO_REUSEADDR, backlog 3,
 * non-blocking), L6 (listening on [::1], IPv6 only) and B (bound to 127.0.0.1, not
 * listening), then forks C, which holds L4 too. After SIGTERM: P tells C to end, then
 * checks each address, L4's backlog (TCP_INFO) and flags, connects to L4 and L6 and
 * accepts each connection, and finds B still bound and not listening. TC is the client
 * of a connection to L4 closed on both sides: it has given its port back (which the
 * kernel's TIME-WAIT remnant of the connection holds), reads EOF, cannot send (EPIPE),
 * and can be bound again. R1 and R2 listen on one port with SO_REUSEPORT, which R1 then
 * turned off: both listen there again after the restore, R2 with SO_REUSEPORT, R1 not.
 */
#include "zoo.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>

enum {
	L4_ACCEPTS = 1, /* L4: address, backlog, flags; a connection is accepted */
	L6_ACCEPTS,     /* L6: address, IPv6 only; a connection is accepted */
	B_BOUND,        /* B: address, not listening */
	TC_CLOSED,      /* TC: closed, EOF, EPIPE, can be bound again */
	REUSEPORT,      /* R1, R2: one port, SO_REUSEPORT on R2 only */
	ITEMS = REUSEPORT
};

static int tcp(int family, const char *ip)
{
	struct sockaddr_storage a;
	socklen_t len;
	int s = socket(family, SOCK_STREAM, IPPROTO_TCP), one = 1;

	if (s < 0)
		zoo_die("socket");
	memset(&a, 0, sizeof(a));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&a;

		in->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &in->sin_addr);
		len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;

		in6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &in6->sin6_addr);
		len = sizeof(*in6);
		if (setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)))
			zoo_die("IPV6_V6ONLY");
	}
	if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(s, (struct sockaddr *)&a, len))
		zoo_die("bind");
	return s;
}

static void name_of(int s, struct sockaddr_storage *a)
{
	socklen_t len = sizeof(*a);

	memset(a, 0, sizeof(*a));
	if (getsockname(s, (struct sockaddr *)a, &len))
		zoo_die("getsockname");
}

static int same_name(int s, const struct sockaddr_storage *want)
{
	struct sockaddr_storage now;
	socklen_t len = sizeof(now);

	memset(&now, 0, sizeof(now));
	return getsockname(s, (struct sockaddr *)&now, &len) == 0 &&
	       memcmp(&now, want, sizeof(now)) == 0;
}

/* Connects to listener `l` (at `a`), accepts, and passes a byte: whether it all works. */
static int accepts(int l, const struct sockaddr_storage *a)
{
	socklen_t len = a->ss_family == AF_INET ? sizeof(struct sockaddr_in)
						 : sizeof(struct sockaddr_in6);
	int c = socket(a->ss_family, SOCK_STREAM, 0), s = -1, ok = 0;
	char b = 0;

	if (c >= 0 && connect(c, (const struct sockaddr *)a, len) == 0) {
		for (int i = 0; i < 1000000 && s < 0; i++) {
			s = accept(l, NULL, NULL);
			if (s < 0 && errno != EAGAIN)
				break;
		}
		ok = s >= 0 && write(c, "x", 1) == 1 && read(s, &b, 1) == 1 && b == 'x';
	}
	if (s >= 0)
		close(s);
	if (c >= 0)
		close(c);
	return ok;
}

static unsigned backlog(int s)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return 0;
	return ti.tcpi_sacked;
}

static int listening(int s)
{
	int v = 0;
	socklen_t len = sizeof(v);

	getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &v, &len);
	return v;
}

/* Replaces the socket at `fd` by a new one of `family` bound elsewhere (listening if
 * `listen_too`). */
static void replace(int fd, int family, const char *ip, int listen_too)
{
	int s = tcp(family, ip);

	if (listen_too && listen(s, 3))
		zoo_die("listen");
	if (dup2(s, fd) != fd)
		zoo_die("dup2");
	close(s);
}

/* A connection to listener `l` (at `a`) closed on both sides: its client. */
static int closed_client(int l, const struct sockaddr_storage *a)
{
	int c = socket(AF_INET, SOCK_STREAM, 0), s = -1;
	char x;

	if (c < 0 || connect(c, (const struct sockaddr *)a, sizeof(struct sockaddr_in)))
		zoo_die("connect TC");
	for (int i = 0; i < 1000000 && s < 0; i++) {
		s = accept(l, NULL, NULL);
		if (s < 0 && errno != EAGAIN)
			break;
	}
	if (s < 0 || shutdown(c, SHUT_WR) || shutdown(s, SHUT_WR) || read(c, &x, 1) != 0)
		zoo_die("closing TC");
	close(s);
	return c;
}

/* A listener on 127.0.0.1 with SO_REUSEPORT, at `a`'s port (0: one the kernel picks). */
static int reuseport_listener(struct sockaddr_storage *a)
{
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = ((struct sockaddr_in *)a)->sin_port};
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(s, (struct sockaddr *)&in, sizeof(in)) || listen(s, 2))
		zoo_die("a SO_REUSEPORT listener");
	return s;
}

static int opt(int s, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	getsockopt(s, SOL_SOCKET, name, &v, &len);
	return v;
}

/* TCP_INFO's state of `s`. */
static int state_of(int s)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -1;
	return ti.tcpi_state;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage a4, a6, ab;
	struct sockaddr_storage ar;
	int l4, l6, b, tc, r1, r2, zero = 0;
	pid_t kid;

	zoo_init(argc, argv, ITEMS);
	l4 = tcp(AF_INET, "127.0.0.1");
	if (listen(l4, 3) || fcntl(l4, F_SETFL, O_NONBLOCK))
		zoo_die("listen L4");
	l6 = tcp(AF_INET6, "::1");
	if (listen(l6, 8))
		zoo_die("listen L6");
	b = tcp(AF_INET, "127.0.0.1");
	name_of(l4, &a4);
	name_of(l6, &a6);
	name_of(b, &ab);
	tc = closed_client(l4, &a4);
	memset(&ar, 0, sizeof(ar));
	r1 = reuseport_listener(&ar);
	name_of(r1, &ar);
	r2 = reuseport_listener(&ar);
	if (setsockopt(r1, SOL_SOCKET, SO_REUSEPORT, &zero, sizeof(zero)))
		zoo_die("SO_REUSEPORT off");
	if (state_of(tc) != TCP_CLOSE)
		zoo_die("TC is not closed");
	kid = zoo_fork_ready();
	if (kid == 0) {
		zoo_child_ready();
		zoo_wait();
		return zoo_failures ? 1 : 0;
	}

	zoo_ready();
	/* Not L4's address: C holds L4 too and would keep the old one listening. */
	if (ZOO_BREAK(L4_ACCEPTS) && listen(l4, 5))
		zoo_die("listen L4 again");
	if (ZOO_BREAK(L6_ACCEPTS))
		replace(l6, AF_INET6, "::1", 1);
	if (ZOO_BREAK(B_BOUND))
		replace(b, AF_INET, "127.0.0.1", 0);
	if (ZOO_BREAK(REUSEPORT) && setsockopt(r2, SOL_SOCKET, SO_REUSEPORT, &zero, sizeof(zero)))
		zoo_die("SO_REUSEPORT off");
	if (ZOO_BREAK(TC_CLOSED)) {
		int fresh = socket(AF_INET, SOCK_STREAM, 0);

		if (fresh < 0 || dup2(fresh, tc) != tc)
			zoo_die("dup2");
		close(fresh);
	}
	zoo_wait();

	if (kill(kid, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(kid, "C");
	ZOO_CHECK(L4_ACCEPTS, same_name(l4, &a4) && backlog(l4) == 3 && listening(l4),
		  "L4: moved, backlog %u, or not listening", backlog(l4));
	ZOO_CHECK(ZOO_UNBREAKABLE /* L4's break leaves its flags */,
		  fcntl(l4, F_GETFL) & O_NONBLOCK, "L4 is blocking");
	ZOO_CHECK(L4_ACCEPTS, accepts(l4, &a4), "L4 accepts no connection");
	{
		int v6only = 0;
		socklen_t len = sizeof(v6only);

		getsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len);
		ZOO_CHECK(L6_ACCEPTS, same_name(l6, &a6) && listening(l6) && v6only == 1 &&
					      backlog(l6) == 8,
			  "L6 moved, not listening, not IPv6 only or backlog %u", backlog(l6));
	}
	ZOO_CHECK(L6_ACCEPTS, accepts(l6, &a6), "L6 accepts no connection");
	ZOO_CHECK(B_BOUND, same_name(b, &ab) && !listening(b), "B moved or listens");
	{
		struct sockaddr_in any = {.sin_family = AF_INET};
		char x;
		ssize_t r = recv(tc, &x, 1, MSG_DONTWAIT);
		int r_errno = errno;
		ssize_t w = send(tc, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		int w_errno = errno;

		any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ZOO_CHECK(TC_CLOSED, state_of(tc) == TCP_CLOSE && r == 0 && w < 0 && w_errno == EPIPE,
			  "TC: state %d, recv %zd (%s), send %zd (%s): want %d, EOF, EPIPE",
			  state_of(tc), r, r < 0 ? strerror(r_errno) : "-", w,
			  w < 0 ? strerror(w_errno) : "-", TCP_CLOSE);
		ZOO_CHECK(TC_CLOSED, bind(tc, (struct sockaddr *)&any, sizeof(any)) == 0,
			  "TC cannot be bound again: %s", strerror(errno));
	}
	ZOO_CHECK(REUSEPORT,
		  same_name(r1, &ar) && same_name(r2, &ar) && listening(r1) && listening(r2) &&
			  opt(r1, SO_REUSEPORT) == 0 && opt(r2, SO_REUSEPORT) == 1,
		  "R1, R2: moved, not listening, or SO_REUSEPORT %d %d (want 0 1)",
		  opt(r1, SO_REUSEPORT), opt(r2, SO_REUSEPORT));
	return zoo_done();
}
