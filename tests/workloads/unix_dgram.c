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

static void put(int fd, const char *m, const struct sockaddr_un *to, socklen_t len)
{
	if (sendto(fd, m, strlen(m), 0, (const struct sockaddr *)to, len) != (ssize_t)strlen(m))
		zoo_die("sendto");
}

/* The next message on `fd` is `want` (flags: MSG_DONTWAIT for queued ones). */
static void expect(int fd, const char *want, const char *what, int flags)
{
	char got[256];
	ssize_t r = recv(fd, got, sizeof(got), flags);

	ZOO_CHECK(r == (ssize_t)strlen(want) && memcmp(got, want, (size_t)r) == 0,
		  "%s: got %zd bytes \"%.*s\", want \"%s\" (%s)", what, r, r > 0 ? (int)r : 0, got,
		  want, r < 0 ? strerror(errno) : "");
}

static void expect_empty(int fd, const char *what)
{
	char got[64];
	ssize_t r = recv(fd, got, sizeof(got), MSG_DONTWAIT);

	ZOO_CHECK(r == -1 && errno == EAGAIN, "%s: %zd more bytes after the queued ones", what, r);
}

int main(int argc, char **argv)
{
	int srv, cli, snd, pr[2], rel, gone, status;
	struct sockaddr_un rel_addr, gone_addr, nm;
	socklen_t nl;
	pid_t me = getpid(), b;
	struct sockaddr_un peer;
	socklen_t pl = sizeof(peer);
	struct stat sb;

	zoo_init(argc, argv);
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
		expect(cli, "srv->cli 1", "B queue", MSG_DONTWAIT);
		expect(cli, "srv->cli 2", "B queue", MSG_DONTWAIT);
		expect_empty(cli, "B queue");
		memset(&peer, 0, sizeof(peer));
		ZOO_CHECK(getpeername(cli, (struct sockaddr *)&peer, &pl) == 0 &&
				  strcmp(peer.sun_path, srv_addr.sun_path) == 0,
			  "B: not connected to the server any more");
		put(cli, "cli after restore", NULL, 0);
		expect(cli, "srv->cli after restore", "B reply", 0);
		return zoo_failures ? 1 : 0;
	}
	close(cli);

	zoo_ready();
	if (zoo_corrupt) {
		char c[64];
		if (recv(srv, c, sizeof(c), 0) < 0)
			zoo_die("corrupt");
	}
	zoo_wait();

	ZOO_CHECK(stat(srv_addr.sun_path, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
			  (sb.st_mode & 07777) == 0604,
		  "socket file %s: mode %o", srv_addr.sun_path, sb.st_mode);
	expect(srv, "cli 1", "server queue", MSG_DONTWAIT);
	expect(srv, "snd 1", "server queue", MSG_DONTWAIT);
	expect(srv, "cli 2, a longer one", "server queue", MSG_DONTWAIT);
	expect_empty(srv, "server queue");
	expect(pr[1], "pair 0->1", "pair queue 1", MSG_DONTWAIT);
	expect_empty(pr[1], "pair queue 1");
	expect(pr[0], "pair 1->0 a", "pair queue 0", MSG_DONTWAIT);
	expect(pr[0], "pair 1->0 b", "pair queue 0", MSG_DONTWAIT);
	expect_empty(pr[0], "pair queue 0");
	expect(rel, "to rel", "relative-name queue", MSG_DONTWAIT);
	expect(gone, "to gone", "removed-file queue", MSG_DONTWAIT);
	nl = sizeof(nm);
	memset(&nm, 0, sizeof(nm));
	ZOO_CHECK(getsockname(rel, (struct sockaddr *)&nm, &nl) == 0 &&
			  strcmp(nm.sun_path, "rel.sock") == 0,
		  "relative name is \"%s\"", nm.sun_path);
	nl = sizeof(nm);
	memset(&nm, 0, sizeof(nm));
	ZOO_CHECK(getsockname(gone, (struct sockaddr *)&nm, &nl) == 0 &&
			  strcmp(nm.sun_path, gone_addr.sun_path) == 0,
		  "removed-file socket name is \"%s\"", nm.sun_path);
	ZOO_CHECK(access(gone_addr.sun_path, F_OK) != 0, "%s exists again", gone_addr.sun_path);
	ZOO_CHECK(access("rel.sock", F_OK) == 0, "rel.sock is missing");
	if (kill(b, SIGTERM))
		zoo_fail("kill B: %s", strerror(errno));
	expect(srv, "cli after restore", "server", 0);
	put(srv, "srv->cli after restore", &cli_addr, cli_len);
	put(snd, "snd after restore", &srv_addr, srv_len);
	expect(srv, "snd after restore", "server from the sender", 0);
	put(pr[0], "pair after", NULL, 0);
	expect(pr[1], "pair after", "pair", 0);
	if (waitpid(b, &status, 0) != b)
		zoo_fail("waitpid B: %s", strerror(errno));
	else
		ZOO_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "B ended with status %#x",
			  status);
	return zoo_done();
}
