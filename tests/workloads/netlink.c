/*
 * Netlink sockets (NETLINK_USERSOCK: process to process), in a network namespace of the
 * workload's own (so that the multicasts of the zoo's other runs, at once, do not reach
 * it).
 *
 * A is bound to port id 0x40000000 + its pid (of none other: the zoo's modes run at once)
 * and group 4; B, bound by the kernel (autobind on its
 * first send), is connected to E (port id 0x50000000 + its pid); C is bound to no port id of its own choosing and a
 * member of group 5 (NETLINK_ADD_MEMBERSHIP). After SIGTERM: the addresses are as they
 * were; B's "to E" reaches E from B's port id; a message D sends to group 5 reaches C
 * and not A; one D sends to group 4 reaches A.
 */
#include "zoo.h"

#include <linux/netlink.h>
#include <sched.h>
#include <sys/socket.h>

enum {
	A_BOUND = 1, /* A: its port id, groups 4 */
	B_PEER,      /* B: connected to E, its own port id kept; its message reaches E */
	C_GROUP,     /* C: member of group 5; a message to group 5 reaches it */
	ITEMS = C_GROUP
};

static unsigned A_PORT, E_PORT;
#define SOL_NETLINK 270

static int nl(void)
{
	int s = socket(AF_NETLINK, SOCK_RAW, NETLINK_USERSOCK);

	if (s < 0)
		zoo_die("socket");
	return s;
}

static struct sockaddr_nl addr(unsigned port, unsigned groups)
{
	struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_pid = port, .nl_groups = groups};

	return a;
}

static void names(int s, struct sockaddr_nl *me, struct sockaddr_nl *peer)
{
	socklen_t len = sizeof(*me);

	memset(me, 0, sizeof(*me));
	memset(peer, 0, sizeof(*peer));
	if (getsockname(s, (struct sockaddr *)me, &len))
		zoo_die("getsockname");
	len = sizeof(*peer);
	if (getpeername(s, (struct sockaddr *)peer, &len))
		zoo_die("getpeername");
}

/* Sends `text` as one netlink message from `s` to `to` (NULL: its peer). */
static int send_msg(int s, const struct sockaddr_nl *to, const char *text)
{
	char buf[64];
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	size_t n = strlen(text);

	memset(buf, 0, sizeof(buf));
	h->nlmsg_len = (unsigned)(NLMSG_HDRLEN + n);
	h->nlmsg_type = 0x20;
	memcpy(buf + NLMSG_HDRLEN, text, n);
	return sendto(s, buf, h->nlmsg_len, 0, (const struct sockaddr *)to,
		      to ? sizeof(*to) : 0) == (ssize_t)h->nlmsg_len;
}

/* Receives one message on `s` without waiting: its text ("" when none), and the
 * sender's port id in *from. */
static const char *recv_msg(int s, unsigned *from)
{
	static char buf[256];
	struct sockaddr_nl a;
	socklen_t len = sizeof(a);
	ssize_t n = recvfrom(s, buf, sizeof(buf) - 1, MSG_DONTWAIT, (struct sockaddr *)&a, &len);

	if (n < (ssize_t)NLMSG_HDRLEN)
		return "";
	buf[n] = 0;
	*from = a.nl_pid;
	return buf + NLMSG_HDRLEN;
}

int main(int argc, char **argv)
{
	struct sockaddr_nl a_me, a_peer, b_me, b_peer, c_me, c_peer, x, y;
	int a, b, c, d, e, five = 5;
	unsigned from = 0;
	const char *got;

	zoo_init(argc, argv, ITEMS);
	if (unshare(CLONE_NEWNET))
		zoo_die("unshare");
	A_PORT = 0x40000000u + (unsigned)getpid();
	E_PORT = 0x50000000u + (unsigned)getpid();
	a = nl();
	x = addr(A_PORT, 1 << 3);
	if (bind(a, (struct sockaddr *)&x, sizeof(x)))
		zoo_die("bind A");
	e = nl();
	x = addr(E_PORT, 0);
	if (bind(e, (struct sockaddr *)&x, sizeof(x)))
		zoo_die("bind E");
	b = nl();
	if (connect(b, (struct sockaddr *)&x, sizeof(x)) || !send_msg(b, NULL, "hello"))
		zoo_die("connect B");
	got = recv_msg(e, &from);
	if (strcmp(got, "hello"))
		zoo_die("E did not get B's first message");
	c = nl();
	x = addr(0, 0);
	if (bind(c, (struct sockaddr *)&x, sizeof(x)) ||
	    setsockopt(c, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &five, sizeof(five)))
		zoo_die("C");
	d = nl();
	names(a, &a_me, &a_peer);
	names(b, &b_me, &b_peer);
	names(c, &c_me, &c_peer);

	zoo_ready();
	if (ZOO_BREAK(A_BOUND)) {
		int fresh = nl();

		if (dup2(fresh, a) != a)
			zoo_die("dup2");
		close(fresh);
	}
	if (ZOO_BREAK(B_PEER)) {
		/* A port id no socket has. */
		x = addr(E_PORT + 0x10000000u, 0);
		if (connect(b, (struct sockaddr *)&x, sizeof(x)))
			zoo_die("connect B elsewhere");
	}
	if (ZOO_BREAK(C_GROUP) &&
	    setsockopt(c, SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, &five, sizeof(five)))
		zoo_die("drop");
	zoo_wait();

	names(a, &x, &y);
	ZOO_CHECK(A_BOUND, x.nl_pid == A_PORT && x.nl_groups == a_me.nl_groups,
		  "A: port id %#x groups %#x (want %#x %#x)", x.nl_pid, x.nl_groups, A_PORT,
		  a_me.nl_groups);
	names(b, &x, &y);
	ZOO_CHECK(B_PEER, x.nl_pid == b_me.nl_pid && y.nl_pid == E_PORT,
		  "B: port id %#x peer %#x (want %#x %#x)", x.nl_pid, y.nl_pid, b_me.nl_pid,
		  E_PORT);
	ZOO_CHECK(B_PEER, send_msg(b, NULL, "to E"), "B: send: %s", strerror(errno));
	from = 0;
	got = recv_msg(e, &from);
	ZOO_CHECK(B_PEER, !strcmp(got, "to E") && from == b_me.nl_pid,
		  "E got %s from %#x (want \"to E\" from %#x)", got, from, b_me.nl_pid);
	names(c, &x, &y);
	ZOO_CHECK(C_GROUP, x.nl_pid == c_me.nl_pid && x.nl_groups == 1 << 4,
		  "C: port id %#x groups %#x (want %#x %#x)", x.nl_pid, x.nl_groups, c_me.nl_pid,
		  1 << 4);
	/* To the group, and to port id 0, which no socket of this protocol has: the
	 * broadcast goes out, then the unicast is refused. */
	y = addr(0, 1 << 4);
	ZOO_CHECK(ZOO_UNBREAKABLE, send_msg(d, &y, "group 5") || errno == ECONNREFUSED,
		  "D: send to group 5: %s", strerror(errno));
	got = recv_msg(c, &from);
	ZOO_CHECK(C_GROUP, !strcmp(got, "group 5"), "C got %s from group 5", got);
	got = recv_msg(a, &from);
	ZOO_CHECK(A_BOUND, !strcmp(got, ""), "A got %s from group 5", got);
	y = addr(0, 1 << 3);
	ZOO_CHECK(ZOO_UNBREAKABLE, send_msg(d, &y, "group 4") || errno == ECONNREFUSED,
		  "D: send to group 4: %s", strerror(errno));
	got = recv_msg(a, &from);
	ZOO_CHECK(A_BOUND, !strcmp(got, "group 4"), "A got %s from group 4", got);
	return zoo_done();
}
