/* mm fields and the auxiliary vector: /proc/self/{cmdline,environ,auxv,exe,stat}, comm,
 * the vDSO address (and a working vDSO clock), AT_RANDOM bytes. */
#include "zoo.h"
#include <sys/auxv.h>
#include <sys/mman.h>
#include <linux/prctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

extern char **environ;

/* The mm fields of /proc/self/stat (by field number) that are items of their own; the
 * argument and environment bounds (48-51) belong to CMDLINE and ENVIRON. */
static const struct {
	int field;
	long delta; /* how the break moves it (within its vma, keeping the order) */
} fields[] = {
	{26, 16}, {27, -16}, {28, -8}, {45, 16}, {46, -16}, {47, -4096},
};
#define NFIELDS (int)(sizeof(fields) / sizeof(fields[0]))

enum {
	CMDLINE = 1, /* /proc/self/cmdline, and arg_start/arg_end of stat */
	ENVIRON,     /* /proc/self/environ, and env_start/env_end of stat */
	AUXV,        /* /proc/self/auxv */
	COMM,
	RANDOM,      /* the AT_RANDOM bytes */
	VDSO,        /* [vdso] where AT_SYSINFO_EHDR says, and its clock agrees with the kernel's */
	FIELD0,      /* FIELD0 + i: stat field fields[i] */
	ITEMS = FIELD0 + NFIELDS - 1
};

struct snap {
	char cmdline[4096], environ[16384], auxv[1024], exe[4096], comm[32];
	ssize_t cmdline_len, environ_len, auxv_len;
	unsigned long stat_fields[52];
	unsigned long vdso;
	unsigned char random[16];
};

static void read_stat(unsigned long *out)
{
	char buf[2048], *p;
	int i;

	memset(out, 0, 52 * sizeof(*out));
	if (zoo_read_file("/proc/self/stat", buf, sizeof(buf)) < 0)
		return;
	p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	if (!p || !p[1] || !p[2])
		return;
	p += 2;
	out[2] = (unsigned char)*p; /* state */
	p++;
	for (i = 4; i <= 52 && *p; i++) {
		while (*p == ' ')
			p++;
		out[i - 1] = strtoul(p, &p, 10);
	}
}

static void take(struct snap *s)
{
	ssize_t n;

	s->cmdline_len = zoo_read_file("/proc/self/cmdline", s->cmdline, sizeof(s->cmdline));
	s->environ_len = zoo_read_file("/proc/self/environ", s->environ, sizeof(s->environ));
	s->auxv_len = zoo_read_file("/proc/self/auxv", s->auxv, sizeof(s->auxv));
	n = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
	s->exe[n > 0 ? n : 0] = 0;
	zoo_read_file("/proc/self/comm", s->comm, sizeof(s->comm));
	s->comm[strcspn(s->comm, "\n")] = 0;
	read_stat(s->stat_fields);
	s->vdso = getauxval(AT_SYSINFO_EHDR);
	memcpy(s->random, (void *)getauxval(AT_RANDOM), 16);
}

static unsigned long vdso_in_maps(unsigned long *len)
{
	char line[512];
	unsigned long start = 0, s, e;
	FILE *f = fopen("/proc/self/maps", "r");

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &s, &e) == 2) {
			start = s;
			if (len)
				*len = e - s;
		}
	if (f)
		fclose(f);
	return start;
}

/* Sets the mm fields as in `s` (stat fields, auxv) with PR_SET_MM_MAP, which needs no
 * CAP_SYS_RESOURCE. */
static void set_mm(const struct snap *s, const void *auxv)
{
	const unsigned long *f = s->stat_fields;
	struct prctl_mm_map map = {
		.start_code = f[25],
		.end_code = f[26],
		.start_stack = f[27],
		.start_data = f[44],
		.end_data = f[45],
		.start_brk = f[46],
		.brk = (unsigned long)sbrk(0),
		.arg_start = f[47],
		.arg_end = f[48],
		.env_start = f[49],
		.env_end = f[50],
		.auxv = (__u64 *)auxv,
		.auxv_size = (unsigned)s->auxv_len,
		.exe_fd = -1,
	};

	if (prctl(PR_SET_MM, PR_SET_MM_MAP, (unsigned long)&map, sizeof(map), 0))
		zoo_die("PR_SET_MM_MAP");
}

/* Whether the vDSO's clock agrees with the system call's. */
static int vdso_clock_ok(void)
{
	struct timespec a, b, c;
	double va, vb, vc;

	clock_gettime(CLOCK_MONOTONIC, &a);
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &b);
	clock_gettime(CLOCK_MONOTONIC, &c);
	va = a.tv_sec + a.tv_nsec / 1e9;
	vb = b.tv_sec + b.tv_nsec / 1e9;
	vc = c.tv_sec + c.tv_nsec / 1e9;
	return vb >= va && vc >= vb && vb - va < 1.0;
}

/* Moves the vDSO to a fresh address; glibc's pointers into it go stale. */
static void move_vdso(void)
{
	unsigned long len = 0, at = vdso_in_maps(&len);
	void *to = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (!at || to == MAP_FAILED ||
	    mremap((void *)at, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to) != to)
		zoo_die("mremap the vdso");
}

int main(int argc, char **argv)
{
	static struct snap before, after, broken;
	unsigned long aux[128], v;
	int i;

	zoo_init(argc, argv, ITEMS);
	take(&before);

	zoo_ready();
	if (ZOO_BREAK(CMDLINE))
		argv[0][0] ^= 1; /* zoo_name points past its last '/' */
	if (ZOO_BREAK(ENVIRON) && environ[0] && environ[0][0])
		environ[0][strlen(environ[0]) - 1] ^= 1;
	memcpy(aux, before.auxv, (size_t)before.auxv_len);
	broken = before;
	if (ZOO_BREAK(AUXV)) {
		/* The kernel's copy only (glibc keeps its own): the first entry's value. */
		aux[1] ^= 1;
		set_mm(&broken, aux);
	}
	if (ZOO_BREAK(COMM))
		prctl(PR_SET_NAME, "renamed", 0, 0, 0);
	if (ZOO_BREAK(RANDOM))
		((unsigned char *)getauxval(AT_RANDOM))[7] ^= 1;
	if (ZOO_BREAK(VDSO))
		move_vdso();
	for (i = 0; i < NFIELDS; i++) {
		if (!ZOO_BREAK(FIELD0 + i))
			continue;
		broken.stat_fields[fields[i].field - 1] += fields[i].delta;
		set_mm(&broken, aux);
	}
	zoo_wait();

	take(&after);
	ZOO_CHECK(CMDLINE,
		  before.cmdline_len > 0 && before.cmdline_len == after.cmdline_len &&
			  memcmp(before.cmdline, after.cmdline, before.cmdline_len) == 0 &&
			  before.stat_fields[47] == after.stat_fields[47] &&
			  before.stat_fields[48] == after.stat_fields[48],
		  "/proc/self/cmdline differs");
	ZOO_CHECK(ENVIRON,
		  before.environ_len > 0 && before.environ_len == after.environ_len &&
			  memcmp(before.environ, after.environ, before.environ_len) == 0 &&
			  before.stat_fields[49] == after.stat_fields[49] &&
			  before.stat_fields[50] == after.stat_fields[50],
		  "/proc/self/environ differs");
	ZOO_CHECK(AUXV,
		  before.auxv_len > 0 && before.auxv_len == after.auxv_len &&
			  memcmp(before.auxv, after.auxv, before.auxv_len) == 0,
		  "/proc/self/auxv differs");
	/* Not an item: the exe link cannot change while the old file is mapped, and the
	 * workload runs from it. */
	ZOO_CHECK(ZOO_UNBREAKABLE, strcmp(before.exe, after.exe) == 0, "exe %s, want %s",
		  after.exe, before.exe);
	ZOO_CHECK(COMM, strcmp(before.comm, after.comm) == 0, "comm %s, want %s", after.comm,
		  before.comm);
	for (i = 0; i < NFIELDS; i++)
		ZOO_CHECK(FIELD0 + i,
			  before.stat_fields[fields[i].field - 1] ==
				  after.stat_fields[fields[i].field - 1],
			  "stat field %d is %#lx, want %#lx", fields[i].field,
			  after.stat_fields[fields[i].field - 1],
			  before.stat_fields[fields[i].field - 1]);
	ZOO_CHECK(RANDOM, memcmp(before.random, after.random, 16) == 0, "AT_RANDOM bytes differ");
	/* The clock only when the vDSO is where glibc knows it: else calling it would crash. */
	v = vdso_in_maps(NULL);
	ZOO_CHECK(VDSO, v == before.vdso && vdso_clock_ok(),
		  "[vdso] at %#lx, auxv says %#lx (or its clock disagrees with the kernel's)", v,
		  before.vdso);
	return zoo_done();
}
