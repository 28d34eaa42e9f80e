/* Blocked in read(2) on an empty pipe it holds both ends of; the SIGTERM handler writes
 * the data the read then returns. A second pipe holds 60000 unread bytes in its buffer. */
#include "zoo.h"

static int wake[2];
static const char msg[] = "woken after restore";

static void on_term(int sig)
{
	(void)sig;
	zoo_term = 1;
	if (write(wake[1], msg, sizeof(msg)) != sizeof(msg))
		_exit(3);
}

int main(int argc, char **argv)
{
	static unsigned char buffered[60000], back[60000];
	struct sigaction sa;
	char got[64];
	int full[2], flags;
	ssize_t n;
	size_t off;

	zoo_init(argc, argv);
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
	zoo_unblock_term();

	zoo_ready();
	if (zoo_corrupt && read(full[0], back, 1) != 1)
		zoo_die("corrupt");
	n = read(wake[0], got, sizeof(got));
	ZOO_CHECK(n == sizeof(msg) && memcmp(got, msg, sizeof(msg)) == 0,
		  "read on the wake pipe returned %zd (%s)", n, n < 0 ? strerror(errno) : "data");
	ZOO_CHECK(zoo_term, "read returned before SIGTERM");

	for (off = 0; off < sizeof(back);) {
		n = read(full[0], back + off, sizeof(back) - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	ZOO_CHECK(off == sizeof(back) && memcmp(back, buffered, sizeof(back)) == 0,
		  "buffered pipe data: got %zu bytes, want %zu intact", off, sizeof(back));
	flags = fcntl(full[0], F_GETFL);
	ZOO_CHECK(flags >= 0 && (flags & O_NONBLOCK), "O_NONBLOCK lost on the pipe (%#x)", flags);
	n = read(full[0], back, 1);
	ZOO_CHECK(n == -1 && errno == EAGAIN, "drained pipe read gave %zd", n);
	return zoo_done();
}
