/* Blocked in read(2) on an empty pipe it holds both ends of; the SIGTERM handler writes
 * the data the read then returns. A second pipe holds 60000 unread bytes in its buffer. */
#include "zoo.h"
#include <poll.h>

enum {
	WAKE_DATA = 1, /* the blocked read returns what the SIGTERM handler wrote */
	WOKEN_BY_TERM, /* and not before SIGTERM */
	BUFFERED,      /* the 60000 bytes, intact */
	NONBLOCK,      /* the buffered pipe's O_NONBLOCK */
	DRAINED,       /* and nothing after them */
	ITEMS = DRAINED
};

static int wake[2];
static const char msg[] = "woken after restore";
static const char other[] = "woken after restorE";

static void on_term(int sig)
{
	const char *m = ZOO_BREAK(WAKE_DATA) ? other : msg;

	(void)sig;
	zoo_term = 1;
	if (write(wake[1], m, sizeof(msg)) != sizeof(msg))
		_exit(3);
}

int main(int argc, char **argv)
{
	static unsigned char buffered[60000], back[60000];
	struct sigaction sa;
	char got[64];
	int full[2], flags;
	struct pollfd pfd;
	ssize_t n;
	size_t off;

	zoo_init(argc, argv, ITEMS);
	if (pipe2(wake, 0) || pipe2(full, O_NONBLOCK))
		zoo_die("pipe");
	zoo_fill(buffered, sizeof(buffered), 99);
	if (write(full[1], buffered, sizeof(buffered)) != sizeof(buffered))
		zoo_die("fill pipe");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	/* To break WOKEN_BY_TERM, SIGTERM stays blocked: the data written after ready then
	 * comes before it, and the read returns early. */
	if (!ZOO_BREAK(WOKEN_BY_TERM))
		zoo_unblock_term();

	zoo_ready();
	if (ZOO_BREAK(WOKEN_BY_TERM) && write(wake[1], msg, sizeof(msg)) != sizeof(msg))
		zoo_die("write the wake pipe");
	if (ZOO_BREAK(BUFFERED) && read(full[0], back, 1) != 1)
		zoo_die("read the buffered pipe");
	if (ZOO_BREAK(NONBLOCK))
		fcntl(full[0], F_SETFL, 0);
	if (ZOO_BREAK(DRAINED) && write(full[1], "+", 1) != 1)
		zoo_die("write the buffered pipe");
	n = read(wake[0], got, sizeof(got));
	ZOO_CHECK(WAKE_DATA, n == sizeof(msg) && memcmp(got, msg, sizeof(msg)) == 0,
		  "read on the wake pipe returned %zd (%s)", n, n < 0 ? strerror(errno) : "data");
	ZOO_CHECK(WOKEN_BY_TERM, zoo_term, "read returned before SIGTERM");

	for (off = 0; off < sizeof(back);) {
		n = read(full[0], back + off, sizeof(back) - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	ZOO_CHECK(BUFFERED, off == sizeof(back) && memcmp(back, buffered, sizeof(back)) == 0,
		  "buffered pipe data: got %zu bytes, want %zu intact", off, sizeof(back));
	flags = fcntl(full[0], F_GETFL);
	ZOO_CHECK(NONBLOCK, flags >= 0 && (flags & O_NONBLOCK), "O_NONBLOCK lost on the pipe (%#x)",
		  flags);
	pfd.fd = full[0];
	pfd.events = POLLIN;
	ZOO_CHECK(DRAINED, poll(&pfd, 1, 0) == 0, "the drained pipe is still readable");
	/* Exits after SIGTERM only, also when the read above returned early. */
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &sa.sa_mask, NULL);
	zoo_wait();
	return zoo_done();
}
