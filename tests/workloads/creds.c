/* Credentials: supplementary groups, a changed effective gid, a capability dropped from
 * the bounding set and from the effective set, and securebits. */
#include "zoo.h"
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

enum {
	GROUPS = 1, /* the supplementary groups */
	GIDS,       /* real, effective, saved gid */
	CAPS,       /* effective, permitted, inheritable sets */
	BSET,       /* the bounding set: as set up (without CAP_NET_RAW) */
	SECUREBITS,
	ITEMS = SECUREBITS
};

static void caps(struct __user_cap_data_struct d[2], int set)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};

	if (syscall(set ? SYS_capset : SYS_capget, &h, d))
		zoo_die(set ? "capset" : "capget");
}

/* The bounding set as a mask (bit n: capability n). */
static uint64_t bset(void)
{
	uint64_t m = 0;
	int c, r;

	for (c = 0; c < 64; c++) {
		r = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		if (r < 0)
			break;
		if (r)
			m |= 1ull << c;
	}
	return m;
}

int main(int argc, char **argv)
{
	static const gid_t groups[] = {10, 20, 30, 12345};
	struct __user_cap_data_struct want[2], got[2];
	gid_t g[64], r, e, s;
	uint64_t bset_want, bset_got;
	int n, sb;

	zoo_init(argc, argv, ITEMS);
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
	bset_want = bset();
	if (bset_want & (1ull << CAP_NET_RAW) || !(bset_want & (1ull << CAP_SYS_ADMIN)))
		zoo_die("the bounding set is not as set up");

	zoo_ready();
	if (ZOO_BREAK(GROUPS))
		setgroups(3, groups);
	if (ZOO_BREAK(GIDS))
		setresgid(0, 4243, 0);
	if (ZOO_BREAK(CAPS)) {
		caps(got, 0);
		got[0].effective &= ~(1u << CAP_CHOWN);
		caps(got, 1);
	}
	if (ZOO_BREAK(BSET))
		prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0);
	if (ZOO_BREAK(SECUREBITS))
		prctl(PR_SET_SECUREBITS,
		      SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_CAP_AMBIENT_RAISE, 0, 0, 0);
	zoo_wait();

	n = getgroups(64, g);
	ZOO_CHECK(GROUPS, n == 4 && g[0] == 10 && g[1] == 20 && g[2] == 30 && g[3] == 12345,
		  "groups: %d of them", n);
	getresgid(&r, &e, &s);
	ZOO_CHECK(GIDS, r == 0 && e == 4242 && s == 0, "gids %u/%u/%u, want 0/4242/0", r, e, s);
	caps(got, 0);
	ZOO_CHECK(CAPS, memcmp(got, want, sizeof(got)) == 0,
		  "caps eff %#x:%#x perm %#x:%#x inh %#x:%#x, want eff %#x:%#x perm %#x:%#x",
		  got[1].effective, got[0].effective, got[1].permitted, got[0].permitted,
		  got[1].inheritable, got[0].inheritable, want[1].effective, want[0].effective,
		  want[1].permitted, want[0].permitted);
	bset_got = bset();
	ZOO_CHECK(BSET, bset_got == bset_want, "bounding set %#llx, want %#llx",
		  (unsigned long long)bset_got, (unsigned long long)bset_want);
	sb = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	ZOO_CHECK(SECUREBITS, sb == (SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP), "securebits %#x",
		  sb);
	return zoo_done();
}
