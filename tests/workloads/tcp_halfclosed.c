/*
 * Half-closed TCP connections (dumped with --tcp-established), both ends in P.
 *
 *   A: c1 shut down for writing (FIN-WAIT-2: its FIN acknowledged), s1 has read that FIN
 *      (CLOSE-WAIT) and sent "still open", which c1 has not read.
 *   A6: the same on [::1] (c6, s6).
 *   B: s2 sent bytes until its queue was full (c2, with a 4 KiB receive buffer, never read
 *      them), then shut down for writing: its FIN waits behind the unsent bytes
 *      (FIN-WAIT-1), c2 has not seen it (ESTABLISHED).
 *   C: as B (c3, s3), but c3 shut down first and s3 read its EOF: s3's FIN waits behind
 *      its bytes after the peer's came (LAST-ACK), c3's was acknowledged (FIN-WAIT-2).
 *   D: as B (c4, s4), then c4 shut down: its FIN crossed s4's, which waits behind s4's
 *      bytes (s4 CLOSING, a simultaneous close), c4's acknowledged (FIN-WAIT-2).
 *
 * After SIGTERM: each socket is in its state; c1 holds exactly "still open", s1 reads EOF
 * at once and can still send ("more" reaches c1, then s1's close is c1's EOF); c1 cannot
 * send any more (EPIPE); c2 reads every byte s2 sent, in order, then EOF; so do c3 and
 * c4, and s3 and s4 read EOF.
 */
#include "zoo.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

enum {
	A_QUEUED = 1, /* c1 holds exactly "still open" */
	A_GOES_ON,    /* s1 -> c1 still carries bytes, then s1's close is c1's EOF */
	A6_GOES_ON,   /* c6 holds "still open"; s6 -> c6 still carries bytes, then EOF */
	B_DATA,       /* c2 gets every byte s2 sent before its FIN, in order, then EOF */
	C_DATA,       /* c3 gets every byte s3 sent before its FIN (LAST-ACK), then EOF */
	D_DATA,       /* c4 gets every byte s4 sent before its FIN (CLOSING), then EOF */
	ITEMS = D_DATA
};

static unsigned char byte_at(uint64_t i)
{
	return (unsigned char)((i * 31u + (i >> 9) * 3u + 7u) & 0xff);
}

static int state_of(int s)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -1;
	return ti.tcpi_state;
}

/* A half-closed pair on [::1]: *c shut down for writing, *s has read its FIN and sent
 * "still open". */
static void half_closed6(int *c, int *s)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET6, SOCK_STREAM, 0);
	char b[8];

	if (l < 0 || bind(l, (struct sockaddr *)&a, len) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		zoo_die("listener6");
	*c = socket(AF_INET6, SOCK_STREAM, 0);
	if (*c < 0 || connect(*c, (struct sockaddr *)&a, len))
		zoo_die("connect c6");
	*s = accept(l, NULL, NULL);
	if (*s < 0 || shutdown(*c, SHUT_WR) || recv(*s, b, sizeof(b), 0) != 0 ||
	    send(*s, "still open", 10, MSG_NOSIGNAL) != 10)
		zoo_die("half-closing c6");
	close(l);
}

/* Sends from `s` (non-blocking from now) until its queue is full; the bytes sent. */
static uint64_t fill(int s)
{
	static unsigned char buf[1000];
	uint64_t sent = 0;

	if (fcntl(s, F_SETFL, O_NONBLOCK))
		zoo_die("O_NONBLOCK");
	for (;;) {
		ssize_t w;

		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = byte_at(sent + i);
		w = send(s, buf, sizeof(buf), MSG_NOSIGNAL);
		if (w < 0 && errno == EAGAIN)
			return sent;
		if (w <= 0)
			zoo_die("filling a socket");
		sent += (uint64_t)w;
	}
}

/* Reads `c` to its end: whether it got exactly the `sent` bytes `fill` sent, then EOF
 * (`what` names the socket in the message). */
static void drained(int c, uint64_t sent, const char *what, int item)
{
	static unsigned char buf[1 << 16];
	uint64_t got = 0;
	int wrong = 0;
	ssize_t r;

	for (;;) {
		r = recv(c, buf, sizeof(buf), 0);
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r && !wrong; i++)
			if (buf[i] != byte_at(got + (uint64_t)i))
				wrong = 1;
		got += (uint64_t)r;
	}
	ZOO_CHECK(item, r == 0 && !wrong && got == sent,
		  "%s: %llu of %llu bytes (%s), then %zd (%s)", what, (unsigned long long)got,
		  (unsigned long long)sent, wrong ? "wrong" : "in order", r,
		  r < 0 ? strerror(errno) : "EOF");
}

/* A connection to `a` whose client has a 4 KiB receive buffer: *c, *s. */
static void small_pair(struct sockaddr_in *a, int l, int *c, int *s)
{
	int small = 4096;

	*c = socket(AF_INET, SOCK_STREAM, 0);
	if (*c < 0 || setsockopt(*c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) ||
	    connect(*c, (struct sockaddr *)a, sizeof(*a)))
		zoo_die("connect");
	*s = accept(l, NULL, NULL);
	if (*s < 0)
		zoo_die("accept");
}

static void timeout(int s)
{
	struct timeval tv = { .tv_sec = 180 };

	if (setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		zoo_die("SO_RCVTIMEO");
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l, c1, s1, c2, s2, c3, s3, c4, s4, c6, s6;
	uint64_t sent2, sent3, sent4;
	char b[32];
	ssize_t r;

	zoo_init(argc, argv, ITEMS);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, len) || listen(l, 4) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		zoo_die("listener");

	/* A */
	c1 = socket(AF_INET, SOCK_STREAM, 0);
	if (c1 < 0 || connect(c1, (struct sockaddr *)&a, len))
		zoo_die("connect c1");
	s1 = accept(l, NULL, NULL);
	if (s1 < 0 || shutdown(c1, SHUT_WR))
		zoo_die("c1");
	timeout(s1);
	if (recv(s1, b, sizeof(b), 0) != 0)
		zoo_die("s1: no EOF");
	if (send(s1, "still open", 10, MSG_NOSIGNAL) != 10)
		zoo_die("s1 send");

	half_closed6(&c6, &s6);

	/* B */
	small_pair(&a, l, &c2, &s2);
	sent2 = fill(s2);
	if (shutdown(s2, SHUT_WR))
		zoo_die("shutdown s2");

	/* C */
	small_pair(&a, l, &c3, &s3);
	sent3 = fill(s3);
	timeout(s3);
	if (shutdown(c3, SHUT_WR) || fcntl(s3, F_SETFL, 0) || recv(s3, b, sizeof(b), 0) != 0 ||
	    shutdown(s3, SHUT_WR))
		zoo_die("closing c3, then s3");

	/* D */
	small_pair(&a, l, &c4, &s4);
	sent4 = fill(s4);
	if (shutdown(s4, SHUT_WR) || shutdown(c4, SHUT_WR))
		zoo_die("closing s4 and c4");
	close(l);
	/* The FIN of c1 is acknowledged once s1 read it; s2's waits behind its bytes. */
	if (state_of(c1) != TCP_FIN_WAIT2 || state_of(s1) != TCP_CLOSE_WAIT ||
	    state_of(c6) != TCP_FIN_WAIT2 || state_of(s6) != TCP_CLOSE_WAIT ||
	    state_of(s2) != TCP_FIN_WAIT1 || state_of(s3) != TCP_LAST_ACK ||
	    state_of(c3) != TCP_FIN_WAIT2 || state_of(s4) != TCP_CLOSING ||
	    state_of(c4) != TCP_FIN_WAIT2)
		zoo_die("the connections are not half-closed as planned");

	zoo_ready();
	if (ZOO_BREAK(A_QUEUED) && recv(c1, b, 1, 0) != 1)
		zoo_die("recv");
	if (ZOO_BREAK(B_DATA) && recv(c2, b, 1, 0) != 1)
		zoo_die("recv");
	if (ZOO_BREAK(C_DATA) && recv(c3, b, 1, 0) != 1)
		zoo_die("recv");
	if (ZOO_BREAK(D_DATA) && recv(c4, b, 1, 0) != 1)
		zoo_die("recv");
	zoo_wait();

	ZOO_CHECK(ZOO_UNBREAKABLE /* a FIN cannot be taken back */,
		  state_of(c1) == TCP_FIN_WAIT2 && state_of(s1) == TCP_CLOSE_WAIT &&
			  state_of(s2) == TCP_FIN_WAIT1 && state_of(c2) == TCP_ESTABLISHED,
		  "states c1 %d s1 %d s2 %d c2 %d (want %d %d %d %d)", state_of(c1), state_of(s1),
		  state_of(s2), state_of(c2), TCP_FIN_WAIT2, TCP_CLOSE_WAIT, TCP_FIN_WAIT1,
		  TCP_ESTABLISHED);
	ZOO_CHECK(ZOO_UNBREAKABLE /* as above */,
		  state_of(s3) == TCP_LAST_ACK && state_of(c3) == TCP_FIN_WAIT2 &&
			  state_of(s4) == TCP_CLOSING && state_of(c4) == TCP_FIN_WAIT2,
		  "states s3 %d c3 %d s4 %d c4 %d (want %d %d %d %d)", state_of(s3), state_of(c3),
		  state_of(s4), state_of(c4), TCP_LAST_ACK, TCP_FIN_WAIT2, TCP_CLOSING,
		  TCP_FIN_WAIT2);
	r = recv(c1, b, sizeof(b), MSG_DONTWAIT);
	ZOO_CHECK(A_QUEUED, r == 10 && memcmp(b, "still open", 10) == 0,
		  "c1: %zd bytes queued (want \"still open\")", r);
	ZOO_CHECK(ZOO_UNBREAKABLE /* as above */, recv(s1, b, sizeof(b), MSG_DONTWAIT) == 0,
		  "s1: no EOF");
	ZOO_CHECK(ZOO_UNBREAKABLE /* as above */,
		  send(c1, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE,
		  "c1 could still send: %s", strerror(errno));
	if (ZOO_BREAK(A_GOES_ON))
		shutdown(s1, SHUT_WR);
	timeout(c1);
	ZOO_CHECK(A_GOES_ON, send(s1, "more", 4, MSG_NOSIGNAL) == 4, "s1: send: %s", strerror(errno));
	close(s1);
	r = recv(c1, b, sizeof(b), MSG_WAITALL);
	ZOO_CHECK(A_GOES_ON, r == 4 && memcmp(b, "more", 4) == 0, "c1: got %zd bytes, not \"more\"",
		  r);
	ZOO_CHECK(A_GOES_ON, recv(c1, b, sizeof(b), 0) == 0, "c1: no EOF after s1's close");

	ZOO_CHECK(ZOO_UNBREAKABLE /* as above */,
		  state_of(c6) == TCP_FIN_WAIT2 && state_of(s6) == TCP_CLOSE_WAIT,
		  "IPv6 states c6 %d s6 %d", state_of(c6), state_of(s6));
	if (ZOO_BREAK(A6_GOES_ON))
		shutdown(s6, SHUT_WR);
	timeout(c6);
	r = recv(c6, b, 10, MSG_DONTWAIT);
	ZOO_CHECK(A6_GOES_ON, r == 10 && memcmp(b, "still open", 10) == 0,
		  "c6: %zd bytes queued (want \"still open\")", r);
	ZOO_CHECK(A6_GOES_ON, send(s6, "more", 4, MSG_NOSIGNAL) == 4, "s6: send: %s",
		  strerror(errno));
	close(s6);
	r = recv(c6, b, sizeof(b), MSG_WAITALL);
	ZOO_CHECK(A6_GOES_ON, r == 4 && memcmp(b, "more", 4) == 0, "c6: got %zd bytes, not \"more\"",
		  r);
	ZOO_CHECK(A6_GOES_ON, recv(c6, b, sizeof(b), 0) == 0, "c6: no EOF after s6's close");

	timeout(c2);
	drained(c2, sent2, "c2", B_DATA);
	timeout(c3);
	drained(c3, sent3, "c3", C_DATA);
	ZOO_CHECK(ZOO_UNBREAKABLE /* as above */, recv(s3, b, sizeof(b), MSG_DONTWAIT) == 0,
		  "s3: no EOF");
	timeout(c4);
	drained(c4, sent4, "c4", D_DATA);
	ZOO_CHECK(ZOO_UNBREAKABLE /* as above */, recv(s4, b, sizeof(b), MSG_DONTWAIT) == 0,
		  "s4: no EOF");
	return zoo_done();
}
