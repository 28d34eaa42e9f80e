/* Two socketpairs held by one process, a SOCK_STREAM one and a SOCK_SEQPACKET one (its
 * ends non-blocking), with unread messages queued in both directions. After SIGTERM every
 * queued message is read back in order (message boundaries kept on the seqpacket pair),
 * then more messages are exchanged both ways on each pair. */
#include "zoo.h"
#include <sys/socket.h>

enum {
	STREAM_AB = 1,   /* the stream end b holds exactly what a sent */
	STREAM_BA,       /* and the other way */
	PACKETS_AB,      /* the seqpacket end b holds exactly a's messages */
	PACKETS_BA,
	SEQ_NONBLOCK,    /* the seqpacket ends are non-blocking */
	STREAM_BLOCKING, /* the stream ends are not */
	STREAM_EXCHANGE, /* new messages go both ways on the stream pair */
	SEQ_EXCHANGE,
	ITEMS = SEQ_EXCHANGE
};

static const char *const to_b[] = { "a->b first", "a->b second, longer message", "a->b 3" };
static const char *const to_a[] = { "b->a one", "b->a two two" };
#define N(x) (sizeof(x) / sizeof((x)[0]))

static void queue(int from, const char *const *msgs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (send(from, msgs[i], strlen(msgs[i]), MSG_NOSIGNAL) != (ssize_t)strlen(msgs[i]))
			zoo_die("send");
}

/* The stream end `at` holds exactly the concatenation of `msgs`. */
static int stream_holds(int at, const char *const *msgs, size_t n)
{
	char want[256] = "", got[256];
	size_t i, off = 0, len;
	ssize_t r;

	for (i = 0; i < n; i++)
		strcat(want, msgs[i]);
	len = strlen(want);
	while (off < len) {
		r = recv(at, got + off, len - off, MSG_DONTWAIT);
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	r = recv(at, got, sizeof(got), MSG_DONTWAIT);
	return off == len && memcmp(got, want, len) == 0 && r == -1 && errno == EAGAIN;
}

/* The seqpacket end `at` holds exactly `msgs`, one message each. */
static int packets_hold(int at, const char *const *msgs, size_t n)
{
	char got[256];
	size_t i;
	ssize_t r;
	int ok = 1;

	for (i = 0; i < n; i++) {
		r = recv(at, got, sizeof(got), MSG_DONTWAIT);
		ok &= r == (ssize_t)strlen(msgs[i]) && memcmp(got, msgs[i], (size_t)r) == 0;
	}
	r = recv(at, got, sizeof(got), MSG_DONTWAIT);
	return ok && r == -1 && errno == EAGAIN;
}

/* A message each way between `a` and `b`. */
static int exchange(int a, int b, int seq)
{
	static const char *const ping[] = { "ping after restore" };
	static const char *const pong[] = { "pong" };

	if (send(a, ping[0], strlen(ping[0]), MSG_NOSIGNAL) != (ssize_t)strlen(ping[0]) ||
	    send(b, pong[0], strlen(pong[0]), MSG_NOSIGNAL) != (ssize_t)strlen(pong[0]))
		return 0;
	if (seq)
		return packets_hold(b, ping, 1) && packets_hold(a, pong, 1);
	return stream_holds(b, ping, 1) && stream_holds(a, pong, 1);
}

int main(int argc, char **argv)
{
	int st[2], sp[2], fl;
	char c[64];

	zoo_init(argc, argv, ITEMS);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sp))
		zoo_die("socketpair");
	queue(st[0], to_b, N(to_b));
	queue(st[1], to_a, N(to_a));
	queue(sp[0], to_b, N(to_b));
	queue(sp[1], to_a, N(to_a));

	zoo_ready();
	if (ZOO_BREAK(STREAM_AB) && recv(st[1], c, 1, 0) != 1)
		zoo_die("recv");
	if (ZOO_BREAK(STREAM_BA))
		queue(st[1], to_a, 1);
	if (ZOO_BREAK(PACKETS_AB) && recv(sp[1], c, sizeof(c), 0) < 0)
		zoo_die("recv");
	if (ZOO_BREAK(PACKETS_BA))
		queue(sp[1], to_a, 1);
	if (ZOO_BREAK(SEQ_NONBLOCK))
		fcntl(sp[0], F_SETFL, 0);
	if (ZOO_BREAK(STREAM_BLOCKING))
		fcntl(st[0], F_SETFL, O_NONBLOCK);
	zoo_wait();

	ZOO_CHECK(STREAM_AB, stream_holds(st[1], to_b, N(to_b)), "stream a->b: not the queued bytes");
	ZOO_CHECK(STREAM_BA, stream_holds(st[0], to_a, N(to_a)), "stream b->a: not the queued bytes");
	ZOO_CHECK(PACKETS_AB, packets_hold(sp[1], to_b, N(to_b)),
		  "seqpacket a->b: not the queued messages");
	ZOO_CHECK(PACKETS_BA, packets_hold(sp[0], to_a, N(to_a)),
		  "seqpacket b->a: not the queued messages");
	fl = fcntl(sp[0], F_GETFL);
	ZOO_CHECK(SEQ_NONBLOCK, fl >= 0 && (fl & O_NONBLOCK),
		  "O_NONBLOCK lost on the seqpacket pair (%#x)", fl);
	fl = fcntl(st[0], F_GETFL);
	ZOO_CHECK(STREAM_BLOCKING, fl >= 0 && !(fl & O_NONBLOCK),
		  "O_NONBLOCK set on the stream pair (%#x)", fl);
	/* The exchanges break with their first end shut for writing. */
	if (ZOO_BREAK(STREAM_EXCHANGE))
		shutdown(st[0], SHUT_WR);
	if (ZOO_BREAK(SEQ_EXCHANGE))
		shutdown(sp[0], SHUT_WR);
	ZOO_CHECK(STREAM_EXCHANGE, exchange(st[0], st[1], 0), "stream exchange after restore");
	ZOO_CHECK(SEQ_EXCHANGE, exchange(sp[0], sp[1], 1), "seqpacket exchange after restore");
	return zoo_done();
}
