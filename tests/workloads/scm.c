/* File descriptors in flight: messages queued on unix sockets that pass fds (SCM_RIGHTS).
 * A stream pair queues "two fds" passing a regular file (opened read-write, offset 5) and
 * the write end of a pipe, then "plain two". A seqpacket pair queues "plain seq", then a
 * message passing an eventfd; a datagram pair one passing a directory. (Stream bytes
 * queued before a message that passes fds cannot be told from it by a peek, which is how
 * crs and CRIU read a queue: they come back with the fds, so this stream has none.) The process keeps its own fd
 * of everything it passed. After SIGTERM every message is received in order, with its fds,
 * and each received fd must be the same open file description as the one kept (a shared
 * offset, a shared pipe, a shared eventfd counter, the same directory), not a reopening. */
#include "zoo.h"
#include <sys/eventfd.h>
#include <sys/socket.h>

enum {
	STREAM_ORDER = 1, /* the stream pair holds the three messages in order, nothing else */
	SAME_FILE,        /* the passed file shares its offset with the kept fd */
	SAME_PIPE,        /* the passed pipe end writes into the kept pipe */
	SEQ_EVENTFD,      /* the seqpacket message passes the kept eventfd */
	DGRAM_DIR,        /* the datagram message passes the kept directory */
	ITEMS = DGRAM_DIR
};

/* Sends `msg` on `sk` passing the `n` fds of `fds` (none when n is 0). */
static void send_fds(int sk, const char *msg, const int *fds, int n)
{
	char control[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (n) {
		memset(control, 0, sizeof(control));
		mh.msg_control = control;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
	}
	if (sendmsg(sk, &mh, MSG_NOSIGNAL) != (ssize_t)strlen(msg))
		zoo_die("sendmsg");
}

/* Receives one message on `sk` (non-blocking): 1 when its text is `want` and it passes
 * exactly `n` fds, stored in `fds`. */
static int recv_fds(int sk, const char *want, int *fds, int n)
{
	char buf[64], control[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { .iov_base = buf, .iov_len = strlen(want) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			     .msg_controllen = sizeof(control) };
	struct cmsghdr *c;
	ssize_t r;
	int got = 0;

	r = recvmsg(sk, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (r != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)r) != 0)
		return 0;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			return 0;
		got = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		if (got != n)
			return 0;
		memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)n);
	}
	return got == n;
}

/* Puts a new open description of `path` (or a new object from `make`) at fd `fd`: the
 * number stays, the description changes. */
static void replace_fd(int fd, int fresh)
{
	if (fresh < 0 || dup2(fresh, fd) < 0)
		zoo_die("replace fd");
	close(fresh);
}

int main(int argc, char **argv)
{
	int st[2], sp[2], dg[2], pipefd[2], file, efd, dir, fds[2], got[2], ok;
	char buf[16];
	uint64_t v;
	struct stat a, b;

	zoo_init(argc, argv, ITEMS);
	file = open("passed.txt", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (file < 0 || write(file, "hello from the passed file", 26) != 26 ||
	    lseek(file, 5, SEEK_SET) != 5)
		zoo_die("file");
	if (pipe(pipefd) || (efd = eventfd(7, 0)) < 0 ||
	    (dir = open(".", O_RDONLY | O_DIRECTORY)) < 0)
		zoo_die("pipe/eventfd/dir");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) ||
	    socketpair(AF_UNIX, SOCK_DGRAM, 0, dg))
		zoo_die("socketpair");
	fds[0] = file;
	fds[1] = pipefd[1];
	send_fds(st[0], "two fds", fds, 2);
	send_fds(st[0], "plain two", NULL, 0);
	send_fds(sp[0], "plain seq", NULL, 0);
	send_fds(sp[0], "an eventfd", &efd, 1);
	send_fds(dg[0], "a directory", &dir, 1);

	zoo_ready();
	if (ZOO_BREAK(STREAM_ORDER))
		send_fds(st[0], "one more", NULL, 0);
	if (ZOO_BREAK(SAME_FILE))
		replace_fd(file, open("passed.txt", O_RDWR));
	if (ZOO_BREAK(SAME_PIPE)) {
		int other[2];

		/* The old pipe keeps a reader: a write into it must not raise SIGPIPE. */
		if (pipe(other) || dup(pipefd[0]) < 0)
			zoo_die("pipe");
		replace_fd(pipefd[0], other[0]);
		close(other[1]);
	}
	if (ZOO_BREAK(SEQ_EVENTFD))
		replace_fd(efd, eventfd(7, 0));
	if (ZOO_BREAK(DGRAM_DIR))
		replace_fd(dir, open("/", O_RDONLY | O_DIRECTORY));
	zoo_wait();

	got[0] = got[1] = -1;
	ok = recv_fds(st[1], "two fds", got, 2) && recv_fds(st[1], "plain two", NULL, 0);
	ZOO_CHECK(STREAM_ORDER, ok && recv(st[1], buf, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN,
		  "the stream pair does not hold two fds, plain two (and nothing else)");
	/* The same description: moving one offset moves the other. */
	ZOO_CHECK(SAME_FILE,
		  got[0] >= 0 && lseek(got[0], 0, SEEK_CUR) == 5 && lseek(file, 11, SEEK_SET) == 11 &&
			  lseek(got[0], 0, SEEK_CUR) == 11,
		  "the passed file does not share its offset with the kept fd");
	ZOO_CHECK(SAME_PIPE,
		  got[1] >= 0 && write(got[1], "p", 1) == 1 &&
			  (fcntl(pipefd[0], F_SETFL, O_NONBLOCK), read(pipefd[0], buf, 1) == 1) &&
			  buf[0] == 'p',
		  "the passed pipe end does not write into the kept pipe");
	ok = recv_fds(sp[1], "plain seq", NULL, 0) && recv_fds(sp[1], "an eventfd", got, 1) &&
	     write(efd, &(uint64_t){ 3 }, 8) == 8 &&
	     read(got[0], &v, 8) == 8 && v == 10;
	ZOO_CHECK(SEQ_EVENTFD, ok, "the passed eventfd is not the kept one (counter 7 + 3)");
	ok = recv_fds(dg[1], "a directory", got, 1) && fstat(got[0], &a) == 0 &&
	     fstat(dir, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
	ZOO_CHECK(DGRAM_DIR, ok, "the passed directory is not the kept one");
	return zoo_done();
}
