/*
 * Unix sockets between processes without names: a SOCK_STREAM socketpair made before
 * fork() whose ends are split (P keeps one, its child B the other), with unread bytes
 * queued both ways, and a SOCK_SEQPACKET socketpair whose both ends both processes keep
 * (each end's open description shared by P and B), with messages queued on each end.
 * After SIGTERM, P checks the queues on its side, signals B, B checks its side, then
 * messages go both ways on the split pair and, on the shared pair, B writes into one
 * end and P reads from the other. B's verdict is its exit status, which P adds to its own.
 */
#include "zoo.h"
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

enum {
	B_SPLIT = 1,    /* B's end of the split pair holds exactly its queued bytes */
	P_SPLIT,        /* P's end too */
	SH1_QUEUE,      /* the shared pair's end sh1 holds exactly its two messages */
	SH0_QUEUE,      /* and sh0 its one */
	SPLIT_EXCHANGE, /* new messages go both ways on the split pair */
	SHARED_ACROSS,  /* what B writes into sh0 comes out of sh1 at P */
	ITEMS = SHARED_ACROSS
};

static void set_timeout(int fd)
{
	struct timeval tv = { .tv_sec = 30 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		zoo_die("SO_RCVTIMEO");
}

static void put(int fd, const char *m)
{
	if (send(fd, m, strlen(m), MSG_NOSIGNAL) != (ssize_t)strlen(m))
		zoo_die("send");
}

static int put_ok(int fd, const char *m)
{
	return send(fd, m, strlen(m), MSG_NOSIGNAL) == (ssize_t)strlen(m);
}

static void expect_f(int item, int fd, const char *want, const char *what, int flags)
{
	char got[4096];
	size_t len = strlen(want), off = 0;
	ssize_t r;

	if (len > sizeof(got))
		zoo_die("message too long");
	while (off < len) {
		r = recv(fd, got + off, len - off, flags);
		if (r <= 0) {
			zoo_fail(item, "%s: recv after %zu of %zu bytes: %zd (%s)", what, off, len, r,
				 strerror(errno));
			return;
		}
		off += (size_t)r;
	}
	ZOO_CHECK(item, memcmp(got, want, len) == 0, "%s: got \"%.40s\", want \"%.40s\"", what,
		  got, want);
}

static void expect_empty(int item, int fd, const char *what)
{
	char got[64];
	ssize_t r = recv(fd, got, sizeof(got), MSG_DONTWAIT);

	ZOO_CHECK(item, r == -1 && errno == EAGAIN, "%s: %zd more bytes after the queued ones", what,
		  r);
}

int main(int argc, char **argv)
{
	int sp[2], sh[2];
	pid_t me = getpid(), b;
	char big[3000];

	zoo_init(argc, argv, ITEMS);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sh))
		zoo_die("socketpair");
	set_timeout(sp[0]);
	set_timeout(sp[1]);
	set_timeout(sh[0]);
	set_timeout(sh[1]);
	zoo_fill(big, sizeof(big), 42);
	big[sizeof(big) - 1] = 0;
	for (size_t i = 0; i + 1 < sizeof(big); i++)
		big[i] = (char)('a' + (unsigned char)big[i] % 26);

	/* Queued before fork: P's side (sp[0]) holds "to P", B's (sp[1]) "to B" + big. */
	put(sp[1], "to P: 64 bytes or so, never read before the dump, 0123456789");
	put(sp[0], "to B: first");
	put(sp[0], big);
	put(sh[0], "shared msg 1 into sh1");
	put(sh[0], "shared msg 2 into sh1");
	put(sh[1], "shared msg into sh0");

	b = fork();
	if (b < 0)
		zoo_die("fork");
	if (b == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != me)
			_exit(2);
		close(sp[0]);
		zoo_wait();
		expect_f(B_SPLIT, sp[1], "to B: first", "B split queue", MSG_DONTWAIT);
		expect_f(B_SPLIT, sp[1], big, "B split queue (3000 bytes)", MSG_DONTWAIT);
		expect_empty(B_SPLIT, sp[1], "B split queue");
		/* The exchanges break with B's end shut for writing. */
		if (ZOO_BREAK(SPLIT_EXCHANGE))
			shutdown(sp[1], SHUT_WR);
		if (ZOO_BREAK(SHARED_ACROSS))
			shutdown(sh[0], SHUT_WR);
		ZOO_CHECK(SPLIT_EXCHANGE, put_ok(sp[1], "B->P after restore"), "B: send to P: %s",
			  strerror(errno));
		expect_f(SPLIT_EXCHANGE, sp[1], "P->B after restore", "B split", 0);
		ZOO_CHECK(SHARED_ACROSS, put_ok(sh[0], "B into sh0 after restore"),
			  "B: send into sh0: %s", strerror(errno));
		return zoo_failures ? 1 : 0;
	}
	close(sp[1]);

	zoo_ready();
	if (ZOO_BREAK(B_SPLIT))
		put(sp[0], "+");
	if (ZOO_BREAK(P_SPLIT) && recv(sp[0], big, 1, 0) != 1)
		zoo_die("recv");
	if (ZOO_BREAK(SH1_QUEUE) && recv(sh[1], big, sizeof(big), 0) < 0)
		zoo_die("recv");
	if (ZOO_BREAK(SH0_QUEUE))
		put(sh[1], "one more into sh0");
	zoo_wait();

	expect_f(P_SPLIT, sp[0], "to P: 64 bytes or so, never read before the dump, 0123456789",
		 "P split queue", MSG_DONTWAIT);
	expect_empty(P_SPLIT, sp[0], "P split queue");
	expect_f(SH1_QUEUE, sh[1], "shared msg 1 into sh1", "shared sh1 queue", MSG_DONTWAIT);
	expect_f(SH1_QUEUE, sh[1], "shared msg 2 into sh1", "shared sh1 queue", MSG_DONTWAIT);
	expect_empty(SH1_QUEUE, sh[1], "shared sh1 queue");
	expect_f(SH0_QUEUE, sh[0], "shared msg into sh0", "shared sh0 queue", MSG_DONTWAIT);
	expect_empty(SH0_QUEUE, sh[0], "shared sh0 queue");
	if (kill(b, SIGTERM))
		zoo_fail(0, "kill B: %s", strerror(errno));
	expect_f(SPLIT_EXCHANGE, sp[0], "B->P after restore", "P split", 0);
	put(sp[0], "P->B after restore");
	expect_f(SHARED_ACROSS, sh[1], "B into sh0 after restore", "shared pair across processes",
		 0);
	zoo_reap(b, "B");
	return zoo_done();
}
