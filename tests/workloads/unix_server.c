/*
 * A server process S listening on a path socket (SOCK_STREAM, socket file mode 0640) and
 * on an abstract socket (SOCK_SEQPACKET), and a client process C (its child) connected to
 * each. At ready, unread messages are queued in both directions on both connections, and
 * C has a third connection to the path listener that S has not accepted (pending in the
 * backlog). After SIGTERM, S checks its side, then signals C, and both check: the queued
 * messages arrive intact and in order (message boundaries on the seqpacket connection),
 * the accepted sockets still carry the listener's name, the socket file kept its mode, new
 * messages go both ways, S accepts the pending connection and talks over it, and new
 * connections to both listeners succeed. C's verdict is its exit status, which S adds to
 * its own. A bound socket's name cannot change: the names are checked, but no item.
 */
#include "zoo.h"
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <stddef.h>

enum {
	SOCK_FILE = 1,   /* the path socket's file, mode 0640 */
	S_STREAM_QUEUE,  /* S's stream end holds exactly C's queued messages */
	S_SEQ_QUEUE,     /* S's seqpacket end too */
	C_STREAM_QUEUE,  /* C's stream end holds exactly S's */
	C_SEQ_QUEUE,
	STREAM_EXCHANGE, /* new messages both ways on the stream connection */
	SEQ_EXCHANGE,
	PENDING,         /* S accepts the pending connection; messages both ways on it */
	NEW_STREAM,      /* a new connection to the path listener; messages both ways */
	NEW_SEQ,         /* and to the abstract one */
	ITEMS = NEW_SEQ
};

static const char *const s2c[] = { "s->c 1", "s->c second message", "s->c 3" };
static const char *const c2s[] = { "c->s one", "c->s two two" };
#define N(x) (sizeof(x) / sizeof((x)[0]))

static struct sockaddr_un path_addr, abs_addr;
static socklen_t abs_len;

static void set_timeout(int fd)
{
	struct timeval tv = { .tv_sec = 30 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		zoo_die("SO_RCVTIMEO");
}

static int sock(int type)
{
	int fd = socket(AF_UNIX, type, 0);

	if (fd < 0)
		zoo_die("socket");
	set_timeout(fd);
	return fd;
}

/* A connection to `a`, or -1. */
static int dial_ok(int type, const struct sockaddr_un *a, socklen_t len)
{
	int fd = sock(type);

	if (connect(fd, (const struct sockaddr *)a, len)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int dial(int type, const struct sockaddr_un *a, socklen_t len)
{
	int fd = dial_ok(type, a, len);

	if (fd < 0)
		zoo_die("connect");
	return fd;
}

static int put_ok(int fd, const char *m)
{
	return send(fd, m, strlen(m), MSG_NOSIGNAL) == (ssize_t)strlen(m);
}

static void put(int fd, const char *m)
{
	if (!put_ok(fd, m))
		zoo_die("send");
}

/* Reads exactly strlen(want) bytes (one message on seqpacket) and compares. */
static void expect_f(int item, int fd, const char *want, const char *what, int flags)
{
	char got[256];
	size_t len = strlen(want), off = 0;
	ssize_t r;

	while (off < len) {
		r = recv(fd, got + off, len - off, flags);
		if (r <= 0) {
			zoo_fail(item, "%s: recv after %zu of %zu bytes: %zd (%s)", what, off, len, r,
				 strerror(errno));
			return;
		}
		off += (size_t)r;
	}
	ZOO_CHECK(item, memcmp(got, want, len) == 0, "%s: got \"%.*s\", want \"%s\"", what,
		  (int)len, got, want);
}

static void expect(int item, int fd, const char *want, const char *what)
{
	expect_f(item, fd, want, what, 0);
}

/* Sends `m` on `fd` as part of `item`. */
static void send_item(int item, int fd, const char *m, const char *what)
{
	ZOO_CHECK(item, put_ok(fd, m), "%s: send: %s", what, strerror(errno));
}

/* `fd` holds exactly `msgs` (and nothing more right now). */
static void expect_queued(int item, int fd, const char *const *msgs, size_t n, const char *what)
{
	char got[256];
	size_t i;
	ssize_t r;

	for (i = 0; i < n; i++)
		expect_f(item, fd, msgs[i], what, MSG_DONTWAIT);
	r = recv(fd, got, sizeof(got), MSG_DONTWAIT);
	ZOO_CHECK(item, r == -1 && errno == EAGAIN, "%s: %zd more bytes after the queued ones", what,
		  r);
}

static void expect_name(int fd, const struct sockaddr_un *a, socklen_t len, const char *what)
{
	struct sockaddr_un got;
	socklen_t gl = sizeof(got);

	memset(&got, 0, sizeof(got));
	if (getsockname(fd, (struct sockaddr *)&got, &gl)) {
		zoo_fail(0, "%s: getsockname: %s", what, strerror(errno));
		return;
	}
	/* The kernel may count a path's terminating NUL. */
	ZOO_CHECK(ZOO_UNBREAKABLE, (gl == len || gl == len + 1) && memcmp(&got, a, len) == 0,
		  "%s: name of %u bytes, want %u", what, gl, len);
}

static int client(int ready_fd)
{
	int st, sq, pend, n1, n2;
	size_t i;
	char c;

	st = dial(SOCK_STREAM, &path_addr, sizeof(path_addr));
	sq = dial(SOCK_SEQPACKET, &abs_addr, abs_len);
	/* Wait until S accepted both, then queue; S queues its own. */
	if (read(ready_fd, &c, 1) != 1)
		zoo_die("read go");
	for (i = 0; i < N(c2s); i++) {
		put(st, c2s[i]);
		put(sq, c2s[i]);
	}
	pend = dial(SOCK_STREAM, &path_addr, sizeof(path_addr));
	if (write(ready_fd, "c", 1) != 1)
		zoo_die("write ready");
	zoo_wait();

	expect_queued(C_STREAM_QUEUE, st, s2c, N(s2c), "C stream queue");
	expect_queued(C_SEQ_QUEUE, sq, s2c, N(s2c), "C seqpacket queue");
	/* The exchanges break with C's end shut. */
	if (ZOO_BREAK(STREAM_EXCHANGE))
		shutdown(st, SHUT_WR);
	if (ZOO_BREAK(SEQ_EXCHANGE))
		shutdown(sq, SHUT_WR);
	if (ZOO_BREAK(PENDING))
		shutdown(pend, SHUT_RDWR);
	send_item(STREAM_EXCHANGE, st, "c->s after restore", "C stream");
	send_item(SEQ_EXCHANGE, sq, "c->s after restore", "C seqpacket");
	expect(STREAM_EXCHANGE, st, "s->c reply", "C stream reply");
	expect(SEQ_EXCHANGE, sq, "s->c reply", "C seqpacket reply");
	expect(PENDING, pend, "s->c on the once pending connection", "C pending");
	send_item(PENDING, pend, "c->s on the once pending connection", "C pending");
	n1 = dial_ok(SOCK_STREAM, &path_addr, sizeof(path_addr));
	ZOO_CHECK(NEW_STREAM, n1 >= 0, "C: new stream connection: %s", strerror(errno));
	n2 = dial_ok(SOCK_SEQPACKET, &abs_addr, abs_len);
	ZOO_CHECK(NEW_SEQ, n2 >= 0, "C: new seqpacket connection: %s", strerror(errno));
	if (n1 >= 0)
		send_item(NEW_STREAM, n1, "c->s new stream", "C new stream");
	if (n2 >= 0)
		send_item(NEW_SEQ, n2, "c->s new seqpacket", "C new seqpacket");
	if (n1 >= 0)
		expect(NEW_STREAM, n1, "s->c new stream", "C new stream");
	if (n2 >= 0)
		expect(NEW_SEQ, n2, "s->c new seqpacket", "C new seqpacket");
	return zoo_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	int ls, lq, st, sq, pend, n1, n2, go[2];
	struct stat sb;
	pid_t me = getpid(), c;
	size_t i;
	char ch, buf[64];

	zoo_init(argc, argv, ITEMS);
	memset(&path_addr, 0, sizeof(path_addr));
	path_addr.sun_family = AF_UNIX;
	snprintf(path_addr.sun_path, sizeof(path_addr.sun_path), "%s", zoo_path("srv.sock"));
	memset(&abs_addr, 0, sizeof(abs_addr));
	abs_addr.sun_family = AF_UNIX;
	abs_len = offsetof(struct sockaddr_un, sun_path) + 1 +
		  (socklen_t)snprintf(abs_addr.sun_path + 1, sizeof(abs_addr.sun_path) - 1,
				      "crs-zoo-unix-server-%d", (int)me);

	unlink(path_addr.sun_path);
	ls = sock(SOCK_STREAM);
	if (bind(ls, (struct sockaddr *)&path_addr, sizeof(path_addr)) || listen(ls, 4))
		zoo_die("bind/listen path");
	if (chmod(path_addr.sun_path, 0640))
		zoo_die("chmod");
	lq = sock(SOCK_SEQPACKET);
	if (bind(lq, (struct sockaddr *)&abs_addr, abs_len) || listen(lq, 4))
		zoo_die("bind/listen abstract");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go))
		zoo_die("socketpair");

	c = fork();
	if (c < 0)
		zoo_die("fork");
	if (c == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != me)
			_exit(2);
		close(go[0]);
		close(ls);
		close(lq);
		return client(go[1]);
	}
	close(go[1]);
	st = accept(ls, NULL, NULL);
	sq = accept(lq, NULL, NULL);
	if (st < 0 || sq < 0)
		zoo_die("accept");
	set_timeout(st);
	for (i = 0; i < N(s2c); i++) {
		put(st, s2c[i]);
		put(sq, s2c[i]);
	}
	if (write(go[0], "s", 1) != 1 || read(go[0], &ch, 1) != 1)
		zoo_die("handshake with C");
	close(go[0]);

	zoo_ready();
	if (ZOO_BREAK(SOCK_FILE))
		chmod(path_addr.sun_path, 0600);
	if (ZOO_BREAK(S_STREAM_QUEUE) && recv(st, buf, 1, 0) != 1)
		zoo_die("recv");
	if (ZOO_BREAK(S_SEQ_QUEUE) && recv(sq, buf, sizeof(buf), 0) < 0)
		zoo_die("recv");
	if (ZOO_BREAK(C_STREAM_QUEUE))
		put(st, "+");
	if (ZOO_BREAK(C_SEQ_QUEUE))
		put(sq, "one more");
	zoo_wait();

	ZOO_CHECK(SOCK_FILE,
		  stat(path_addr.sun_path, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
			  (sb.st_mode & 07777) == 0640,
		  "socket file %s: mode %o", path_addr.sun_path, sb.st_mode);
	expect_name(ls, &path_addr, sizeof(sa_family_t) + strlen(path_addr.sun_path), "path listener");
	expect_name(st, &path_addr, sizeof(sa_family_t) + strlen(path_addr.sun_path), "accepted stream");
	expect_name(lq, &abs_addr, abs_len, "abstract listener");
	expect_name(sq, &abs_addr, abs_len, "accepted seqpacket");
	expect_queued(S_STREAM_QUEUE, st, c2s, N(c2s), "S stream queue");
	expect_queued(S_SEQ_QUEUE, sq, c2s, N(c2s), "S seqpacket queue");
	/* C sends nothing before its SIGTERM: the queue checks above are exact. */
	if (kill(c, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	expect(STREAM_EXCHANGE, st, "c->s after restore", "S stream");
	expect(SEQ_EXCHANGE, sq, "c->s after restore", "S seqpacket");
	send_item(STREAM_EXCHANGE, st, "s->c reply", "S stream");
	send_item(SEQ_EXCHANGE, sq, "s->c reply", "S seqpacket");
	pend = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
	ZOO_CHECK(PENDING, pend >= 0, "no pending connection to accept: %s", strerror(errno));
	if (pend >= 0) {
		int fl = fcntl(pend, F_GETFL);
		fcntl(pend, F_SETFL, fl & ~O_NONBLOCK);
		set_timeout(pend);
		send_item(PENDING, pend, "s->c on the once pending connection", "S pending");
		expect(PENDING, pend, "c->s on the once pending connection", "S pending");
	}
	/* The new connections break with their listener closed. */
	if (ZOO_BREAK(NEW_STREAM))
		close(ls);
	if (ZOO_BREAK(NEW_SEQ))
		close(lq);
	n1 = accept(ls, NULL, NULL);
	ZOO_CHECK(NEW_STREAM, n1 >= 0, "new stream connection not accepted: %s", strerror(errno));
	if (n1 >= 0) {
		set_timeout(n1);
		expect(NEW_STREAM, n1, "c->s new stream", "S new stream");
		send_item(NEW_STREAM, n1, "s->c new stream", "S new stream");
	}
	n2 = accept(lq, NULL, NULL);
	ZOO_CHECK(NEW_SEQ, n2 >= 0, "new seqpacket connection not accepted: %s", strerror(errno));
	if (n2 >= 0) {
		set_timeout(n2);
		expect(NEW_SEQ, n2, "c->s new seqpacket", "S new seqpacket");
		send_item(NEW_SEQ, n2, "s->c new seqpacket", "S new seqpacket");
	}
	zoo_reap(c, "C");
	return zoo_done();
}
