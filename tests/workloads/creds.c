/* Credentials: supplementary groups, a changed effective gid, a capability dropped from
 * the bounding set and from the effective set, and securebits. */
#include "zoo.h"
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static void caps(struct __user_cap_data_struct d[2], int set)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};

	if (syscall(set ? SYS_capset : SYS_capget, &h, d))
		zoo_die(set ? "capset" : "capget");
}

int main(int argc, char **argv)
{
	static const gid_t groups[] = {10, 20, 30, 12345};
	struct __user_cap_data_struct want[2], got[2];
	gid_t g[64], r, e, s;
	int n, sb;

	zoo_init(argc, argv);
	if (setgroups(4, groups) || setresgid(0, 4242, 0))
		zoo_die("groups");
	if (prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0))
		zoo_die("capbset drop");
	caps(want, 0);
	want[0].effective &= ~(1u << CAP_MKNOD);
	want[0].permitted &= ~(1u << CAP_NET_RAW);
	want[0].effective &= ~(1u << CAP_NET_RAW);
	caps(want, 1);
	caps(want, 0);
	if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP, 0, 0, 0))
		zoo_die("securebits");

	zoo_ready();
	if (zoo_corrupt)
		setgroups(3, groups);
	zoo_wait();

	n = getgroups(64, g);
	ZOO_CHECK(n == 4 && g[0] == 10 && g[1] == 20 && g[2] == 30 && g[3] == 12345,
		  "groups: %d of them", n);
	getresgid(&r, &e, &s);
	ZOO_CHECK(r == 0 && e == 4242 && s == 0, "gids %u/%u/%u, want 0/4242/0", r, e, s);
	caps(got, 0);
	ZOO_CHECK(memcmp(got, want, sizeof(got)) == 0,
		  "caps eff %#x:%#x perm %#x:%#x inh %#x:%#x, want eff %#x:%#x perm %#x:%#x",
		  got[1].effective, got[0].effective, got[1].permitted, got[0].permitted,
		  got[1].inheritable, got[0].inheritable, want[1].effective, want[0].effective,
		  want[1].permitted, want[0].permitted);
	ZOO_CHECK(prctl(PR_CAPBSET_READ, CAP_NET_RAW, 0, 0, 0) == 0, "CAP_NET_RAW back in bset");
	ZOO_CHECK(prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) == 1, "CAP_SYS_ADMIN not in bset");
	sb = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	ZOO_CHECK(sb == (SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP), "securebits %#x", sb);
	return zoo_done();
}
