/*
 * Packet sockets, in a network namespace of the workload's own (so that only its own
 * traffic reaches them), lo up.
 *
 * R: SOCK_RAW for every protocol, bound to lo, TPACKET_V2, PACKET_AUXDATA, an RX ring
 *    of 2 blocks of 4 KiB (not mapped), a multicast membership of lo (01:00:5e:00:00:fb).
 * D: SOCK_DGRAM for IPv4, bound to lo, PACKET_RESERVE 16, PACKET_ORIGDEV, a fanout
 *    group of its own.
 * After SIGTERM: R has its version and AUXDATA, and its ring can be mapped (it is
 * there, of its size); lo has the multicast address (/proc/net/dev_mcast); D has its reserve, ORIGDEV, fanout and device,
 * and a UDP datagram sent to 127.0.0.1 reaches it.
 */
#include "zoo.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

enum {
	R_RING = 1, /* R: TPACKET_V2, AUXDATA, its RX ring */
	R_MCAST,    /* lo's multicast address through R's membership */
	D_OPTS,     /* D: reserve 16, ORIGDEV, fanout, lo; a datagram reaches it */
	ITEMS = D_OPTS
};

#define RING_BLOCK 4096
#define RING_BLOCKS 2

static int opt(int s, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(s, SOL_PACKET, name, &v, &len))
		return -1;
	return v;
}

static void set(int s, int name, int v)
{
	if (setsockopt(s, SOL_PACKET, name, &v, sizeof(v)))
		zoo_die("setsockopt SOL_PACKET");
}

/* Whether lo has the membership's multicast address (/proc/net/dev_mcast). */
static int lo_mcast(void)
{
	char text[4096];

	if (zoo_read_file("/proc/self/net/dev_mcast", text, sizeof(text)) < 0)
		return 0;
	return strstr(text, "lo") && strstr(text, "01005e0000fb");
}

static int bound_to(int s, int ifindex)
{
	struct sockaddr_ll a;
	socklen_t len = sizeof(a);

	memset(&a, 0, sizeof(a));
	return getsockname(s, (struct sockaddr *)&a, &len) == 0 && a.sll_ifindex == ifindex;
}

int main(int argc, char **argv)
{
	struct packet_mreq mr = {
		.mr_type = PACKET_MR_MULTICAST,
		.mr_alen = 6,
		.mr_address = {0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb},
	};
	struct tpacket_req ring = {
		.tp_block_size = RING_BLOCK,
		.tp_block_nr = RING_BLOCKS,
		.tp_frame_size = 2048,
		.tp_frame_nr = RING_BLOCKS * RING_BLOCK / 2048,
	};
	struct sockaddr_ll ll = {.sll_family = AF_PACKET};
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9)};
	struct ifreq r;
	int rs, ds, u, lo, fanout, s;
	char buf[256];
	void *map;
	ssize_t n;

	zoo_init(argc, argv, ITEMS);
	if (unshare(CLONE_NEWNET))
		zoo_die("unshare");
	s = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&r, 0, sizeof(r));
	strcpy(r.ifr_name, "lo");
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &r))
		zoo_die("lo");
	r.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &r))
		zoo_die("lo up");
	close(s);
	lo = (int)if_nametoindex("lo");

	rs = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	if (rs < 0)
		zoo_die("socket R");
	ll.sll_protocol = htons(ETH_P_ALL);
	ll.sll_ifindex = lo;
	if (bind(rs, (struct sockaddr *)&ll, sizeof(ll)))
		zoo_die("bind R");
	set(rs, PACKET_VERSION, TPACKET_V2);
	set(rs, PACKET_AUXDATA, 1);
	if (setsockopt(rs, SOL_PACKET, PACKET_RX_RING, &ring, sizeof(ring)))
		zoo_die("PACKET_RX_RING");
	mr.mr_ifindex = lo;
	if (setsockopt(rs, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)))
		zoo_die("PACKET_ADD_MEMBERSHIP");

	ds = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
	if (ds < 0)
		zoo_die("socket D");
	ll.sll_protocol = htons(ETH_P_IP);
	if (bind(ds, (struct sockaddr *)&ll, sizeof(ll)))
		zoo_die("bind D");
	set(ds, PACKET_RESERVE, 16);
	set(ds, PACKET_ORIGDEV, 1);
	fanout = (getpid() & 0xffff) | (PACKET_FANOUT_HASH << 16);
	set(ds, PACKET_FANOUT, fanout);
	if (!lo_mcast())
		zoo_die("lo has not the multicast address");

	zoo_ready();
	if (ZOO_BREAK(R_RING))
		set(rs, PACKET_AUXDATA, 0);
	if (ZOO_BREAK(R_MCAST) &&
	    setsockopt(rs, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &mr, sizeof(mr)))
		zoo_die("PACKET_DROP_MEMBERSHIP");
	if (ZOO_BREAK(D_OPTS))
		set(ds, PACKET_ORIGDEV, 0);
	zoo_wait();

	ZOO_CHECK(R_RING, opt(rs, PACKET_VERSION) == TPACKET_V2 && opt(rs, PACKET_AUXDATA) == 1,
		  "R: version %d, AUXDATA %d", opt(rs, PACKET_VERSION), opt(rs, PACKET_AUXDATA));
	map = mmap(NULL, RING_BLOCK * RING_BLOCKS, PROT_READ, MAP_SHARED, rs, 0);
	ZOO_CHECK(R_RING, map != MAP_FAILED, "R: its ring cannot be mapped: %s", strerror(errno));
	if (map != MAP_FAILED)
		munmap(map, RING_BLOCK * RING_BLOCKS);
	ZOO_CHECK(ZOO_UNBREAKABLE, bound_to(rs, lo), "R is not bound to lo");
	ZOO_CHECK(R_MCAST, lo_mcast(), "lo has not the multicast address");
	ZOO_CHECK(D_OPTS,
		  opt(ds, PACKET_RESERVE) == 16 && opt(ds, PACKET_ORIGDEV) == 1 &&
			  opt(ds, PACKET_FANOUT) == fanout && bound_to(ds, lo),
		  "D: reserve %d, ORIGDEV %d, fanout %#x (want %#x), on lo %d",
		  opt(ds, PACKET_RESERVE), opt(ds, PACKET_ORIGDEV), opt(ds, PACKET_FANOUT),
		  fanout, bound_to(ds, lo));
	u = socket(AF_INET, SOCK_DGRAM, 0);
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (u < 0 || sendto(u, "crs!", 4, 0, (struct sockaddr *)&to, sizeof(to)) != 4)
		zoo_die("sendto");
	n = recv(ds, buf, sizeof(buf), MSG_DONTWAIT);
	ZOO_CHECK(ZOO_UNBREAKABLE, n >= 32 && memcmp(buf + n - 4, "crs!", 4) == 0,
		  "D got %zd bytes, not the datagram", n);
	return zoo_done();
}
