/*
 * A tree in a network namespace of its own holding its loopback device only.
 *
 * P unshares a new network namespace, brings lo up with an MTU of its own, then forks C,
 * which stays in it. After SIGTERM: P tells C (SIGTERM) to check it is in P's network
 * namespace, then checks lo is up with 127.0.0.1 and its MTU, and that the namespace is
 * not the host's.
 */
#include "zoo.h"

#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#define MTU 9000

enum {
	LO_UP = 1,  /* lo is up, with 127.0.0.1 */
	LO_MTU,     /* lo's MTU */
	C_SAME_NS,  /* C is in P's network namespace */
	ITEMS = C_SAME_NS
};

/* ioctl `req` on lo's ifreq `r` (name filled in). */
static int lo_ioctl(unsigned long req, struct ifreq *r)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret;

	if (s < 0)
		return -1;
	strcpy(r->ifr_name, "lo");
	ret = ioctl(s, req, r);
	close(s);
	return ret;
}

static void set_lo(int up, int mtu)
{
	struct ifreq r;

	memset(&r, 0, sizeof(r));
	if (lo_ioctl(SIOCGIFFLAGS, &r))
		zoo_die("SIOCGIFFLAGS");
	r.ifr_flags = up ? (r.ifr_flags | IFF_UP) : (r.ifr_flags & ~IFF_UP);
	if (lo_ioctl(SIOCSIFFLAGS, &r))
		zoo_die("SIOCSIFFLAGS");
	memset(&r, 0, sizeof(r));
	r.ifr_mtu = mtu;
	if (lo_ioctl(SIOCSIFMTU, &r))
		zoo_die("SIOCSIFMTU");
}

/* The inode of /proc/PID/ns/net (0 if unreadable). */
static ino_t net_ns(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	return stat(path, &st) ? 0 : st.st_ino;
}

int main(int argc, char **argv)
{
	struct ifreq r;
	struct sockaddr_in *sin;
	pid_t me, kid;

	zoo_init(argc, argv, ITEMS);
	if (unshare(CLONE_NEWNET))
		zoo_die("unshare(CLONE_NEWNET)");
	set_lo(1, MTU);
	me = getpid();
	kid = zoo_fork_ready();
	if (kid == 0) {
		/* C cannot know when P is ready: it breaks its item at its own ready. */
		if (ZOO_BREAK(C_SAME_NS) && unshare(CLONE_NEWNET))
			zoo_die("unshare(CLONE_NEWNET) in C");
		zoo_child_ready();
		zoo_wait();
		ZOO_CHECK(C_SAME_NS, net_ns(getpid()) == net_ns(me),
			  "C is not in P's network namespace");
		return zoo_failures ? 1 : 0;
	}

	zoo_ready();
	if (ZOO_BREAK(LO_UP))
		set_lo(0, MTU);
	if (ZOO_BREAK(LO_MTU))
		set_lo(1, MTU + 1);
	zoo_wait();

	if (kill(kid, SIGTERM))
		zoo_fail(0, "kill C: %s", strerror(errno));
	zoo_reap(kid, "C");

	memset(&r, 0, sizeof(r));
	ZOO_CHECK(LO_UP, lo_ioctl(SIOCGIFFLAGS, &r) == 0 && (r.ifr_flags & IFF_UP),
		  "lo is down");
	memset(&r, 0, sizeof(r));
	r.ifr_addr.sa_family = AF_INET;
	sin = (struct sockaddr_in *)&r.ifr_addr;
	ZOO_CHECK(LO_UP,
		  lo_ioctl(SIOCGIFADDR, &r) == 0 && sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK),
		  "lo has no 127.0.0.1");
	memset(&r, 0, sizeof(r));
	ZOO_CHECK(LO_MTU, lo_ioctl(SIOCGIFMTU, &r) == 0 && r.ifr_mtu == MTU, "lo's MTU is %d",
		  r.ifr_mtu);
	ZOO_CHECK(ZOO_UNBREAKABLE /* nothing leaves a network namespace but setns */,
		  net_ns(me) != net_ns(1) || net_ns(1) == 0, "P is in the network namespace of pid 1");
	return zoo_done();
}
