/*
 * SOCK_DGRAM unix sockets: a server bound to a path (socket file mode 0604), a client
 * bound to an abstract name and connected to the server, held by the child B, an
 * unconnected unnamed sender that uses sendto(), and an unnamed datagram socketpair. At
 * ready the server holds messages from the client and the sender (interleaved), the
 * client holds replies of the server, the pair holds messages both ways. After SIGTERM
 * P checks its queues (order and message boundaries), signals B, B checks its queue and
 * that it is still connected to the server, then new messages go from B to the server
 * (send without an address), from the server to B (sendto its name) and from the sender.
 * Two more bound sockets of P: one bound to a relative name (in its cwd, ZOO_TMP), one
 * whose socket file was removed after bind; each holds a message and keeps its name, and
 * the removed file stays removed.
 */
#include "zoo.h"
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

enum {
	SRV_FILE = 1, /* the server's socket file, mode 0604 */
	SRV_QUEUE,    /* exactly the three messages, in order */
	PAIR1_QUEUE,  /* the pair's end 1 holds exactly its message */
	PAIR0_QUEUE,  /* end 0 its two */
	REL_SOCKET,   /* the relative name: its message, its name, its file */
	GONE_SOCKET,  /* the removed file's: its message, its name, no file */
	B_QUEUE,      /* B's client holds exactly the server's two replies */
	B_CONNECTED,  /* B's client is connected to the server: a send without address arrives */
	SRV_TO_B,     /* the server reaches B's abstract name */
	SENDER,       /* the unconnected sender reaches the server */
	PAIR_AFTER,   /* the pair carries a new message */
	ITEMS = PAIR_AFTER
};

static struct sockaddr_un srv_addr, cli_addr;
static socklen_t srv_len, cli_len;

static int dsock(void)
{
	struct timeval tv = { .tv_sec = 30 };
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

	if (fd < 0)
		zoo_die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		zoo_die("SO_RCVTIMEO");
	return fd;
}

static int put_ok(int fd, const char *m, const struct sockaddr_un *to, socklen_t len)
{
	return sendto(fd, m, strlen(m), MSG_NOSIGNAL, (const struct sockaddr *)to, len) ==
	       (ssize_t)strlen(m);
}

static void put(int fd, const char *m, const struct sockaddr_un *to, socklen_t len)
{
	if (!put_ok(fd, m, to, len))
		zoo_die("sendto");
}

/* The next message on `fd` is `want` (flags: MSG_DONTWAIT for queued ones). */
static void expect(int item, int fd, const char *want, const char *what, int flags)
{
	char got[256];
	ssize_t r = recv(fd, got, sizeof(got), flags);

	ZOO_CHECK(item, r == (ssize_t)strlen(want) && memcmp(got, want, (size_t)r) == 0,
		  "%s: got %zd bytes \"%.*s\", want \"%s\" (%s)", what, r, r > 0 ? (int)r : 0, got,
		  want, r < 0 ? strerror(errno) : "");
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
	int srv, cli, snd, pr[2], rel, gone, f, ok;
	struct sockaddr_un rel_addr, gone_addr, nm;
	socklen_t nl;
	pid_t me = getpid(), b;
	struct sockaddr_un peer;
	socklen_t pl = sizeof(peer);
	struct stat sb;

	zoo_init(argc, argv, ITEMS);
	memset(&srv_addr, 0, sizeof(srv_addr));
	srv_addr.sun_family = AF_UNIX;
	snprintf(srv_addr.sun_path, sizeof(srv_addr.sun_path), "%s", zoo_path("dgram.sock"));
	srv_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(srv_addr.sun_path) + 1);
	memset(&cli_addr, 0, sizeof(cli_addr));
	cli_addr.sun_family = AF_UNIX;
	cli_len = offsetof(struct sockaddr_un, sun_path) + 1 +
		  (socklen_t)snprintf(cli_addr.sun_path + 1, sizeof(cli_addr.sun_path) - 1,
				      "crs-zoo-unix-dgram-%d", (int)me);

	unlink(srv_addr.sun_path);
	srv = dsock();
	if (bind(srv, (struct sockaddr *)&srv_addr, srv_len) || chmod(srv_addr.sun_path, 0604))
		zoo_die("bind server");
	cli = dsock();
	if (bind(cli, (struct sockaddr *)&cli_addr, cli_len) ||
	    connect(cli, (struct sockaddr *)&srv_addr, srv_len))
		zoo_die("bind/connect client");
	snd = dsock();
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pr))
		zoo_die("socketpair");

	put(cli, "cli 1", NULL, 0);
	put(snd, "snd 1", &srv_addr, srv_len);
	put(cli, "cli 2, a longer one", NULL, 0);
	put(srv, "srv->cli 1", &cli_addr, cli_len);
	put(srv, "srv->cli 2", &cli_addr, cli_len);
	memset(&rel_addr, 0, sizeof(rel_addr));
	rel_addr.sun_family = AF_UNIX;
	strcpy(rel_addr.sun_path, "rel.sock");
	memset(&gone_addr, 0, sizeof(gone_addr));
	gone_addr.sun_family = AF_UNIX;
	snprintf(gone_addr.sun_path, sizeof(gone_addr.sun_path), "%s", zoo_path("gone.sock"));
	if (chdir(zoo_tmp))
		zoo_die("chdir");
	unlink("rel.sock");
	unlink(gone_addr.sun_path);
	rel = dsock();
	gone = dsock();
	if (bind(rel, (struct sockaddr *)&rel_addr, sizeof(rel_addr)) ||
	    bind(gone, (struct sockaddr *)&gone_addr, sizeof(gone_addr)))
		zoo_die("bind rel/gone");
	put(snd, "to rel", &rel_addr, sizeof(rel_addr));
	put(snd, "to gone", &gone_addr, sizeof(gone_addr));
	if (unlink(gone_addr.sun_path))
		zoo_die("unlink gone");
	put(pr[0], "pair 0->1", NULL, 0);
	put(pr[1], "pair 1->0 a", NULL, 0);
	put(pr[1], "pair 1->0 b", NULL, 0);

	b = fork();
	if (b < 0)
		zoo_die("fork");
	if (b == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != me)
			_exit(2);
		close(srv);
		close(snd);
		zoo_wait();
		expect(B_QUEUE, cli, "srv->cli 1", "B queue", MSG_DONTWAIT);
		expect(B_QUEUE, cli, "srv->cli 2", "B queue", MSG_DONTWAIT);
		expect_empty(B_QUEUE, cli, "B queue");
		if (ZOO_BREAK(B_CONNECTED)) {
			struct sockaddr unspec = {.sa_family = AF_UNSPEC};

			connect(cli, &unspec, sizeof(unspec));
		}
		memset(&peer, 0, sizeof(peer));
		ok = getpeername(cli, (struct sockaddr *)&peer, &pl) == 0 &&
		     strcmp(peer.sun_path, srv_addr.sun_path) == 0;
		ok = put_ok(cli, "cli after restore", NULL, 0) && ok;
		ZOO_CHECK(B_CONNECTED, ok, "B: not connected to the server any more");
		/* Not connected: the message goes by address, so that P does not wait for it. */
		if (!ok)
			put(cli, "cli after restore", &srv_addr, srv_len);
		expect(SRV_TO_B, cli, "srv->cli after restore", "B reply", 0);
		return zoo_failures ? 1 : 0;
	}
	close(cli);

	zoo_ready();
	if (ZOO_BREAK(SRV_FILE))
		chmod(srv_addr.sun_path, 0600);
	if (ZOO_BREAK(SRV_QUEUE) && recv(srv, &nm, sizeof(nm), 0) < 0)
		zoo_die("recv");
	if (ZOO_BREAK(PAIR1_QUEUE) && recv(pr[1], &nm, sizeof(nm), 0) < 0)
		zoo_die("recv");
	if (ZOO_BREAK(PAIR0_QUEUE))
		put(pr[1], "pair 1->0 c", NULL, 0);
	if (ZOO_BREAK(REL_SOCKET) && rename("rel.sock", "rel.sock.old"))
		zoo_die("rename rel.sock");
	if (ZOO_BREAK(GONE_SOCKET)) {
		f = open(gone_addr.sun_path, O_CREAT | O_WRONLY, 0600);
		close(f);
	}
	if (ZOO_BREAK(B_QUEUE))
		put(srv, "srv->cli 3", &cli_addr, cli_len);
	zoo_wait();

	ZOO_CHECK(SRV_FILE,
		  stat(srv_addr.sun_path, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
			  (sb.st_mode & 07777) == 0604,
		  "socket file %s: mode %o", srv_addr.sun_path, sb.st_mode);
	expect(SRV_QUEUE, srv, "cli 1", "server queue", MSG_DONTWAIT);
	expect(SRV_QUEUE, srv, "snd 1", "server queue", MSG_DONTWAIT);
	expect(SRV_QUEUE, srv, "cli 2, a longer one", "server queue", MSG_DONTWAIT);
	expect_empty(SRV_QUEUE, srv, "server queue");
	expect(PAIR1_QUEUE, pr[1], "pair 0->1", "pair queue 1", MSG_DONTWAIT);
	expect_empty(PAIR1_QUEUE, pr[1], "pair queue 1");
	expect(PAIR0_QUEUE, pr[0], "pair 1->0 a", "pair queue 0", MSG_DONTWAIT);
	expect(PAIR0_QUEUE, pr[0], "pair 1->0 b", "pair queue 0", MSG_DONTWAIT);
	expect_empty(PAIR0_QUEUE, pr[0], "pair queue 0");
	expect(REL_SOCKET, rel, "to rel", "relative-name queue", MSG_DONTWAIT);
	expect(GONE_SOCKET, gone, "to gone", "removed-file queue", MSG_DONTWAIT);
	nl = sizeof(nm);
	memset(&nm, 0, sizeof(nm));
	ZOO_CHECK(REL_SOCKET,
		  getsockname(rel, (struct sockaddr *)&nm, &nl) == 0 &&
			  strcmp(nm.sun_path, "rel.sock") == 0,
		  "relative name is \"%s\"", nm.sun_path);
	nl = sizeof(nm);
	memset(&nm, 0, sizeof(nm));
	ZOO_CHECK(GONE_SOCKET,
		  getsockname(gone, (struct sockaddr *)&nm, &nl) == 0 &&
			  strcmp(nm.sun_path, gone_addr.sun_path) == 0,
		  "removed-file socket name is \"%s\"", nm.sun_path);
	ZOO_CHECK(GONE_SOCKET, access(gone_addr.sun_path, F_OK) != 0, "%s exists again",
		  gone_addr.sun_path);
	ZOO_CHECK(REL_SOCKET, access("rel.sock", F_OK) == 0, "rel.sock is missing");
	if (kill(b, SIGTERM))
		zoo_fail(0, "kill B: %s", strerror(errno));
	expect(B_CONNECTED, srv, "cli after restore", "server", 0);
	/* The reply to B breaks as another text (B then fails at once, not after a timeout). */
	put(srv, ZOO_BREAK(SRV_TO_B) ? "srv->cli after restorE" : "srv->cli after restore",
	    &cli_addr, cli_len);
	/* The sender and the pair break shut for writing. */
	if (ZOO_BREAK(SENDER))
		shutdown(snd, SHUT_WR);
	if (ZOO_BREAK(PAIR_AFTER))
		shutdown(pr[0], SHUT_WR);
	ok = put_ok(snd, "snd after restore", &srv_addr, srv_len);
	ZOO_CHECK(SENDER, ok, "the sender: sendto the server: %s", strerror(errno));
	if (ok)
		expect(SENDER, srv, "snd after restore", "server from the sender", 0);
	ok = put_ok(pr[0], "pair after", NULL, 0);
	ZOO_CHECK(PAIR_AFTER, ok, "the pair: send: %s", strerror(errno));
	if (ok)
		expect(PAIR_AFTER, pr[1], "pair after", "pair", 0);
	zoo_reap(b, "B");
	return zoo_done();
}
