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

static void expect_f(int fd, const char *want, const char *what, int flags)
{
	char got[4096];
	size_t len = strlen(want), off = 0;
	ssize_t r;

	if (len > sizeof(got))
		zoo_die("message too long");
	while (off < len) {
		r = recv(fd, got + off, len - off, flags);
		if (r <= 0) {
			zoo_fail("%s: recv after %zu of %zu bytes: %zd (%s)", what, off, len, r,
				 strerror(errno));
			return;
		}
		off += (size_t)r;
	}
	ZOO_CHECK(memcmp(got, want, len) == 0, "%s: got \"%.40s\", want \"%.40s\"", what, got,
		  want);
}

static void expect_empty(int fd, const char *what)
{
	char got[64];
	ssize_t r = recv(fd, got, sizeof(got), MSG_DONTWAIT);

	ZOO_CHECK(r == -1 && errno == EAGAIN, "%s: %zd more bytes after the queued ones", what, r);
}

int main(int argc, char **argv)
{
	int sp[2], sh[2], status;
	pid_t me = getpid(), b;
	char big[3000];

	zoo_init(argc, argv);
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
		expect_f(sp[1], "to B: first", "B split queue", MSG_DONTWAIT);
		expect_f(sp[1], big, "B split queue (3000 bytes)", MSG_DONTWAIT);
		expect_empty(sp[1], "B split queue");
		put(sp[1], "B->P after restore");
		expect_f(sp[1], "P->B after restore", "B split", 0);
		put(sh[0], "B into sh0 after restore");
		return zoo_failures ? 1 : 0;
	}
	close(sp[1]);

	zoo_ready();
	if (zoo_corrupt) {
		char c[8];
		if (recv(sh[0], c, sizeof(c), 0) < 0)
			zoo_die("corrupt");
	}
	zoo_wait();

	expect_f(sp[0], "to P: 64 bytes or so, never read before the dump, 0123456789",
		 "P split queue", MSG_DONTWAIT);
	expect_empty(sp[0], "P split queue");
	expect_f(sh[1], "shared msg 1 into sh1", "shared sh1 queue", MSG_DONTWAIT);
	expect_f(sh[1], "shared msg 2 into sh1", "shared sh1 queue", MSG_DONTWAIT);
	expect_empty(sh[1], "shared sh1 queue");
	expect_f(sh[0], "shared msg into sh0", "shared sh0 queue", MSG_DONTWAIT);
	expect_empty(sh[0], "shared sh0 queue");
	if (kill(b, SIGTERM))
		zoo_fail("kill B: %s", strerror(errno));
	expect_f(sp[0], "B->P after restore", "P split", 0);
	put(sp[0], "P->B after restore");
	expect_f(sh[1], "B into sh0 after restore", "shared pair across processes", 0);
	if (waitpid(b, &status, 0) != b)
		zoo_fail("waitpid B: %s", strerror(errno));
	else
		ZOO_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "B ended with status %#x",
			  status);
	return zoo_done();
}
