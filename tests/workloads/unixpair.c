/* Two socketpairs held by one process, a SOCK_STREAM one and a SOCK_SEQPACKET one (its
 * ends non-blocking), with unread messages queued in both directions. After SIGTERM every
 * queued message is read back in order (message boundaries kept on the seqpacket pair),
 * then more messages are exchanged both ways on each pair. */
#include "zoo.h"
#include <sys/socket.h>

static const char *const to_b[] = { "a->b first", "a->b second, longer message", "a->b 3" };
static const char *const to_a[] = { "b->a one", "b->a two two" };
#define N(x) (sizeof(x) / sizeof((x)[0]))

static void queue(int from, const char *const *msgs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (send(from, msgs[i], strlen(msgs[i]), 0) != (ssize_t)strlen(msgs[i]))
			zoo_die("send");
}

/* The stream end `at` holds exactly the concatenation of `msgs`. */
static void check_stream(int at, const char *const *msgs, size_t n, const char *what)
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
	ZOO_CHECK(off == len && memcmp(got, want, len) == 0, "%s: got %zu of %zu bytes intact",
		  what, off, len);
	r = recv(at, got, sizeof(got), MSG_DONTWAIT);
	ZOO_CHECK(r == -1 && errno == EAGAIN, "%s: %zd more bytes after the queued ones", what, r);
}

/* The seqpacket end `at` holds exactly `msgs`, one message each. */
static void check_packets(int at, const char *const *msgs, size_t n, const char *what)
{
	char got[256];
	size_t i;
	ssize_t r;

	for (i = 0; i < n; i++) {
		r = recv(at, got, sizeof(got), 0);
		ZOO_CHECK(r == (ssize_t)strlen(msgs[i]) && memcmp(got, msgs[i], (size_t)r) == 0,
			  "%s: message %zu: got %zd bytes, want \"%s\"", what, i, r, msgs[i]);
	}
	r = recv(at, got, sizeof(got), 0);
	ZOO_CHECK(r == -1 && errno == EAGAIN, "%s: %zd more bytes after the queued ones", what, r);
}

static void exchange(int a, int b, const char *what)
{
	static const char *const ping[] = { "ping after restore" };
	static const char *const pong[] = { "pong" };
	int fl = fcntl(a, F_GETFL);

	queue(a, ping, 1);
	queue(b, pong, 1);
	if (fl & O_NONBLOCK) {
		check_packets(b, ping, 1, what);
		check_packets(a, pong, 1, what);
	} else {
		check_stream(b, ping, 1, what);
		check_stream(a, pong, 1, what);
	}
}

int main(int argc, char **argv)
{
	int st[2], sp[2], fl;

	zoo_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sp))
		zoo_die("socketpair");
	queue(st[0], to_b, N(to_b));
	queue(st[1], to_a, N(to_a));
	queue(sp[0], to_b, N(to_b));
	queue(sp[1], to_a, N(to_a));

	zoo_ready();
	if (zoo_corrupt) {
		char c[64];
		if (recv(sp[1], c, sizeof(c), 0) < 0)
			zoo_die("corrupt");
	}
	zoo_wait();

	check_stream(st[1], to_b, N(to_b), "stream a->b");
	check_stream(st[0], to_a, N(to_a), "stream b->a");
	check_packets(sp[1], to_b, N(to_b), "seqpacket a->b");
	check_packets(sp[0], to_a, N(to_a), "seqpacket b->a");
	fl = fcntl(sp[0], F_GETFL);
	ZOO_CHECK(fl >= 0 && (fl & O_NONBLOCK), "O_NONBLOCK lost on the seqpacket pair (%#x)", fl);
	fl = fcntl(st[0], F_GETFL);
	ZOO_CHECK(fl >= 0 && !(fl & O_NONBLOCK), "O_NONBLOCK set on the stream pair (%#x)", fl);
	exchange(st[0], st[1], "stream exchange");
	exchange(sp[0], sp[1], "seqpacket exchange");
	return zoo_done();
}
